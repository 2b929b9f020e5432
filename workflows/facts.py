"""Facts: what a rule may weigh beyond the model's own arguments.

A model proposes `issue_refund(order_id="O-2002", amount_usd=40)`. Whether that
may run depends on what the model does not get to say: whose order it is,
what was paid, what this run has refunded already. An agent declares, next to
its approvals, where such facts come from:

- a `Lookup` files a read tool's result under a name, by one of its
  arguments: after `lookup_order(order_id="O-2002")`, a proposal whose
  `order_id` is "O-2002" sees that result as `order.*`. A write named in
  `changed_by` makes the record stale: the order must be read again.
- a `Total` sums one argument over the calls of a tool this run has sent
  (a call that failed may still have acted, so it counts).
- `require` names, per tool, a rule that must hold for a call to run at all;
  a proposal it does not allow is refused before anyone reviews it, and the
  refusal names the values the rule saw.

A rule (workflows/thresholds.py) sees the proposal's arguments by name, what
the process handed the agent as `context.*`, each lookup that applies and each
total. The approval of an irreversible call, its `auto_approve` rule and the
person asked, see the same subject. All of it is pure and evaluated in the
workflow; what a run has established travels in its `FactBook`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, model_validator
from temporalio import workflow

from workflows.thresholds import Rule, RuleError

with workflow.unsafe.imports_passed_through():
    from activities.tools.registry import TOOLS, Effect

CONTEXT = "context"


class Lookup(BaseModel):
    """A read tool's result, filed under `name` by its `key` argument, for calls that name the same key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")
    tool: str
    key: str = Field(description="an argument of `tool`; a later call with an argument of that name refers to it")
    changed_by: tuple[str, ...] = Field(default=(), description="tools whose call on the same key makes the record stale")


class Total(BaseModel):
    """A running total per run: `field` of `tool`'s arguments, summed over the calls sent so far."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z_][a-z0-9_]*$")
    tool: str
    field: str


class FactBook(BaseModel):
    """What one run has established: lookup results by name and key, and its running totals."""

    records: dict[str, dict[str, dict]] = {}
    totals: dict[str, float] = {}


class Subject(RootModel[dict[str, Any]]):
    """What a rule about one proposal sees, and what the person asked about it is shown."""


class Facts(BaseModel):
    """An agent's facts and the rules its tool calls must meet; checked once, where they are declared."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lookups: tuple[Lookup, ...] = ()
    totals: tuple[Total, ...] = ()
    require: dict[str, str] = Field(default={}, description="tool -> a rule its calls must meet, else refused")

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        for lookup in self.lookups:
            _tool(lookup.tool, "lookup")
            if TOOLS[lookup.tool].effect is not Effect.READ:
                raise ValueError(f"lookup {lookup.name!r}: {lookup.tool} is no read tool; facts come from reads")
            _argument(lookup.tool, lookup.key, f"lookup {lookup.name!r}")
            for tool in lookup.changed_by:
                _tool(tool, f"lookup {lookup.name!r}")
        for total in self.totals:
            _tool(total.tool, "total")
            _argument(total.tool, total.field, f"total {total.name!r}")
            if TOOLS[total.tool].args.model_fields[total.field].annotation not in (int, float):
                raise ValueError(f"total {total.name!r}: {total.tool}'s {total.field} is no number")
        names = [x.name for x in (*self.lookups, *self.totals)]
        if len(set(names)) != len(names) or CONTEXT in names:
            raise ValueError(f"fact names must be distinct and not {CONTEXT!r}: {names}")
        for tool, text in self.require.items():
            self._check_rule(tool, text)
        return self

    def _check_rule(self, tool: str, text: str) -> None:
        """A required rule names only what a call of `tool` will see, so a typo fails here, not in a run."""
        args = set(_tool(tool, "require").args.model_fields)
        lookups = {x.name: x for x in self.applying(tool)}
        known = args | set(lookups) | {t.name for t in self.totals} | {CONTEXT}
        if clash := args & (set(lookups) | {t.name for t in self.totals}):
            raise ValueError(f"require {tool}: fact names {sorted(clash)} are also its arguments")
        for name in Rule.parse(text).fields():
            head, _, rest = name.partition(".")
            if head not in known:
                raise ValueError(f"require {tool}: `{text}` names {name!r}; it sees {sorted(known)}")
            if head in lookups and rest.split(".")[0] not in TOOLS[lookups[head].tool].result.model_fields:
                raise ValueError(f"require {tool}: `{text}` names {name!r}, no field of {lookups[head].tool}'s result")

    def applying(self, tool: str) -> list[Lookup]:
        """The lookups a call of `tool` refers to: those keyed by one of its arguments."""
        spec = TOOLS.get(tool)
        return [x for x in self.lookups if spec is not None and x.key in spec.args.model_fields]


@dataclass
class RunFacts:
    """One run's facts: what was declared, what the process handed it, and what it has established."""

    declared: Facts
    context: dict
    book: FactBook

    def subject(self, tool: str, args: BaseModel) -> Subject:
        """The proposal's arguments, the run's context, each lookup that applies (blank if unread), each total."""
        given = args.model_dump(mode="json")
        seen: dict[str, Any] = {**given, CONTEXT: self.context}
        for lookup in self.declared.applying(tool):
            record = self.book.records.get(lookup.name, {}).get(str(given[lookup.key]))
            seen[lookup.name] = record or dict.fromkeys(TOOLS[lookup.tool].result.model_fields)
        seen |= {t.name: self.book.totals.get(t.name, 0.0) for t in self.declared.totals}
        return Subject(seen)

    def refusal(self, tool: str, args: BaseModel) -> str | None:
        """Why the tool's required rule refuses this call, with the values it saw; None when it may run."""
        text = self.declared.require.get(tool)
        if text is None:
            return None
        rule = Rule.parse(text)
        try:
            allowed, seen = rule.evaluate(self.subject(tool, args))
        except RuleError as err:  # e.g. a context without the field: refused, never allowed by accident
            return f"{tool} needs `{text}`, which cannot be checked here: {err}"
        if allowed:
            return None
        why = f"{tool} needs `{text}`, which does not hold with " + ", ".join(f"{k}={v!r}" for k, v in seen.items())
        heads = {name.split(".")[0] for name in rule.fields()}
        unread = [
            f"look {x.name} {getattr(args, x.key)} up first ({x.tool}): this run has not read it since it last changed"
            for x in self.declared.applying(tool)
            if x.name in heads and str(getattr(args, x.key)) not in self.book.records.get(x.name, {})
        ]
        return "; ".join([why, *unread])

    def sent(self, tool: str, args: BaseModel) -> None:
        """A call is on its way: it counts towards the totals, and what it changes must be read again."""
        for total in self.declared.totals:
            if total.tool == tool:
                self.book.totals[total.name] = self.book.totals.get(total.name, 0.0) + getattr(args, total.field)
        for lookup in self.declared.applying(tool):
            if tool in lookup.changed_by:
                self.book.records.get(lookup.name, {}).pop(str(getattr(args, lookup.key)), None)

    def read(self, tool: str, args: BaseModel, output: dict) -> None:
        """A read tool answered: file its result, if it is one, under each lookup it establishes."""
        for lookup in self.declared.lookups:
            if lookup.tool != tool:
                continue
            try:
                record = TOOLS[tool].result.model_validate(output).model_dump(mode="json")
            except ValidationError:
                return  # not the tool's result (a preview of one kept out of history): nothing is established
            self.book.records.setdefault(lookup.name, {})[str(getattr(args, lookup.key))] = record


def _tool(name: str, where: str):
    if name not in TOOLS:
        raise ValueError(f"{where}: {name!r} is not a tool")
    return TOOLS[name]


def _argument(tool: str, field: str, where: str) -> None:
    if field not in TOOLS[tool].args.model_fields:
        raise ValueError(f"{where}: {field!r} is not an argument of {tool}")
