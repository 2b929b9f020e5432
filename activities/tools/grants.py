"""Least privilege: which tools a process or one of its agents may call, and within which bounds.

Nothing is allowed unless `baton.toml` grants it. A grantee is a process
(`onboarding`) or one of its agents (`support-triage/returns`). The same check
runs twice, on plain JSON arguments so both sides agree: in the workflow
before a tool is scheduled (a refusal becomes an observation in the ledger),
and in the tool activity against the worker's own config (so neither a bug in
the engine nor a workflow handing it a wider grant reaches a system of record).
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Self, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator


class Bound(BaseModel):
    """A limit on one argument: a number range, a list of values, or e-mail domains.

    It fails closed: a bound that would let everything through (nan, an empty
    table or list, min above max) is refused when baton.toml is read, not
    discovered when a refund goes out.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    min: float | None = None
    max: float | None = None
    one_of: list[str] | None = Field(default=None, min_length=1)
    domains: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None, min_length=1, description="e-mail addresses must be at one of these"
    )

    @model_validator(mode="after")
    def _limits_something(self) -> Self:
        if self.min is None and self.max is None and self.one_of is None and self.domains is None:
            raise ValueError("sets no limit (give min, max, one_of or domains)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}, so nothing would be allowed")
        return self

    def unfit(self, field: str, annotation: Any) -> str | None:
        """Why this bound cannot constrain an argument of type `annotation`, or None when it can."""
        kinds = _kinds(annotation)
        if (self.min is not None or self.max is not None) and "number" not in kinds:
            return f"min and max bound numbers; {field} is not one"
        if self.one_of is not None and "text" not in kinds:
            return f"one_of bounds text; {field} is not text"
        if self.domains is not None and "email" not in kinds:
            return f"domains bound e-mail addresses; {field} is not one"
        return None

    def problem(self, field: str, value: Any) -> str | None:
        """Why `value` is out of bounds, or None when it is within them."""
        values = value if isinstance(value, list) else [value]
        for v in values:
            if (self.min is not None or self.max is not None) and not isinstance(v, (int, float)):
                return f"{field}={v!r} is not a number"
            if self.min is not None and v < self.min:
                return f"{field}={v!r} is below the granted minimum {self.min:g}"
            if self.max is not None and v > self.max:
                return f"{field}={v!r} is above the granted maximum {self.max:g}"
            if self.one_of is not None and str(v) not in self.one_of:
                return f"{field}={v!r} is not one of the granted values {self.one_of}"
            if self.domains is not None and _domain(v) not in {d.lower() for d in self.domains}:
                return f"{field}={v!r} is not at a granted domain ({', '.join(self.domains)})"
        return None


class Grant(BaseModel):
    """The tools one grantee may call, and bounds on their arguments (tool -> argument -> bound)."""

    model_config = ConfigDict(extra="forbid")

    tools: list[str] = []
    bounds: dict[str, dict[str, Bound]] = {}

    def refusal(self, grantee: str, tool: str, args: dict) -> str | None:
        """Why `grantee` may not call `tool` with `args`, or None when it may."""
        if tool not in self.tools:
            granted = ", ".join(self.tools) or "none"
            return f"{tool} is not granted to {grantee} (granted: {granted})"
        for field, bound in self.bounds.get(tool, {}).items():
            problem = bound.problem(field, args.get(field))
            if problem:
                return f"{tool}: {problem} for {grantee}"
        return None


def _kinds(annotation: Any) -> set[str]:
    """What an argument's type holds, as a bound sees it: numbers, text, e-mail addresses (an address is text)."""
    if annotation is EmailStr:
        return {"email", "text"}
    if annotation is str:
        return {"text"}
    if annotation in (int, float):
        return {"number"}
    origin = get_origin(annotation)
    if origin is Literal:
        return {"text"} if all(isinstance(a, str) for a in get_args(annotation)) else set()
    if origin in (Union, types.UnionType, list, Annotated):
        return set().union(*(_kinds(a) for a in get_args(annotation) if a is not type(None)))
    return set()


def _domain(address: Any) -> str:
    text = str(address)
    return text.rsplit("@", 1)[-1].lower() if "@" in text else ""
