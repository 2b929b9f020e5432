"""A run's policy as the worker's config sets it: its budget, tier plan, roles, grants and identity keys.

A workflow may not read config, so it asks for its policy once, at start, in
a local activity; the answer is recorded in history and replays unchanged even
if `baton.toml` changes later.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from temporalio import activity

from activities.identity import TrustedIssuer
from activities.llm.catalog import Catalog
from activities.oidc import IssuerKeys
from activities.spend import AcrossRuns
from activities.subject import subject_digest_or_refuse
from activities.tools.grants import Grant

CAPS = ("max_cost_usd", "max_steps", "max_llm_calls", "max_tool_calls", "max_wall_clock", "max_approval_idle")


class BudgetOverride(BaseModel):
    """A run's own limits (optional per cap): tighter than its process's, or up to the policy maximum."""

    model_config = ConfigDict(extra="forbid")

    max_cost_usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)  # JSON would carry inf as null
    max_steps: int | None = Field(default=None, gt=0)
    max_llm_calls: int | None = Field(default=None, gt=0)
    max_tool_calls: int | None = Field(default=None, gt=0)
    max_wall_clock: timedelta | None = Field(default=None, gt=timedelta(0))
    max_approval_idle: timedelta | None = Field(default=None, gt=timedelta(0))


class Budget(BaseModel):
    """Kill switches checked before every step (and, for time, while a run waits).

    The caps added after the first two are None in runs recorded before they
    existed: such runs replay and finish under the limits they started with.
    """

    model_config = ConfigDict(extra="forbid")

    max_cost_usd: float = Field(default=0.50, gt=0, allow_inf_nan=False)
    max_steps: int = Field(default=25, gt=0)
    max_llm_calls: int | None = Field(default=None, ge=0, description="model requests, repairs and fallbacks included")
    max_tool_calls: int | None = Field(default=None, ge=0, description="tool calls scheduled; refused ones do not count")
    max_wall_clock: timedelta | None = Field(default=None, gt=timedelta(0), description="from the run's start")
    max_approval_idle: timedelta | None = Field(
        default=None, gt=timedelta(0), description="how long one approval request may wait, escalations included"
    )
    maximum: BudgetOverride | None = Field(
        default=None, description="how far a run's override may raise a cap; None: overrides may only tighten"
    )
    across_runs: AcrossRuns | None = Field(
        default=None, description="what all runs of the process may spend together per window (activities/spend.py)"
    )

    def tightened(self, override: BudgetOverride | None) -> tuple[Budget, list[str]]:
        """Apply a run's override: lower freely, raise only up to `maximum`; says what it clamped."""
        if override is None:
            return self, []
        caps, clamped = {}, []
        for cap in CAPS:
            asked, limit = getattr(override, cap), getattr(self, cap)
            if asked is None:
                continue
            ceiling = getattr(self.maximum, cap, None) if self.maximum else None
            allowed = ceiling if ceiling is not None else limit
            if allowed is not None and asked > allowed:
                clamped.append(f"{cap}: asked {asked}, allowed up to {allowed}")
                asked = allowed
            caps[cap] = asked
        return self.model_copy(update=caps), clamped


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
    audit_values: Literal["digests", "full", "all-digests"] = Field(
        default="digests", description="what `baton audit` exports in full, and what as keyed digests"
    )
    identity: TrustedIssuer | None = Field(
        default=None, description="whose tokens prove who decides, with its keys; None: no [identity], nobody can"
    )
    subject_digest: str | None = Field(
        default=None, description="whom the run is about, keyed (activities/subject.py); None: about nobody, or a run "
        "that asked for it on its own"
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
        audit_values: Literal["digests", "full", "all-digests"] = "digests",
        issuer_keys: IssuerKeys | None = None,
    ) -> None:
        self._issuer_keys = issuer_keys
        self._audit_values = audit_values
        self._roles = roles or {}
        self._grants = grants or {}
        self._catalog = catalog
        self._budgets = budgets
        self._default = default
        self._llm_timeout_s = llm_timeout_s

    @activity.defn(name="run_policy")
    async def run_policy(self, process: str, subject: str | None = None) -> RunPolicy:
        """`subject`: the identifier the run is about, given back as its keyed digest in the same call."""
        return RunPolicy(
            budget=self._budgets.get(process, self._default),
            tiers=self._catalog.tiers,
            llm_timeout_s=self._llm_timeout_s,
            roles=self._roles,
            grants={k: g for k, g in self._grants.items() if k == process or k.startswith(process + "/")},
            audit_values=self._audit_values,
            identity=await self._issuer_keys.trusted() if self._issuer_keys else None,
            subject_digest=None if subject is None else subject_digest_or_refuse(subject),
        )
