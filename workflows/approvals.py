"""Human approval as a designed step: who is asked, what happens at the deadline, the decision."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from workflows.outcome import RunState


class AtDeadline(StrEnum):
    """What the last deadline does when nobody has decided."""

    REJECT = "reject"  # the step returns `rejected`, by "deadline"; the process goes on
    END = "end"  # the run ends typed (`end_state`, timed_out by default)


class Stage(BaseModel):
    """Who is asked, and for how long, before the request moves on."""

    roles: list[str] = Field(min_length=1)
    timeout: timedelta

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("an approval deadline must be in the future")
        return value


class AskPolicy(BaseModel):
    """How a step asks for a decision, declared where the step is written.

    `roles` are asked first, for `timeout`; each `escalate` stage then takes
    over in turn when the previous deadline passes; after the last one,
    `at_deadline` applies. `auto_approve` is a threshold rule over the step's
    subject (see workflows/thresholds.py): when it holds, nobody is asked.
    """

    roles: list[str] = Field(min_length=1)
    timeout: timedelta
    escalate: list[Stage] = []
    at_deadline: AtDeadline = AtDeadline.END
    end_state: RunState = RunState.TIMED_OUT
    auto_approve: str | None = None

    def stages(self) -> list[Stage]:
        return [Stage(roles=self.roles, timeout=self.timeout), *self.escalate]

    def roles_asked(self) -> set[str]:
        """Every role any stage asks: a decider whose token lists none of them can never decide."""
        return {role for stage in self.stages() for role in stage.roles}


class ApprovalRequest(BaseModel):
    """One open question to people: stable id, what is asked, of whom, by when."""

    id: str
    step: str
    ask: str
    proposed: str = Field(default="", description="the action that happens if approved")
    roles: list[str] = Field(description="roles asked now (the current stage)")
    people: list[str] | None = Field(
        default=None, description="who may decide now; None = not enforced (runs started before roles)"
    )
    stage: int = Field(default=0, description="0 = first ask, 1.. = escalations")
    escalates_to: list[str] = Field(default=[], description="roles of the next stage, if any")
    context: dict
    cost_so_far_usd: float
    requested_at: datetime
    deadline: datetime = Field(description="when the current stage ends")
    at_deadline: AtDeadline = AtDeadline.END
    stops_run: str | None = Field(
        default=None, description="the budget cap that ends the run at `deadline`, when it comes before the stage's own"
    )


class Decision(BaseModel):
    """The payload of the `approve` / `reject` signals (plain `temporal workflow signal`).

    `token` proves who decides: a signed token from the identity provider, which
    the run verifies (activities/identity.py). `by` is no identity: when given it
    must name the token's subject, as a cross-check. Runs started before tokens
    were asked for took `by` as the decider's name. A field it does not know is
    refused, not dropped, and nothing is coerced (`"yes"` or 1 is no `true`): a
    decision says exactly what it says.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    by: str | None = Field(default=None, min_length=1, description="a cross-check: the token's subject")
    token: str | None = Field(default=None, repr=False, description="the decider's token from the identity provider")
    request_id: str | None = Field(
        default=None, max_length=200, description="may be left out when exactly one request is open"
    )
    comment: str = Field(default="", max_length=2000)


class Verdict(Decision):
    """The payload of the `decide` update: a decision and which way it goes."""

    approved: bool


class ApprovalStatus(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"


class ApprovalResult(BaseModel):
    request_id: str
    status: ApprovalStatus
    by: str | None = None
    comment: str = ""
    decided_at: datetime
    rule: str | None = Field(default=None, description="the threshold rule that decided, if no person did")
    issuer: str | None = Field(default=None, description="who vouched for `by`: the issuer of the verified token")
    kid: str | None = Field(default=None, description="the key that signed the decider's token")
