"""No provider key, and no value an answer carried, reaches a log line: the worker's, temporalio's or the core's.

A log is read by more people than a run's record (operators, a log service), and it is
not encrypted by a payload codec. pydantic's own error text quotes the value it refused
(`input_value=...`), and temporalio logs every failed activity with its message. So a
model step is run against a provider on localhost that needs a key and answers with
values that fail validation, through Temporal, with every Python logger at DEBUG and
the process's stderr captured; neither the key nor those values may appear.
"""

from __future__ import annotations

import logging
import uuid

import pytest

from client.sdk import Baton
from tests.conftest import running_worker
from tests.fake_provider import FakeProvider, Recorded, Reply, openai_answer
from tests.test_model_steps import local_config
from tests.test_onboarding_routes import CLEAR
from workflows.outcome import RunState

KEY = "sk-test-" + uuid.uuid4().hex  # fresh per session: any sighting is a leak
VALUE = "pd-" + uuid.uuid4().hex[:8]  # a short value (pydantic shortens long ones in its text), as personal data is


def content_not_text(_: Recorded) -> Reply:
    """A 200 whose message content is an object, not text: reading it fails pydantic's validation."""
    reply = openai_answer("x")
    reply.body["choices"][0]["message"]["content"] = {"note": VALUE}
    return reply


def answer_off_schema(_: Recorded) -> Reply:
    """An answer that never fits the step's output model, repairs included."""
    return openai_answer({"subject": {"text": VALUE}, "body": [VALUE]})


@pytest.mark.parametrize("answers", [content_not_text, answer_off_schema], ids=lambda f: f.__name__)
async def test_neither_the_key_nor_a_refused_value_reaches_a_log(time_env, config, caplog, capfd, monkeypatch, answers):
    monkeypatch.setenv("BATON_TEST_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    for name in ("temporalio", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    with FakeProvider(answers) as fake:
        async with running_worker(time_env.client, local_config(config, fake.url)) as w:
            baton = Baton(time_env.client, w.task_queue)
            outcome = await baton.result(await baton.start("onboarding", CLEAR))
    assert fake.requests and fake.requests[0].headers["authorization"] == f"Bearer {KEY}"  # sent, to the provider
    assert outcome.state is RunState.FAILED, outcome  # the step failed on what it was answered
    assert caplog.records, "nothing was logged: the test would see no leak"
    captured = capfd.readouterr()
    lines = [r.getMessage() for r in caplog.records] + caplog.text.splitlines() + (captured.out + captured.err).splitlines()
    leaks = [line for line in lines if KEY in line or VALUE in line]
    assert leaks == [], leaks[:3]
