"""What the Web UI shows of a run: search attributes and the current-details markdown."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeKey

from workflows.approvals import ApprovalRequest


class SearchAttributeMirror:
    """Upserts search attributes only when their value changed: each upsert is a history event."""

    def __init__(self) -> None:
        self._published: dict[str, Any] = {}

    def publish(self, values: Iterable[tuple[SearchAttributeKey, Any]]) -> None:
        changed = [(key, v) for key, v in values if self._published.get(key.name, object()) != v]
        if changed:
            workflow.upsert_search_attributes([key.value_set(v) for key, v in changed])
            self._published.update({key.name: v for key, v in changed})


def approval_markdown(run_id: str, r: ApprovalRequest) -> str:
    """What is asked, of whom, by when, what happens then, and the exact commands to answer."""
    payload = f'{{"request_id": "{r.id}", "by": "NAME"}}'
    who = "/".join(r.roles) + (f" ({', '.join(r.people)})" if r.people else "")
    then = (
        f"the run stops ({r.stops_run})" if r.stops_run
        else f"escalates to {'/'.join(r.escalates_to)}" if r.escalates_to
        else "the request is rejected" if r.at_deadline == "reject" else "the run ends"
    )
    lines = [
        f"### Waiting for approval `{r.id}`" + (f" (escalated, stage {r.stage + 1})" if r.stage else ""),
        r.ask,
        *([f"Proposed: {r.proposed}"] if r.proposed else []),
        f"Who: {who} · deadline {r.deadline:%Y-%m-%d %H:%M} UTC, then {then}",
        f"Approve: `baton approve {run_id} --request {r.id} --by NAME`  \n"
        f"Reject: `baton reject {run_id} --request {r.id} --by NAME --comment WHY`  \n"
        f"Or: `temporal workflow signal --workflow-id {run_id} --name approve --input '{payload}'`",
    ]
    return "\n\n".join(lines)
