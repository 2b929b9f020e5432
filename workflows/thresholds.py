"""Threshold rules: when a step may go ahead without a person.

A rule is a short expression over a step's typed fields, written where the
step is declared and recorded word for word in the ledger with the values it
saw, e.g. `confidence >= 0.9 and amount_usd <= 50`. The grammar is small on
purpose (comparisons joined by `and` / `or`, `and` binding tighter), so a
reviewer can read every rule and the workflow can evaluate it deterministically.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

OPS: Mapping[str, Callable[[Any, Any], bool]] = MappingProxyType({  # read-only: shared by every run
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
    ">": operator.gt, "<": operator.lt,
})
TOKEN = re.compile(
    r"\s*(?:(?P<op>>=|<=|==|!=|>|<)|(?P<word>and|or)\b|(?P<str>'[^']*')"
    r"|(?P<num>-?\d+(?:\.\d+)?)\b|(?P<bool>true|false|null)\b|(?P<field>[A-Za-z_][\w.]*))"
)


class RuleError(ValueError):
    """A rule that does not parse, or names a field its subject does not have."""


class Comparison(BaseModel):
    field: str
    op: str
    value: Any

    def holds(self, facts: dict) -> bool:
        seen = _lookup(facts, self.field)
        try:
            return bool(OPS[self.op](seen, self.value))
        except TypeError:
            return False  # comparing a missing or differently typed value never allows


class Rule(BaseModel):
    """`any_of` groups, each true when all its comparisons hold."""

    text: str
    any_of: list[list[Comparison]]

    @classmethod
    def parse(cls, text: str) -> Rule:
        tokens = _tokens(text)
        groups: list[list[Comparison]] = [[]]
        i = 0
        while i < len(tokens):
            if len(tokens) - i < 3 or [k for k, _ in tokens[i:i + 3]] != ["field", "op", "value"]:
                raise RuleError(f"rule {text!r}: expected `field op value` at {' '.join(v for _, v in tokens[i:i + 3])!r}")
            groups[-1].append(Comparison(field=tokens[i][1], op=tokens[i + 1][1], value=_literal(tokens[i + 2])))
            i += 3
            if i < len(tokens):
                kind, word = tokens[i]
                if kind != "word":
                    raise RuleError(f"rule {text!r}: expected `and` or `or` before {word!r}")
                if word == "or":
                    groups.append([])
                i += 1
                if i == len(tokens):
                    raise RuleError(f"rule {text!r}: ends with {word!r}")
        if not groups[0]:
            raise RuleError("an empty rule allows nothing; leave it out instead")
        return cls(text=text, any_of=groups)

    def fields(self) -> list[str]:
        return list(dict.fromkeys(c.field for group in self.any_of for c in group))

    def evaluate(self, subject: BaseModel) -> tuple[bool, dict[str, Any]]:
        """Whether the rule allows, and the values it saw (for the ledger)."""
        facts = subject.model_dump(mode="json")
        for name in self.fields():
            _lookup(facts, name, strict=True)
        seen = {name: _lookup(facts, name) for name in self.fields()}
        return any(all(c.holds(facts) for c in group) for group in self.any_of), seen


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text.rstrip()):
        m = TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise RuleError(f"rule {text!r}: cannot read {text[pos:].strip()!r}")
        kind = m.lastgroup
        out.append(("value" if kind in ("str", "num", "bool") else kind, (kind, m.group(kind))))
        pos = m.end()
    return [(k, v[1] if k != "value" else v) for k, v in out]


def _literal(token: tuple[str, Any]) -> Any:
    kind, raw = token[1]
    if kind == "str":
        return raw[1:-1]
    if kind == "num":
        return float(raw) if "." in raw else int(raw)
    return {"true": True, "false": False, "null": None}[raw]


def _lookup(facts: dict, dotted: str, strict: bool = False) -> Any:
    value: Any = facts
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            if strict:
                raise RuleError(f"rule names {dotted!r}, which is not a field of the step's subject")
            return None
        value = value[part]
    return value
