"""The `offline` provider: schema-valid answers with no key and no network.

It is a stand-in for demos and tests, not a model: every answer is derived
deterministically from the output schema (its `examples` first) and the prompt,
and the ledger says `provider=offline`. Token counts are estimated at four
characters per token so that budgets and cost reports have numbers to work on.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from activities.llm.catalog import ModelSpec
from activities.llm.conversation import Conversation, Message, estimate_tokens
from activities.llm.provider import Completion, ProviderRejected, Usage


class OfflineProvider:
    async def complete(self, conversation: Conversation, model: ModelSpec) -> Completion:
        prompt = next((m.content for m in conversation.messages if m.role == "user"), "")
        filler = SchemaFiller(conversation.output_schema, prompt)
        output = filler.value(conversation.output_schema, conversation.output_name)
        text = json.dumps(output)
        return Completion(
            message=Message(role="assistant", content=text),
            output=output,
            usage=Usage(input=conversation.estimated_input_tokens(), output=estimate_tokens(text)),
        )


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
