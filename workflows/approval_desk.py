"""Which approval requests a run has open, and which decisions it can take.

Kept apart from the workflow handlers so the same rules serve the `decide`
update's validator, the update itself, and the signals (which cannot refuse,
only record and ignore).

A decision can arrive in the same workflow task as the event that leads the
run to open its request (a step's completion, a deadline's timer): Temporal
runs validators and signal handlers before the workflow code sees that event.
So the validator (`screen`) refuses only what can never apply whatever the run
does next, and the handlers judge the rest (`take`) once the run has taken in
the whole task (`HumanSteps._settle`).

Who decides is `who`, the identity a verified token proved (workflows/decisions.py),
and may decide a request when the token lists one of the roles the request asks.
Runs started before decisions carried proof pass no `who`: there `verdict.by`
is checked against the people `[roles]` listed, as those runs were.
"""

from __future__ import annotations

from temporalio import workflow

from workflows.approvals import ApprovalRequest, Verdict

with workflow.unsafe.imports_passed_through():
    from activities.identity import Verified

MAX_SETTLING = 8  # decisions that may wait at once for a request the run has not reached


class ApprovalDesk:
    def __init__(self) -> None:
        self.open: dict[str, ApprovalRequest] = {}
        self.verdicts: dict[str, Verdict] = {}
        self.closed: set[str] = set()  # requests asked and no longer open, decided or not
        self.eligible: dict[str, set[str] | None] = {}  # who may decide a request at any of its stages
        self.roles: dict[str, set[str]] = {}  # the roles any stage of a request asks
        self.signers: dict[str, Verified] = {}  # request -> who decided it, as their token proved
        self.refused_signals = 0  # signals refused so far (workflows/decisions.py records the first ones)
        self.settling = 0  # decisions waiting for the run to reach their request (HumanSteps._settle)
        self.judging = 0  # signals whose token's times an activity is judging (workflows/decisions.py)
        self.untimely = 0  # signed tokens refused on their times so far

    def ask(self, request: ApprovalRequest, eligible: set[str] | None, roles: set[str]) -> None:
        """Open a request; `eligible`: everyone its stages ask (None: not enforced); `roles`: every role they ask."""
        self.open[request.id] = request
        self.eligible[request.id] = eligible
        self.roles[request.id] = roles

    def close(self, request_id: str) -> ApprovalRequest:
        self.closed.add(request_id)
        return self.open.pop(request_id)

    def can_judge(self, request_id: str | None) -> bool:
        """Whether the run stands where a decision for `request_id` can be taken or refused for good."""
        if request_id is None:
            return bool(self.open)
        return request_id in self.open or request_id in self.verdicts or request_id in self.closed

    def screen(self, verdict: Verdict, who: Verified | None = None) -> None:
        """Refuse (ValueError) a decision that can never apply, whatever this workflow task brings."""
        request_id = verdict.request_id
        if self.settling >= MAX_SETTLING and not self.can_judge(request_id):
            raise ValueError(f"no open approval request {request_id!r} (and {self.settling} decisions wait already)")
        if request_id is None:
            if len(self.open) > 1:
                raise ValueError(f"{len(self.open)} requests are open; name one with request_id ({', '.join(self.open)})")
            return
        if request_id in self.verdicts:
            self._same_as_before(request_id, verdict)
            return
        if request_id in self.closed:
            raise ValueError(f"request {request_id!r} is closed: nobody decided it in time")
        if request_id not in self.open:
            return
        if who is not None:
            if not self.roles[request_id] & set(who.roles):
                raise ValueError(self._not_theirs(who.subject, self.open[request_id], who))
            return
        eligible = self.eligible.get(request_id)
        if eligible is not None and verdict.by not in eligible:
            raise ValueError(self._not_theirs(verdict.by, self.open[request_id]))

    def resolve(self, verdict: Verdict, who: Verified | None = None) -> str:
        """The request a decision is for, as the run stands now; ValueError says why it cannot be taken."""
        request_id = verdict.request_id
        if request_id is None:
            if len(self.open) != 1:
                named = f" ({', '.join(self.open)})" if self.open else ""
                raise ValueError(f"{len(self.open)} requests are open; name one with request_id{named}")
            request_id = next(iter(self.open))
        if request_id in self.verdicts:
            self._same_as_before(request_id, verdict)
            return request_id  # the same decision again: idempotent
        request = self.open.get(request_id)
        if request is None:
            raise ValueError(f"no open approval request {request_id!r}")
        if who is not None:
            if not set(request.roles) & set(who.roles):
                raise ValueError(self._not_theirs(who.subject, request, who))
        elif request.people is not None and verdict.by not in request.people:
            raise ValueError(self._not_theirs(verdict.by, request))
        return request_id

    def take(self, verdict: Verdict, who: Verified | None = None) -> Verdict:
        """Record a decision (the first one stands) by `who`; raises ValueError like `resolve`."""
        if who is not None:
            verdict = verdict.model_copy(update={"by": who.subject, "token": None})
        request_id = self.resolve(verdict, who)
        if request_id not in self.verdicts and who is not None:
            self.signers[request_id] = who
        return self.verdicts.setdefault(request_id, verdict.model_copy(update={"request_id": request_id}))

    def _same_as_before(self, request_id: str, verdict: Verdict) -> None:
        earlier = self.verdicts[request_id]
        if (earlier.approved, earlier.by) != (verdict.approved, verdict.by):
            raise ValueError(f"request {request_id!r} was already decided by {earlier.by}")

    @staticmethod
    def _not_theirs(by: str | None, request: ApprovalRequest, who: Verified | None = None) -> str:
        held = f" (their token lists {', '.join(who.roles) or 'no role'})" if who is not None else ""
        return f"{by!r} may not decide {request.id!r}: it is for role {' or '.join(request.roles)}{held}"
