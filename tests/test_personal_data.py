"""What Temporal shows without decoding holds none of a seeded person's data (issue 17, item 3).

The shipped onboarding (its clear and its review route) and a triage run whose refund
parks for a support lead are driven through Temporal, encrypted as the product runs
(tests/conftest.py), with the worker's log captured at INFO. Then every surface is read:
the raw history (its JSON, and every payload's bytes as stored: inputs, results,
headers, markers, search attributes), every history event's strings (workflow and
activity ids, failure messages), search attributes, the static summary and details,
the summaries of runs, activities and timers and the current details while parked and
at the end (these decoded: they must hold none even for a reader with the codec
server), and the log. Which values are personal is read from the marks on the
contracts (workflows/personal.py), not from a list here; the control shows the same
values are in the history once it is decoded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client

from client.sdk import Baton
from tests.conftest import ROOT, running_worker
from tests.history_payloads import decoded, payloads
from tests.test_onboarding_routes import wait_for_state
from workflows import personal
from baton_examples.onboarding.contracts import Applicant
from baton_examples.support_triage.contracts import SupportRequest
from workflows.outcome import RunState
from workflows.visibility import plain

def seeded(path: str, contract: type) -> tuple[dict, set[str]]:
    """A shipped example input, and the values its contract marks personal (none may be empty)."""
    data = json.loads((ROOT / "examples" / path).read_text())
    secrets = set(personal.values(contract.model_validate(data)))
    assert secrets, f"{contract.__name__} marks no field personal: the test would look for nothing"
    return data, secrets


def readable(message: Message, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string of a history proto outside its payloads (ids, names, failure messages), with where it was found."""
    for field, value in message.ListFields():
        where = f"{path}.{field.name}"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            values = [*value.keys(), *value.values()]
        elif isinstance(value, (str, bytes, Message)):
            values = [value]
        else:  # a repeated field (or a number, which holds no text)
            values = value if hasattr(value, "__iter__") else []
        for item in values:
            if isinstance(item, Message) and not isinstance(item, Payload):
                yield from readable(item, where)
            elif isinstance(item, str):
                yield where, item


async def summaries(client: Client, event: HistoryEvent) -> list[str]:
    """An event's summary and details as the Web UI shows them through the codec server."""
    metadata = event.user_metadata
    shown = [p for p in (metadata.summary, metadata.details) if p.ByteSize()]
    return await client.data_converter.decode(shown, [str] * len(shown)) if shown else []


async def surfaces(client: Client, run_id: str) -> list[tuple[str, str]]:
    """All a reader of the Web UI or the plain CLI sees of a run (and its agent children)."""
    found: list[tuple[str, str]] = []
    handle = client.get_workflow_handle(run_id)
    history = await handle.fetch_history()
    found += [(f"{run_id} raw history JSON", history.to_json())]
    for event in history.events:
        found += [(f"{run_id} event {event.event_id}{w}", s) for w, s in readable(event)]
        found += [(f"{run_id} event {event.event_id} payload as stored", p.data.decode(errors="replace"))
                  for p in payloads(event)]
        found += [(f"{run_id} event {event.event_id} summary", s) for s in await summaries(client, event)]
        child = event.start_child_workflow_execution_initiated_event_attributes
        if child.workflow_id:
            found += await surfaces(client, child.workflow_id)
    described = await handle.describe()
    found += [(f"{run_id} search attribute {p.key.name}", str(p.value)) for p in described.typed_search_attributes]
    found += [(f"{run_id} static summary", await described.static_summary() or "")]
    found += [(f"{run_id} static details", await described.static_details() or "")]
    return found


async def details(client: Client, run_id: str) -> str:
    """The current details, read as the Web UI reads them."""
    metadata = await client.get_workflow_handle(run_id).query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


def leaks(secrets: set[str], seen: list[tuple[str, str]]) -> list[str]:
    """Where a secret shows, as written or as the markdown the UI renders it from (`grace@example\\.com`)."""
    forms = {form.lower() for s in secrets for form in (s, plain(s))}
    return [f"{where}: {text[:300]}" for where, text in seen for form in forms if form in text.lower()]


async def test_no_readable_surface_holds_a_seeded_persons_data(time_env, config, caplog):
    caplog.set_level(logging.INFO)
    clear, clear_secrets = seeded("onboarding/clear.json", Applicant)
    review, review_secrets = seeded("onboarding/review.json", Applicant)
    ticket, ticket_secrets = seeded("support-triage/large-refund.json", SupportRequest)
    seen: list[tuple[str, str]] = []
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        cleared = await baton.start("onboarding", clear)
        parked = await baton.start("onboarding", review)
        triaged = await baton.start("support-triage", ticket)
        refund = f"{triaged}/returns_agent"
        await wait_for_state(baton, parked, RunState.AWAITING_APPROVAL)
        await wait_for_state(baton, refund, RunState.AWAITING_APPROVAL)
        shown = {run: await details(time_env.client, run) for run in (parked, refund)}
        assert "Waiting for approval" in shown[parked] and "Waiting for approval" in shown[refund], shown
        seen += [(f"{run} current details while parked", text) for run, text in shown.items()]
        await baton.approve(parked, by="carol")
        await baton.approve(refund, by="sam-support")
        outcomes = {run: await baton.result(run) for run in (cleared, parked, triaged)}
        for run in outcomes:
            seen += await surfaces(time_env.client, run)
            seen += [(f"{run} current details at its end", await details(time_env.client, run))]
    assert outcomes[cleared].state is RunState.COMPLETED and outcomes[parked].state is RunState.COMPLETED, outcomes
    seen += [(f"log {r.name}", r.getMessage()) for r in caplog.records]
    assert len(seen) > 100, "too little was read: the test would see no leak"
    assert leaks(clear_secrets | review_secrets | ticket_secrets, seen) == []

    # The control: the data is in the runs, sealed. Decoded, the same grep finds every value.
    history = await time_env.client.get_workflow_handle(cleared).fetch_history()
    opened = await decoded(history, time_env.client.data_converter.payload_codec)
    texts = [p.data.decode(errors="replace") for e in opened.events for p in payloads(e)]
    assert [s for s in clear_secrets if not any(s in text for text in texts)] == [], "not in the decoded history"
