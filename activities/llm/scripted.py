"""A scripted model for tests: a function from the conversation to the answer, plugged in as a provider.

In the spirit of pydantic-ai's FunctionModel: a process author's test passes a
plain function that reads the typed turn (`ModelTurn`: the step, its output
model, the messages so far, the tools offered) and returns either an instance
of the step's output model or a `CallTool` proposal. It runs behind the real
model activity, so validation, repairs, budgets, pricing and the ledger are
Baton's own; only the answer is scripted. Every call is recorded under the
`scripted` provider and models (client/testkit.py configures them), so no
ledger can pass a scripted answer off as a model's.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import BaseModel, Field

from activities.llm import output_type
from activities.llm.catalog import ModelSpec
from activities.llm.conversation import Conversation, Message, ToolSchema, ToolUse, estimate_tokens
from activities.llm.provider import Completion, ProviderRejected, Usage

PROVIDER = "scripted"  # the provider label every scripted call is recorded under


class CallTool(BaseModel):
    """The scripted model proposes one tool call (an agent's turn); the engine decides whether it runs."""

    name: str = Field(min_length=1)
    arguments: dict = Field(default_factory=dict)


@dataclass(frozen=True)
class ModelTurn:
    """What the scripted model is asked: one step's conversation, typed."""

    step: str
    output_type: type[BaseModel]
    system: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSchema, ...]

    @property
    def prompt(self) -> str:
        """The step's first user message: what the process asked."""
        return next((m.content for m in self.messages if m.role == "user"), "")

    @property
    def turn(self) -> int:
        """How many answers the model has given in this conversation (0 on the first ask)."""
        return sum(1 for m in self.messages if m.role == "assistant")

    def offered(self, tool: str) -> bool:
        return any(t.name == tool for t in self.tools)

    def results(self, tool: str | None = None) -> list[str]:
        """What the tools returned so far (of `tool` only, if given), oldest first."""
        asked = {u.id: u.name for m in self.messages for u in m.tool_uses}
        return [m.content for m in self.messages
                if m.role == "tool" and (tool is None or asked.get(m.tool_use_id or "") == tool)]


Answer = BaseModel | CallTool
ScriptedModel = Callable[[ModelTurn], Answer | Awaitable[Answer]]


class ScriptedProvider:
    """A `Provider` whose answers come from `function`; a wrong or failing answer fails the step, non-retryable."""

    def __init__(self, function: ScriptedModel) -> None:
        self._function = function

    async def complete(self, conversation: Conversation, model: ModelSpec) -> Completion:
        turn = _turn(conversation)
        try:
            answer = self._function(turn)
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception as err:  # the test's function is at fault: say so once, do not retry it
            raise ProviderRejected(f"the scripted model raised {type(err).__name__} at step {turn.step}: {err}") from None
        return _completion(answer, turn, conversation, model)


def _turn(conversation: Conversation) -> ModelTurn:
    return ModelTurn(
        step=conversation.step,
        output_type=output_type.resolve(conversation.output_type),
        system=conversation.system,
        messages=tuple(conversation.messages),
        tools=tuple(conversation.tools),
    )


def _completion(answer: object, turn: ModelTurn, conversation: Conversation, model: ModelSpec) -> Completion:
    """The answer as a completion, billed at the offline stand-in's estimate so budgets have numbers."""
    if isinstance(answer, CallTool):
        use = ToolUse(id=f"scripted-{turn.step}-{turn.turn}", name=answer.name, arguments=answer.arguments)
        message, output, text = Message(role="assistant", tool_uses=[use]), None, answer.model_dump_json()
    elif isinstance(answer, turn.output_type):
        output = answer.model_dump(mode="json")
        text = json.dumps(output)
        message = Message(role="assistant", content=text)
    else:
        raise ProviderRejected(
            f"the scripted model answered {type(answer).__name__} at step {turn.step}, "
            f"which asks for {turn.output_type.__name__} (or a CallTool)"
        )
    usage = Usage(input=conversation.estimated_input_tokens(), output=estimate_tokens(text))
    return Completion(message=message, output=output, usage=usage, model=model.name)
