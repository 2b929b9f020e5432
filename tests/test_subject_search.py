"""Rights of a data subject: every run about one person is found by a keyed digest, and none shows who.

An access or erasure request names a person (an e-mail). Runs carry a
`BatonSubject` search attribute: the HMAC, with the audit key, of the run
input's SUBJECT field, normalised. `Baton.runs(subject=...)` (`baton runs
--subject`) finds that person's runs and no one else's, however the address
is typed; the attribute holds no e-mail, and another key finds nothing.
"""

from __future__ import annotations

import asyncio
import uuid

from temporalio.api.enums.v1 import EventType

from activities.subject import subject_key
from client.sdk import Baton
from tests.conftest import running_worker
from tests.test_onboarding_routes import CLEAR
from workflows import search_attributes as sa
from workflows.outcome import RunState


def applicant(email: str) -> dict:
    """The register's clear applicant, at an address of the test's: the run is about whoever that is."""
    return {**CLEAR, "email": email}


async def test_every_run_about_one_person_is_found_by_its_keyed_digest(dev_env, config, monkeypatch):
    ada, bob = f"ada.{uuid.uuid4().hex[:6]}@example.com", f"bob.{uuid.uuid4().hex[:6]}@example.com"
    async with running_worker(dev_env.client, config) as w:
        baton = Baton(dev_env.client, w.task_queue)
        ours = [await baton.start("onboarding", applicant(ada)) for _ in range(2)]
        theirs = await baton.start("onboarding", applicant(bob))
        for run_id in [*ours, theirs]:
            assert (await baton.result(run_id)).state is RunState.COMPLETED
        found = await eventually_found(baton, f"  {ada.upper()} ", len(ours))
        described = await dev_env.client.get_workflow_handle(ours[0]).describe()
        monkeypatch.setenv("BATON_AUDIT_KEY", (b"another key of 32 bytes or more!!").hex())
        with_another_key = await baton.runs(subject=ada)

    assert sorted(r.run_id for r in found) == sorted(ours)  # both of ada's, not bob's, however typed
    shown = described.typed_search_attributes.get(sa.SUBJECT)
    assert shown.startswith("hmac-sha256:") and ada not in shown and "ada" not in shown
    assert with_another_key == []


async def eventually_found(baton: Baton, subject: str, count: int) -> list:
    """Visibility catches up with search attributes a moment after the run sets them."""
    found: list = []
    for _ in range(100):
        found = await baton.runs(subject=subject)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    return found


async def test_the_digest_comes_with_the_policy_in_one_local_activity(time_env, config):
    """A run about someone asks the worker once at its start, for its policy and its subject's digest together."""
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", applicant("eve@example.com"))
        assert (await baton.result(run_id)).state is RunState.COMPLETED
        handle = time_env.client.get_workflow_handle(run_id)
        history, described = await handle.fetch_history(), await handle.describe()
    markers = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
               and e.marker_recorded_event_attributes.marker_name == "core_local_activity"]
    assert len(markers) == 1
    assert described.typed_search_attributes.get(sa.SUBJECT) == subject_key("eve@example.com")
