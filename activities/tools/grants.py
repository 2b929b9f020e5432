"""Least privilege: which tools a process or one of its agents may call, and within which bounds.

Nothing is allowed unless `baton.toml` grants it. A grantee is a process
(`onboarding`) or one of its agents (`support-triage/returns`). The same check
runs twice, on plain JSON arguments so both sides agree: in the workflow
before a tool is scheduled (a refusal becomes an observation in the ledger),
and in the tool activity on the grant it was handed (so a bug in the engine
still cannot reach a system of record).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Bound(BaseModel):
    """A limit on one argument: a number range, a list of values, or e-mail domains."""

    model_config = ConfigDict(extra="forbid")

    min: float | None = None
    max: float | None = None
    one_of: list[str] | None = None
    domains: list[str] | None = Field(default=None, description="e-mail addresses must be at one of these")

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


def _domain(address: Any) -> str:
    text = str(address)
    return text.rsplit("@", 1)[-1].lower() if "@" in text else ""
