"""The `offline` provider: schema-valid answers with no key and no network.

It is a stand-in for demos and tests, not a model: every answer is derived
deterministically from the output schema (its `examples` first) and the prompt,
and the ledger says `provider=offline`. Token counts are estimated at four
characters per token so that budgets and cost reports have numbers to work on.

Given `OfflineScripts`, a conversation whose first user message matches a
script is answered from that script instead, turn by turn, so that answers can
differ per case and tests can drive misbehaving tool-using agents through the
real engine (see `offline_scripts`). Once a script's turns run out (and it does
not repeat its last one), the schema filler answers as before.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from activities.llm.catalog import ModelSpec
from activities.llm.conversation import Conversation, Message, ToolUse, estimate_tokens
from activities.llm.offline_scripts import OfflineScripts, Turn
from activities.llm.provider import Completion, ProviderRejected, Usage


class OfflineProvider:
    """Answers from a matching script when it has one, otherwise from the output schema."""

    def __init__(self, scripts: OfflineScripts | None = None) -> None:
        self._scripts = scripts

    async def complete(self, conversation: Conversation, model: ModelSpec) -> Completion:
        prompt = next((m.content for m in conversation.messages if m.role == "user"), "")
        turn, index = self._scripted(conversation, prompt)
        if turn is not None:
            return _play(turn, index, conversation).model_copy(update={"model": model.name})
        filler = SchemaFiller(conversation.output_schema, prompt)
        output = filler.value(conversation.output_schema, conversation.output_name)
        text = json.dumps(output)
        return Completion(
            message=Message(role="assistant", content=text),
            output=output,
            usage=Usage(input=conversation.estimated_input_tokens(), output=estimate_tokens(text)),
            model=model.name,
        )

    def _scripted(self, conversation: Conversation, prompt: str) -> tuple[Turn | None, int]:
        """The script's turn for this conversation, if a script matches and has one left.

        The turn index is the number of assistant messages so far: the first ask
        is turn 0, and each tool proposal or repaired answer moves it on by one.
        """
        script = self._scripts.find(prompt, conversation.output_name) if self._scripts else None
        if script is None:
            return None, 0
        index = sum(1 for m in conversation.messages if m.role == "assistant")
        return script.turn(index), index


def _play(turn: Turn, index: int, conversation: Conversation) -> Completion:
    """A scripted turn as a completion, exactly as written: no filtering, no validation.

    Copies, so that whoever holds the completion cannot change the script for the next call.
    """
    turn = turn.model_copy(deep=True)
    if turn.tool is not None:
        text = json.dumps({"name": turn.tool, "arguments": turn.arguments})
        message = Message(
            role="assistant", content="",
            tool_uses=[ToolUse(id=f"offline-call-{index}", name=turn.tool, arguments=turn.arguments)],
        )
        output = None
    else:
        text = json.dumps(turn.answer)
        message = Message(role="assistant", content=text)
        output = turn.answer
    usage = Usage(input=conversation.estimated_input_tokens(), output=estimate_tokens(text))
    return Completion(message=message, output=output, usage=usage)


class OfflineCannotAnswer(ProviderRejected):
    """The schema asks for something the stand-in cannot invent (a regex pattern, say)."""


MAX_DEPTH = 4  # past this, optional fields of recursive models are left empty


class SchemaFiller:
    """Builds the simplest value a JSON schema accepts, preferring its examples."""

    def __init__(self, root: dict, prompt: str) -> None:
        self._defs = root.get("$defs", {})
        self._topic = next((line.strip() for line in prompt.splitlines() if line.strip()), "")
        self._seed = hashlib.sha256(prompt.encode()).hexdigest()
        self._pick = int(self._seed[:4], 16) % 100
        self._depth = 0

    def value(self, schema: dict, name: str) -> Any:
        if "$ref" in schema:
            return self._nested(self._defs[schema["$ref"].rsplit("/", 1)[-1]], name)
        if "const" in schema:
            return schema["const"]
        if schema.get("examples"):
            return schema["examples"][0]
        if "default" in schema:
            return schema["default"]
        if "enum" in schema:
            return schema["enum"][0]
        for keyword in ("anyOf", "oneOf", "allOf"):
            if keyword in schema:
                return self._choice(schema[keyword], name)
        kind = schema.get("type", "object")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        return getattr(self, f"_{kind}")(schema, name)

    def _nested(self, schema: dict, name: str) -> Any:
        self._depth += 1
        try:
            return self.value(schema, name)
        finally:
            self._depth -= 1

    def _choice(self, options: list[dict], name: str) -> Any:
        present = [s for s in options if s.get("type") != "null"]
        if not present or (self._depth >= MAX_DEPTH and len(present) < len(options)):
            return None
        return self.value(present[0], name)

    def _object(self, schema: dict, name: str) -> dict:
        props = schema.get("properties", {})
        return {key: self.value(sub, key) for key, sub in props.items()}

    def _array(self, schema: dict, name: str) -> list:
        if "prefixItems" in schema:  # a tuple: one value per position
            return [self.value(item, name) for item in schema["prefixItems"]]
        count = min(max(schema.get("minItems", 1), 1), schema.get("maxItems", 1 << 30))
        return [self.value(schema.get("items", {}), name) for _ in range(count)]

    def _string(self, schema: dict, name: str) -> str:
        if "pattern" in schema:
            raise OfflineCannotAnswer(
                f"the offline provider cannot invent a value for {name!r} matching "
                f"{schema['pattern']!r}; give the field `examples`"
            )
        fmt = schema.get("format")
        if fmt == "email":
            return f"offline-{self._seed[:8]}@example.com"
        if fmt == "date-time":
            return "2026-01-01T00:00:00Z"
        if fmt == "date":
            return "2026-01-01"
        text = f"[offline {name}] {self._topic}".strip()
        text = text.ljust(schema.get("minLength", 0), ".")
        return text[: schema["maxLength"]] if "maxLength" in schema else text

    def _integer(self, schema: dict, name: str) -> int:
        step = int(schema.get("multipleOf", 1))
        low = schema.get("minimum", schema.get("exclusiveMinimum", None))
        if low is not None and "minimum" not in schema:
            low += 1
        high = schema.get("maximum", schema.get("exclusiveMaximum", None))
        if high is not None and "maximum" not in schema:
            high -= 1
        if low is None and high is None:
            value = self._pick
        elif high is None:
            value = low + self._pick
        elif low is None:
            value = high - self._pick
        else:
            value = low + self._pick % (high - low + 1)
        value = -(-value // step) * step  # round up to a multiple
        if high is not None and value > high:
            value -= step
        return value

    def _number(self, schema: dict, name: str) -> float:
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        if low is None and high is None:
            return self._pick / 100
        if high is None:
            return low + 1.0
        if low is None:
            return high - 1.0
        return (low + high) / 2

    def _boolean(self, schema: dict, name: str) -> bool:
        return True

    def _null(self, schema: dict, name: str) -> None:
        return None
