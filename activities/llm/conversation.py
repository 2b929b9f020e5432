"""A model conversation in provider-neutral form.

Each provider module translates this into its own wire format and back. Repair
turns and agent turns are just more messages, so one shape serves a typed
step, its repairs and a tool-using loop alike.
"""

from __future__ import annotations

import json
import math
import re
from typing import Literal

from pydantic import BaseModel, Field

CHARS_PER_TOKEN = 4
PAYLOAD_SLOT = "{payload}"  # where a message's out-of-history content goes back in
ANSWER_TOOL = "Give your final answer by calling this tool with it."  # the answer tool's description


def estimate_tokens(text: str) -> int:
    """A rough, deliberately generous count: ~4 characters per token."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


class ToolSchema(BaseModel):
    """A tool offered to the model: its name, what it is for, its JSON-schema arguments."""

    name: str
    description: str = ""
    parameters: dict = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolUse(BaseModel):
    """A call the model proposes (or, for Anthropic's forced tool, its typed answer)."""

    id: str
    name: str
    arguments: dict


class Message(BaseModel):
    """One turn. `role="tool"` answers the assistant's `ToolUse` with the same id."""

    role: Literal["user", "assistant", "tool"]
    content: str = ""
    tool_uses: list[ToolUse] = []
    tool_use_id: str | None = None
    is_error: bool = False
    payload_ref: str | None = Field(
        default=None, description="content kept out of history (activities/payloads.py); put back at PAYLOAD_SLOT before sending"
    )


class Conversation(BaseModel):
    """Everything a provider needs for one call.

    `step` and `output_type` say who asks and for what (the step's name, the
    output model's stable name): never sent on the wire, they let a provider
    that is not a remote model (a test's scripted one) answer per step and type.
    """

    step: str = ""
    output_type: str = Field(default="", description="the output model's stable name (activities/llm/output_type.py)")
    system: str = ""
    messages: list[Message]
    output_name: str
    output_schema: dict
    tools: list[ToolSchema] = []
    max_output_tokens: int = Field(default=1024, gt=0)

    def estimated_input_tokens(self) -> int:
        """What the call may be billed for on input, before it is sent."""
        sent = self.model_dump_json(include={"system", "messages", "output_schema", "tools"})
        return estimate_tokens(sent)

    def system_with_schema(self) -> str:
        """The system prompt and the output schema, for modes where only the prompt carries the schema.

        It says "JSON": OpenAI's JSON mode refuses messages without the word.
        """
        ask = (
            "Give your final answer as one JSON object, and nothing else, matching this JSON schema "
            f"(named {self.output_name}):\n{json.dumps(self.output_schema)}"
        )
        return f"{self.system}\n\n{ask}" if self.system else ask

    def typed_output(self, text: str, uses: list[ToolUse]) -> dict | None:
        """The typed answer: the answer tool's input, or else a JSON object in the text when no tool was called."""
        answer = next((u.arguments for u in uses if u.name == self.output_name), None)
        if answer is not None or uses:
            return answer
        return parse_json_object(text)

    def answered(self, answer: Message, feedback: str) -> Conversation:
        """The next turn: the model's answer and our reply to it (a repair or a tool result)."""
        replies = [
            Message(role="tool", tool_use_id=use.id, content=feedback, is_error=True) for use in answer.tool_uses
        ] or [Message(role="user", content=feedback)]  # every tool use must be answered
        return self.model_copy(update={"messages": [*self.messages, answer, *replies]})


FENCED = re.compile(r"```(?:json)?[ \t]*\n(.*?)```", re.DOTALL)


def parse_json_object(text: str) -> dict | None:
    """The JSON object in a model's text answer: all of it, a ```json block in it, or what its outer braces hold.

    A model asked for JSON in the prompt alone often wraps it in prose; the
    answer is validated against the output model either way.
    """
    body = text.strip()
    candidates = [body, *FENCED.findall(body)]
    start, end = body.find("{"), body.rfind("}")
    if 0 <= start < end:
        candidates.append(body[start:end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None
