"""Which fields hold personal data, read from the contracts themselves, and keeping it off readable surfaces.

A contract marks a field personal with `PERSONAL` (`Field(..., json_schema_extra=PERSONAL)`),
and the one that identifies the person a run is about with `SUBJECT`. Payloads are
encrypted by the codec; what Temporal shows without decoding (current details, failure
messages, summaries) is not. So the engine learns the marked values of every typed value
that passes through a run (its input, tool arguments and results) and `Redactor.text`
takes them out of any text it publishes, whatever step, model or person wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel
from temporalio import workflow

from workflows.visibility import plain

with workflow.unsafe.imports_passed_through():
    from activities.personal import PERSONAL, SUBJECT  # noqa: F401 (the marks, re-exported for processes)

SHOWN = "‹personal›"  # what a reader sees in place of a personal value
_SHORTEST = 3  # shorter values ("GB", "1") would blank out ordinary words; none identifies a person alone


def is_personal(model: type[BaseModel], field: str) -> bool:
    extra = model.model_fields[field].json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("personal"))


def values(value: Any, key: str = "personal") -> Iterator[str]:
    """The text of every field marked `key` in `value` (a model, or lists and dicts of them), nested ones too."""
    if isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            field = getattr(value, name)
            extra = info.json_schema_extra
            if isinstance(extra, dict) and extra.get(key) and field is not None and not isinstance(field, BaseModel):
                yield str(field)
            else:
                yield from values(field, key)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from values(item, key)
    elif isinstance(value, dict):
        for item in value.values():
            yield from values(item, key)


def masked(model: BaseModel) -> dict[str, Any]:
    """The model as JSON data with each personal field's value shown as `SHOWN` (nested models too)."""
    data = model.model_dump(mode="json")
    for name in type(model).model_fields:
        field = getattr(model, name)
        if field is None:
            continue
        if is_personal(type(model), name):
            data[name] = SHOWN
        elif isinstance(field, BaseModel):
            data[name] = masked(field)
    return data


class Redactor:
    """The personal values a run has seen, and text with them taken out (case-insensitively)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def learn(self, *given: Any) -> None:
        found = {v for v in (s.strip() for g in given for s in values(g)) if len(v) >= _SHORTEST}
        new = {form for v in found for form in (v, plain(v))} - self._seen  # as written, and as markdown shows it
        if new:
            self._seen |= new
            longest_first = sorted(self._seen, key=lambda v: (-len(v), v))  # a full name before its parts
            self._pattern = re.compile("|".join(map(re.escape, longest_first)), re.IGNORECASE)

    def text(self, text: str) -> str:
        return text if self._pattern is None else self._pattern.sub(SHOWN, text)
