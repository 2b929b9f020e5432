"""A pydantic JSON schema rewritten into the subset OpenAI's strict mode accepts.

Strict mode wants every object closed (`additionalProperties: false`), every
property listed in `required`, `$ref` without siblings, and no validation
keywords it cannot enforce. Constraints it drops are moved into the field's
description, so the model still reads them; Baton validates the answer with
the real pydantic model afterwards either way.
"""

from __future__ import annotations

from typing import Any

UNSUPPORTED = (
    "default", "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems",
    "uniqueItems", "minProperties", "maxProperties", "patternProperties", "title",
)
DESCRIBED = ("minLength", "maxLength", "pattern", "format", "minimum", "maximum",
             "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems")
NAMED = ("properties", "$defs")


def strict_schema(schema: dict) -> dict:
    return _strict(schema, schema.get("$defs", {}))


def _strict(node: Any, defs: dict) -> Any:
    if isinstance(node, list):
        return [_strict(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node and len(node) > 1:  # strict mode rejects siblings of $ref: inline it
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    out = {k: _strict(v, defs) for k, v in node.items() if k not in UNSUPPORTED and k not in NAMED}
    for key in NAMED:  # maps of names to schemas: the names are data, not keywords
        if key in node:
            out[key] = {name: _strict(sub, defs) for name, sub in node[key].items()}
    constraints = [f"{k}={node[k]}" for k in DESCRIBED if k in node]
    if constraints:
        described = out.get("description", "")
        out["description"] = f"{described} ({', '.join(constraints)})".strip()
    if out.get("type") == "object" or "properties" in out:
        out["additionalProperties"] = False
        out["required"] = list(out.get("properties", {}))
    return out
