"""A run's policy as the worker's config sets it: its budget and its tier plan.

A workflow may not read config, so it asks for its policy once, at start, in
a local activity; the answer is recorded in history and replays unchanged even
if `baton.toml` changes later.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from temporalio import activity

from activities.llm.catalog import Catalog
from activities.tools.grants import Grant


class Budget(BaseModel):
    """Kill switches checked before every step."""

    max_cost_usd: float = Field(default=0.50, gt=0)
    max_steps: int = Field(default=25, gt=0)

    def tightened(self, override: BudgetOverride | None) -> Budget:
        """Apply a per-run override; it may only lower a limit, never raise it."""
        if override is None:
            return self
        return Budget(
            max_cost_usd=min(self.max_cost_usd, override.max_cost_usd or self.max_cost_usd),
            max_steps=min(self.max_steps, override.max_steps or self.max_steps),
        )


class BudgetOverride(BaseModel):
    """A run's own, tighter limits (optional per field)."""

    max_cost_usd: float | None = Field(default=None, gt=0)
    max_steps: int | None = Field(default=None, gt=0)


class RunPolicy(BaseModel):
    budget: Budget
    tiers: dict[str, list[str]] = Field(description="tier -> model labels, in fallback order")
    roles: dict[str, list[str]] | None = Field(
        default=None, description="role -> people who may decide; None in runs started before roles"
    )
    llm_timeout_s: float = Field(
        default=60.0, description="start-to-close of one model step: every candidate and repair turn"
    )
    grants: dict[str, Grant] | None = Field(
        default=None, description="the process's and its agents' tool grants; None in runs started before grants"
    )


class PolicyActivities:
    def __init__(
        self,
        catalog: Catalog,
        budgets: dict[str, Budget],
        default: Budget,
        llm_timeout_s: float = 60.0,
        roles: dict[str, list[str]] | None = None,
        grants: dict[str, Grant] | None = None,
    ) -> None:
        self._roles = roles or {}
        self._grants = grants or {}
        self._catalog = catalog
        self._budgets = budgets
        self._default = default
        self._llm_timeout_s = llm_timeout_s

    @activity.defn(name="run_policy")
    async def run_policy(self, process: str) -> RunPolicy:
        return RunPolicy(
            budget=self._budgets.get(process, self._default),
            tiers=self._catalog.tiers,
            llm_timeout_s=self._llm_timeout_s,
            roles=self._roles,
            grants={k: g for k, g in self._grants.items() if k == process or k.startswith(process + "/")},
        )
