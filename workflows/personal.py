"""Which fields hold personal data, read from the contracts themselves, and where it may go.

A contract marks a field personal with `PERSONAL` (`Field(..., json_schema_extra=PERSONAL)`),
and the one that identifies the person a run is about with `SUBJECT`. The engine learns
the marked values of every typed value that passes through a run (its input, tool
arguments and results) and uses them twice:

- `Redactor.text` takes them out of any text Temporal shows without decoding (current
  details, failure messages, summaries), whatever step, model or person wrote it;
- `Redactor.mentioned` names the fields (never the values) a prompt carries, so a model
  step that did not declare `personal=True` is refused before its request: a process
  author cannot send personal data to a model by forgetting to say so. Matching is on
  whole values, case-insensitive; a prompt carrying only part of one (a first name) is
  not caught.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
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
    """The personal values a run has seen: text with them taken out, and the fields a text mentions."""

    def __init__(self) -> None:
        self.subject: str | None = None  # the run input's SUBJECT field: whom the run is about
        self._seen: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._fields: dict[str, str] = {}  # lower-cased value -> `Model.field` it came from

    def learn(self, *given: Any) -> None:
        for g in given:
            self._fields.update({k: v for k, v in personal_values(g).items() if k not in self._fields})
        found = {v for v in (s.strip() for g in given for s in values(g)) if len(v) >= _SHORTEST}
        new = {form for v in found for form in (v, plain(v))} - self._seen  # as written, and as markdown shows it
        if new:
            self._seen |= new
            self._pattern = None  # compiled again when next needed: most runs never show a text

    def text(self, text: str) -> str:
        if not self._seen:
            return text
        if self._pattern is None:
            longest_first = sorted(self._seen, key=lambda v: (-len(v), v))  # a full name before its parts
            self._pattern = re.compile("|".join(map(re.escape, longest_first)), re.IGNORECASE)
        return self._pattern.sub(SHOWN, text)

    def mentioned(self, text: str) -> list[str]:
        """The fields (never their values) whose personal values `text` contains, sorted."""
        lowered = text.lower()
        return sorted({field for value, field in self._fields.items() if value in lowered})


def personal_values(value: Any) -> dict[str, str]:
    """Each personal value in `value` (models nested in models, lists and dicts too), lower-cased, to its field's name."""
    found: dict[str, str] = {}
    if isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            inner = getattr(value, name, None)
            if is_personal(type(value), name):
                for text in _texts(inner):
                    found.setdefault(text.lower(), f"{type(value).__name__}.{name}")
            else:
                found.update({k: v for k, v in personal_values(inner).items() if k not in found})
    elif isinstance(value, (list, tuple, set, dict)):
        for item in value.values() if isinstance(value, dict) else value:
            found.update({k: v for k, v in personal_values(item).items() if k not in found})
    return found


def _texts(value: Any) -> list[str]:
    """The texts a personal field's value can appear as in a prompt (booleans and empties say nothing)."""
    if isinstance(value, BaseModel):  # a personal model (an address): every value in it is personal
        return [t for name in type(value).model_fields for t in _texts(getattr(value, name, None))]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple, set)):
        return [t for item in value for t in _texts(item)]
    if isinstance(value, bool) or value is None:
        return []
    text = value.isoformat() if isinstance(value, date) else str(value)
    return [text] if len(text) >= _SHORTEST else []
