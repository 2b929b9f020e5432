"""Baton's patches: each change of a process's commands, and the one marker a new run asks for all of them.

A change that would give an in-flight run other commands than its history
holds is guarded with a patch, so runs started before it replay as recorded
(README "Changing a process"). Each patch a new run asks costs it two history
events: a marker, and sdk-core's `TemporalChangeVersion` upsert. A new
onboarding run asked four before its first step, and an agent as many again
each time it continues as new.

So a run started on code that asks BASELINE asks that one patch only, and
holds every patch in COVERED without asking it. A run started before BASELINE
(no marker in its history) asks each patch where it always did. COVERED is
frozen once shipped: a patch added later is asked by itself until a new
baseline (a new name, covering everything before it) is cut.
"""

from __future__ import annotations

from temporalio import workflow

# Runs started before a failed, over-budget or timed-out end failed the run in Temporal completed it there.
FAILED_ENDS = "failed-ends-fail-in-temporal"
# Runs started before decisions carried proof took the name a decision gave, and attributed no start.
PROOF = "decisions-carry-proof"
# Runs started before it carry no BatonSubject search attribute.
SUBJECT = "subject-search-attribute"
# Runs started before it asked for the BatonSubject digest in a local activity of its own, after the policy's.
SUBJECT_WITH_POLICY = "subject-digest-with-policy"
# Runs started before it upserted BatonCostUsd at every change of cost (each model step); since, every
# few changes (workflows/visibility.py COST_EVERY). A new name: "cost-attribute-in-batches" was a rule
# on the clock, reverted (README Performance); runs it started replay neither on main since nor here.
COST_BATCH = "cost-attribute-every-few-changes"
# Runs started before it decided max_wall_clock by comparing workflow.now() with the run's start: a task
# whose code ran on the previous task's clock (tests/test_replay.py `with_stale_clock`) could decide
# otherwise on replay. Since, a timer for the cap's remainder ends the wall clock when it fires.
WALL_CLOCK = "wall-clock-cap-by-timer"
# Runs started before it ended a wait for a person by a time cap by comparing workflow.now() with the cap
# (max_approval_idle from the ask, max_wall_clock from the run's start): a task whose code ran on the previous
# task's clock could decide otherwise on replay. Since, the caps' timers end the wait (max_approval_idle's own,
# started at the ask; max_wall_clock's, budget.py).
APPROVAL_CAPS = "approval-caps-by-timer"
# Agent runs recorded before it decided the ttl by comparing workflow.now() with the agent's start: a task
# whose code ran on the previous task's clock could find the ttl spent where replay does not, or count a
# person's wait otherwise. Since, a timer for the working time left ends it.
TTL = "agent-ttl-by-timer"
# Runs started before the check sent an undeclared prompt carrying personal data as any other.
PERSONAL = "personal-prompts-declared"
# Agent runs recorded before it took their declaration and policy from the task itself.
POLICY_FROM_WORKER = "agent-policy-from-worker"
# Agent runs recorded before the caps on proposals per turn and refusals per run went on past them.
HOSTILE_CAPS = "agent-proposal-and-refusal-caps"
# Runs started before it verified a decider's token's times (exp, nbf, iat) on workflow.now(): a task whose
# code ran on the previous task's clock could refuse a token replay takes, or take one it refuses. Since, the
# update's validator judges them (never replayed) and a signal's are judged by an activity (recorded). Asked
# where a decision is first judged.
TOKEN_TIMES = "decision-token-times-off-the-clock"

BASELINE = "baseline-2026-11"
COVERED = frozenset({
    FAILED_ENDS, PROOF, SUBJECT, SUBJECT_WITH_POLICY, COST_BATCH, WALL_CLOCK, APPROVAL_CAPS, TTL, PERSONAL,
    POLICY_FROM_WORKER, HOSTILE_CAPS, TOKEN_TIMES,
})


class Patches:
    """Which patches this run holds: BASELINE asked once, as its first command; the others only by older runs."""

    def __init__(self) -> None:
        self._baseline: bool | None = None

    def start(self) -> None:
        """Ask BASELINE. Call before any local activity: a patch asked in the task a local activity's
        result completes meets its marker after the call on replay (nondeterminism)."""
        if self._baseline is None:
            self._baseline = workflow.patched(BASELINE)

    def holds(self, patch: str) -> bool:
        """Whether the run takes `patch`'s branch: by BASELINE if it covers it, else by asking the patch."""
        if self._baseline is None:
            raise RuntimeError(f"patch {patch!r} asked before the run asked {BASELINE!r}")
        return (self._baseline and patch in COVERED) or workflow.patched(patch)
