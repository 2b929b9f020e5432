"""Through Temporal: a model request cut off by the step's timeout is billed, not free.

A server that takes longer to answer than the step's start-to-close timeout
leaves every attempt without a result: the request went out and may be billed
by the provider, but no usage ever comes back. Each such request is billed at
its priced worst case, in the ledger and in the run's cost, and marked an
estimate; a cost cap that cannot cover another worst case stops the run.
"""

from __future__ import annotations

import uuid

from client.sdk import Baton
from tests.conftest import running_worker
from tests.fake_provider import FakeProvider, Recorded, Reply, openai_answer
from tests.provider_faults import faulty_config
from tests.processes import SLOW_STEP_ATTEMPTS as ATTEMPTS
from tests.processes import SlowModel, Topic
from workflows.outcome import RunState

HANG_S = 8.0  # the server's answer time; each attempt gives up after a second


def _hang(_: Recorded) -> Reply:
    return Reply(200, openai_answer({"text": "too late"}).body, delay_s=HANG_S)


async def test_requests_cut_off_by_the_step_timeout_are_billed_at_their_worst_case(dev_env, config):
    with FakeProvider(_hang) as fake:
        slow = faulty_config(config, fake.url, client_timeout_s=30.0)
        async with running_worker(dev_env.client, slow, extra_workflows=(SlowModel,)) as w:
            run_id = f"slow-{uuid.uuid4().hex[:6]}"
            await dev_env.client.start_workflow(SlowModel.run, Topic(topic="billing"), id=run_id, task_queue=w.task_queue)
            baton = Baton(dev_env.client, w.task_queue)
            outcome = await baton.result(run_id)
            ledger = await baton.ledger(run_id)
        sent = len(fake.requests)

    draft = next(e for e in ledger if e.step == "draft")
    assert outcome.state is RunState.FAILED, outcome.reason
    assert sent == ATTEMPTS, sent  # every attempt's request reached the server
    assert [c.attempt for c in draft.calls] == list(range(1, ATTEMPTS + 1)), draft.calls
    worst = draft.calls[0].cost_usd
    assert worst > 0 and all(c.cost_usd == worst and "timed out" in c.cost_estimate for c in draft.calls), draft.calls
    assert draft.cost_estimated and draft.cost_usd == ATTEMPTS * worst
    assert outcome.cost_usd == round(ATTEMPTS * worst, 6)
