"""Which values of a run are personal data, and which of them a prompt carries.

A contract marks a personal field with `Field(json_schema_extra={"personal": True})`.
The engine notes the values of such fields in the run's input and in its tool
results, and refuses a model step whose prompt contains one of them without
saying `personal=True`: a process author cannot send personal data to a model
by forgetting to declare it. Matching is on whole values (case-insensitive), so
a prompt carrying only part of one (a first name) is not caught; values
shorter than MIN_LENGTH are too common in ordinary text to be told apart.
Deterministic: no I/O, only the values handed in.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

MARKER = "personal"
MIN_LENGTH = 3


def is_personal(field: FieldInfo) -> bool:
    extra = field.json_schema_extra
    return isinstance(extra, dict) and extra.get(MARKER) is True


def personal_values(value: Any) -> dict[str, str]:
    """Each personal value in `value` (models nested in models, lists and dicts too), lower-cased, to its field's name."""
    found: dict[str, str] = {}
    if isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            inner = getattr(value, name, None)
            if is_personal(field):
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
    return [text] if len(text) >= MIN_LENGTH else []


def mentioned(text: str, values: dict[str, str]) -> list[str]:
    """The fields (never their values) whose personal values `text` contains, sorted."""
    lowered = text.lower()
    return sorted({field for value, field in values.items() if value in lowered})
