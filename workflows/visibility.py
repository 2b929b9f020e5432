"""What the Web UI shows of a run: search attributes and the current-details markdown."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from temporalio import workflow
from temporalio.common import (
    SearchAttributeIndexedValueType,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)

from workflows import search_attributes as sa
from workflows.approvals import ApprovalRequest
from workflows.outcome import RunState


def run_attributes(
    process: str, state: RunState, cost_usd: float, open_requests: Iterable[ApprovalRequest]
) -> list[tuple[SearchAttributeKey, Any]]:
    """A run's search attributes, from what the engine knows of it."""
    asked = list(open_requests)
    return [
        (sa.PROCESS, process),
        (sa.STATUS, state.value),
        (sa.COST_USD, round(cost_usd, 6)),
        (sa.AWAITING_APPROVAL, bool(asked)),
        (sa.APPROVAL_ROLES, sorted({role for r in asked for role in r.roles})),
    ]


def at_start(process: str) -> TypedSearchAttributes:
    """What a new run's attributes are before its first step: the client sets them with the start,
    which spares every run an upsert (a command and a history event) in its first workflow task."""
    return TypedSearchAttributes(
        [SearchAttributePair(key, value) for key, value in run_attributes(process, RunState.RUNNING, 0.0, [])]
    )


class SearchAttributeMirror:
    """Upserts search attributes only when their value changed: each upsert is a history event.

    Seeded with the attributes the run was started with, so values the starter
    already set are not upserted again. An unset keyword list reads as empty:
    Temporal keeps no empty list (at a start it is dropped, in an upsert it unsets).
    """

    def __init__(self, given: TypedSearchAttributes) -> None:
        self._published: dict[str, Any] = {
            **{key.name: [] for key in sa.ALL if key.indexed_value_type is SearchAttributeIndexedValueType.KEYWORD_LIST},
            **{pair.key.name: pair.value for pair in given},
        }

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
