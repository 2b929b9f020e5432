"""Default retry policies of steps, and the rule that every one of them is bounded."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from workflows.outcome import RunState, StopRun

LLM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=4,
)
TOOL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
)


def bounded(step: str, retry: RetryPolicy) -> None:
    """Every step's attempts are bounded: Temporal's default (0) would retry forever."""
    if retry.maximum_attempts < 1:
        raise StopRun(
            RunState.FAILED, f"step {step}: its retry policy must set maximum_attempts (>= 1), not unlimited"
        )
