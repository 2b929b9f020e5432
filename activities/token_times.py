"""A decider's token judged on Temporal's clock, by an activity whose answer the run's history keeps.

A token's exp, nbf and iat need a "now". A workflow's own (`workflow.now()`)
cannot be trusted for it: a task's code may run on the clock of the task before
it (a query racing the event that woke it, tests/test_replay.py `with_stale_clock`)
and replay gives it its own, so a token refused on one is taken on the other and
the run is stuck. An activity's answer is recorded and replayed as it was.

It reads the time the server scheduled it, not the worker's clock: Temporal's
clock is the one the run's deadlines and timers keep (and, on the time-skipping
test server, the only one tokens issued at its time agree with); a worker host's
drifting clock decides nothing. Everything in the token but its times was checked
by the run before asking (workflows/decisions.py), so this answers on its times.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from temporalio import activity

from activities.identity import IdentityRefused, TrustedIssuer, Verified, verify


class TokenCheck(BaseModel):
    """A decider's token and the issuer the run trusts (its policy's keys, as recorded with it)."""

    token: str = Field(repr=False)
    trusted: TrustedIssuer


class TokenJudged(BaseModel):
    """Who the token proves then, or why it proves nobody (one line, never the token)."""

    verified: Verified | None = None
    refused: str | None = None


@activity.defn(name="judge_token")
def judge_token(check: TokenCheck) -> TokenJudged:
    """`check.token` verified at the time the run scheduled this, by the server's clock."""
    try:
        return TokenJudged(verified=verify(check.token, check.trusted, activity.info().scheduled_time))
    except IdentityRefused as refused:
        return TokenJudged(refused=str(refused))
