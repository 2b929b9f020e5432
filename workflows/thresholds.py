"""Threshold rules: when a step may go ahead without a person.

A rule is a short expression over a step's typed fields, written where the
step is declared and recorded word for word in the ledger with the values it
saw, e.g. `confidence >= 0.9 and amount_usd <= 50`. Either side of a
comparison may name a field, and sides may add or subtract numbers, so a rule
can weigh a proposal against facts: `amount_usd + order.refunded_usd <=
order.total_usd`. The grammar is small on purpose (comparisons joined by `and`
/ `or`, `and` binding tighter), so a reviewer can read every rule and the
workflow can evaluate it deterministically.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel

OPS: Mapping[str, Callable[[Any, Any], bool]] = MappingProxyType({  # read-only: shared by every run
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
    ">": operator.gt, "<": operator.lt,
})
TOKEN = re.compile(
    r"\s*(?:(?P<op>>=|<=|==|!=|>|<)|(?P<sign>[+-])|(?P<word>and|or)\b|(?P<str>'[^']*')"
    r"|(?P<num>\d+(?:\.\d+)?)\b|(?P<bool>true|false|null)\b|(?P<field>[A-Za-z_][\w.]*))"
)


class RuleError(ValueError):
    """A rule that does not parse, or names a field its subject does not have."""


class Term(BaseModel):
    """A field or a literal, added or subtracted."""

    sign: Literal[1, -1] = 1
    field: str | None = None
    value: Any = None  # the literal, when `field` is None

    def read(self, facts: dict) -> Any:
        return _lookup(facts, self.field) if self.field else self.value


class Comparison(BaseModel):
    left: list[Term]
    op: str
    right: list[Term]

    def holds(self, facts: dict) -> bool:
        try:
            return bool(OPS[self.op](_side(self.left, facts), _side(self.right, facts)))
        except TypeError:
            return False  # comparing a missing or differently typed value never allows

    def fields(self) -> list[str]:
        return [t.field for t in (*self.left, *self.right) if t.field]


class Rule(BaseModel):
    """`any_of` groups, each true when all its comparisons hold."""

    text: str
    any_of: list[list[Comparison]]

    @classmethod
    def parse(cls, text: str) -> Rule:
        reader = _Reader(text, _tokens(text))
        if reader.done():
            raise RuleError("an empty rule allows nothing; leave it out instead")
        groups: list[list[Comparison]] = [[reader.comparison()]]
        while not reader.done():
            word = reader.take("word", "`and` or `or`")
            if reader.done():
                raise RuleError(f"rule {text!r}: ends with {word!r}")
            if word == "or":
                groups.append([])
            groups[-1].append(reader.comparison())
        return cls(text=text, any_of=groups)

    def fields(self) -> list[str]:
        return list(dict.fromkeys(f for group in self.any_of for c in group for f in c.fields()))

    def evaluate(self, subject: BaseModel | dict) -> tuple[bool, dict[str, Any]]:
        """Whether the rule allows, and the values it saw (for the ledger)."""
        facts = subject.model_dump(mode="json") if isinstance(subject, BaseModel) else subject
        for name in self.fields():
            _lookup(facts, name, strict=True)
        seen = {name: _lookup(facts, name) for name in self.fields()}
        return any(all(c.holds(facts) for c in group) for group in self.any_of), seen


class _Reader:
    """Reads comparisons off a rule's tokens, naming what it expected where it fails."""

    def __init__(self, text: str, tokens: list[tuple[str, Any]]) -> None:
        self.text, self.tokens, self.at = text, tokens, 0

    def done(self) -> bool:
        return self.at == len(self.tokens)

    def take(self, kind: str, what: str) -> Any:
        if self.done() or self.tokens[self.at][0] != kind:
            found = " ".join(str(v if k != "value" else v[1]) for k, v in self.tokens[self.at:self.at + 3])
            raise RuleError(f"rule {self.text!r}: expected {what} at {found or 'the end'!r}")
        self.at += 1
        return self.tokens[self.at - 1][1]

    def comparison(self) -> Comparison:
        left = self.side()
        op = self.take("op", "a comparison (>=, <=, ==, !=, >, <)")
        return Comparison(left=left, op=op, right=self.side())

    def side(self) -> list[Term]:
        terms = [self.term(self.sign() if self._next("sign") else 1)]
        while self._next("sign"):
            terms.append(self.term(self.sign()))
        return terms

    def sign(self) -> int:
        return 1 if self.take("sign", "+ or -") == "+" else -1

    def term(self, sign: int) -> Term:
        if self._next("field"):
            return Term(sign=sign, field=self.take("field", "a field"))
        return Term(sign=sign, value=_literal(self.take("value", "a field or a value")))

    def _next(self, kind: str) -> bool:
        return not self.done() and self.tokens[self.at][0] == kind


def _side(terms: list[Term], facts: dict) -> Any:
    """One term's value as it is; several (or a signed one) summed, numbers only."""
    values = [t.read(facts) for t in terms]
    if len(terms) == 1 and terms[0].sign == 1:
        return values[0]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise TypeError("only numbers add up")
    return sum(t.sign * v for t, v in zip(terms, values, strict=True))


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


def _literal(token: tuple[str, str]) -> Any:
    kind, raw = token
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
