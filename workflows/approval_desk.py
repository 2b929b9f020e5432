"""Which approval requests a run has open, and which decisions it can take.

Kept apart from the workflow handlers so the same rules serve the `decide`
update's validator (refuse before anything is written to history), the
update itself, and the signals (which cannot refuse, only record and ignore).
"""

from __future__ import annotations

from workflows.approvals import ApprovalRequest, Verdict


class ApprovalDesk:
    def __init__(self) -> None:
        self.open: dict[str, ApprovalRequest] = {}
        self.verdicts: dict[str, Verdict] = {}

    def resolve(self, verdict: Verdict) -> str:
        """The request a decision is for; ValueError says why it cannot be taken."""
        request_id = verdict.request_id
        if request_id is None:
            if len(self.open) != 1:
                named = f" ({', '.join(self.open)})" if self.open else ""
                raise ValueError(f"{len(self.open)} requests are open; name one with request_id{named}")
            request_id = next(iter(self.open))
        earlier = self.verdicts.get(request_id)
        if earlier is not None:
            if (earlier.approved, earlier.by) == (verdict.approved, verdict.by):
                return request_id  # the same decision again: idempotent
            raise ValueError(f"request {request_id!r} was already decided by {earlier.by}")
        request = self.open.get(request_id)
        if request is None:
            raise ValueError(f"no open approval request {request_id!r}")
        if request.people is not None and verdict.by not in request.people:
            raise ValueError(
                f"{verdict.by!r} may not decide {request_id!r}: it is for role "
                f"{' or '.join(request.roles)}"
            )
        return request_id

    def take(self, verdict: Verdict) -> Verdict:
        """Record a decision (the first one stands); raises ValueError like `resolve`."""
        request_id = self.resolve(verdict)
        return self.verdicts.setdefault(request_id, verdict.model_copy(update={"request_id": request_id}))
