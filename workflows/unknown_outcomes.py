"""Calls whose outcome is unknown: sent, not answered, and never repeated without a person's word.

A tool that a second attempt could run twice (registry: `at_most_once`: an
MCP server's tool that is neither idempotent nor told Baton's key) gets one
attempt. When that attempt times out (the worker died mid-call, the server
hung) or failed after the call may have left, nobody knows whether it
happened. The step is recorded `unknown` and a person is asked, under the
step's `if_unknown` policy (else its `approval`), never by a threshold rule:
approve to send it once more (they checked that it did not happen), reject
to stop here (it happened, or must not be repeated). A tool step that could
end this way and names nobody to ask is refused before anything is sent.
"""

from __future__ import annotations

import json

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

from workflows.approvals import ApprovalStatus, AskPolicy
from workflows.human_steps import NotApproved
from workflows.outcome import RunState, StopRun
from workflows.personal import masked

with workflow.unsafe.imports_passed_through():
    from activities.tools.registry import ToolSpec

ONCE = RetryPolicy(maximum_attempts=1)


def attempts_for(spec: ToolSpec, retry: RetryPolicy) -> RetryPolicy:
    """The step's retry policy, or a single attempt for a tool that runs at most once."""
    return ONCE if spec.at_most_once else retry


def unknown_because(spec: ToolSpec, err: ActivityError) -> str | None:
    """Why an at-most-once call's outcome is unknown; None when its failure is definite (nothing was done)."""
    if not spec.at_most_once:
        return None
    cause = err.cause
    if isinstance(cause, TimeoutError):
        return f"no answer before its {cause.type.name.lower().replace('_', '-') if cause.type else ''} timeout"
    if isinstance(cause, ApplicationError) and cause.type == "OutcomeUnknown":
        return cause.message
    return None


def who_settles(step: str, spec: ToolSpec, if_unknown: AskPolicy | None, approval: AskPolicy | None) -> AskPolicy | None:
    """The policy that asks about an unknown outcome; StopRun, before sending, when an at-most-once tool has none."""
    if not spec.at_most_once:
        return None
    policy = if_unknown or approval
    if policy is None:
        raise StopRun(RunState.FAILED, f"step {step}: {spec.name} runs at most once (not idempotent, takes no key), "
                                        "so a person must be able to settle an unknown outcome: give if_unknown=...")
    return policy.model_copy(update={"auto_approve": None})  # no rule may repeat a call blindly


class UnknownOutcomes:
    """The engine's mixin: record an unknown outcome and ask whether to send the call once more."""

    async def _settle_unknown(
        self, entry: dict, spec: ToolSpec, args: BaseModel, why: str, policy: AskPolicy, nth: int
    ) -> None:
        """Record the attempt `unknown` and ask; returns when a person says send it again, else NotApproved."""
        step = entry["step"]
        self._record(**entry, attempts=1, outcome="unknown", detail=f"outcome unknown: {why}")  # type: ignore[attr-defined]
        shown = f"{spec.name} {json.dumps(masked(args))}"
        result = await self.approval(  # type: ignore[attr-defined]
            f"{step}.unknown" + (f"#{nth}" if nth > 1 else ""),
            ask=(f"{spec.name} was sent for step {step} and its outcome is unknown ({why}). Approve only after "
                 "checking it did not happen: it is sent once more. Reject if it happened or must not be repeated."),
            proposed=f"send {shown} once more", context=args, policy=policy,
        )
        if result.status is not ApprovalStatus.APPROVED:
            raise NotApproved(step, result)
