"""Every KYC route of the onboarding process, driven through Temporal (time-skipping server)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import timedelta

import pytest

from baton_examples.systems import SystemsOfRecord
from baton_examples.onboarding.contracts import WelcomeEmail
from client.sdk import Baton
from client.testkit import ModelTurn, process_test_env
from tests.conftest import REQUESTER, ROOT, running_worker
from workflows.outcome import RunState

CLEAR = dict(applicant_id="A-1001", name="Ada Lovelace", email="ada@example.com", document_number="P1234567")
PEP = dict(applicant_id="A-1002", name="Grace Hopper", email="grace@example.com", document_number="P7654321")
SANCTIONED = dict(applicant_id="A-1003", name="Victor Lustig", email="victor@example.com", document_number="P0000013")


async def wait_for_state(baton: Baton, run_id: str, state: RunState) -> None:
    for _ in range(200):
        try:
            if (await baton.status(run_id)).state is state:
                return
        except Exception:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{run_id} never reached {state}")


async def test_clear_applicant_is_onboarded_once(time_env, config, systems: SystemsOfRecord):
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", CLEAR)
        outcome = await baton.result(run_id)
        ledger = await baton.ledger(run_id)

    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert [e.step for e in ledger] == [
        "validate_identity", "pull_credit", "match_kyc", "welcome_email", "create_crm_record",
        "send_confirmation.approval", "send_confirmation",
    ]
    allowed = ledger[5]
    assert (allowed.outcome, allowed.by) == ("approved", "rule")
    assert "verdict == 'clear'" in allowed.detail and "verdict='clear'" in allowed.detail
    assert ledger[2].decision["verdict"] == "clear"
    llm = ledger[3]
    assert (llm.provider, llm.model, llm.tier) == ("offline", "offline-fast", "fast")
    assert llm.tokens_in > 0 and llm.cost_usd > 0
    assert outcome.cost_usd == round(sum(e.cost_usd for e in ledger), 6)
    assert systems.count("crm_records", applicant_id="A-1001") == 1
    assert systems.count("outbox", recipient="ada@example.com") == 1


async def test_sanctioned_applicant_is_rejected_and_nothing_is_sent(time_env, config, systems):
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        outcome = await baton.result(await baton.start("onboarding", SANCTIONED))

    assert outcome.state is RunState.REJECTED
    assert "sanctions" in outcome.reason
    assert outcome.result["kyc"]["verdict"] == "reject"
    assert systems.count("crm_records") == 0
    assert systems.count("outbox") == 0


def welcome(turn: ModelTurn) -> WelcomeEmail:
    """The welcome e-mail step's model, scripted: it greets whoever the prompt names."""
    name = turn.prompt.split("customer ", 1)[1].split(".", 1)[0]
    return WelcomeEmail(subject=f"Welcome, {name}", body=f"Dear {name},\n\nwelcome aboard.\n\nThe onboarding team")


async def test_review_approved_continues_to_onboarding(time_env, issuer, config, systems, tmp_path):
    async with process_test_env(config, model=welcome, env=time_env, issuer=issuer, directory=tmp_path) as kit:
        run_id = await kit.baton.start("onboarding", PEP)
        await kit.wait_for(run_id, RunState.AWAITING_APPROVAL)
        status = await kit.baton.status(run_id)
        assert [r.id for r in status.open_requests] == ["compliance_review"]
        assert status.open_requests[0].context["verdict"] == "review"
        verdict = await kit.baton.approve(run_id, by="carol", comment="PEP checked")
        outcome = await kit.baton.result(run_id)
        ledger = await kit.baton.ledger(run_id)

    assert verdict.request_id == "compliance_review"
    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert outcome.result["reviewed_by"] == "carol"
    review = next(e for e in ledger if e.step == "compliance_review")
    assert (review.outcome, review.by, review.comment) == ("approved", "carol", "PEP checked")
    email = next(e for e in ledger if e.step == "welcome_email")
    assert (email.provider, email.model) == ("scripted", "scripted-fast")
    assert systems.count("crm_records", applicant_id="A-1002") == 1
    assert systems.count("outbox", recipient="grace@example.com", subject="Welcome, Grace Hopper") == 1


async def test_review_rejected_sends_nothing(time_env, config, systems):
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        await baton.reject(run_id, by="carol", comment="adverse media")
        outcome = await baton.result(run_id)

    assert outcome.state is RunState.REJECTED
    assert "carol" in outcome.reason and "adverse media" in outcome.reason
    assert systems.count("crm_records") == 0
    assert systems.count("outbox") == 0


async def test_review_times_out_after_deadline(time_env, config, systems):
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        await time_env.sleep(timedelta(hours=48, minutes=1))
        outcome = await baton.result(run_id)
        ledger = await baton.ledger(run_id)

    assert outcome.state is RunState.TIMED_OUT
    assert "compliance then compliance-lead" in outcome.reason
    assert outcome.result["kyc"]["verdict"] == "review"  # the result so far survives the stop
    escalated, review = [e for e in ledger if e.step == "compliance_review"]
    assert (escalated.outcome, review.outcome) == ("escalated", "timed_out")
    assert review.latency_ms >= 48 * 3600 * 1000
    assert systems.count("outbox") == 0


async def test_applicant_missing_from_the_register_is_rejected(time_env, config, systems):
    config.systems.seed = None
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        outcome = await baton.result(await baton.start("onboarding", CLEAR))
    assert outcome.state is RunState.REJECTED
    assert "identity not verified: applicant not in the register" in outcome.reason


# ----- `baton run --wait`: the exit status says how the run ended ---------------------------------

WAIT_ROUTES = {  # route: (input, the worker's tools fail the send, nobody answers for a while, the end)
    "clear": (CLEAR, False, False, RunState.COMPLETED),
    "sanctioned": (SANCTIONED, False, False, RunState.REJECTED),
    "over-budget": ({**CLEAR, "budget": {"max_cost_usd": 1e-5}}, False, False, RunState.BUDGET_EXCEEDED),
    "bounced": (CLEAR, True, False, RunState.FAILED),
    "nobody-reviews": (PEP, False, True, RunState.TIMED_OUT),
}


def test_every_end_has_its_own_exit_status_and_only_completed_is_0():
    from client.cli import EXIT_BAD_INPUT, EXIT_BY_STATE

    finals = {s for s in RunState if s.is_final}
    assert set(EXIT_BY_STATE) == finals
    assert len(set(EXIT_BY_STATE.values())) == len(finals)
    assert [s for s, code in EXIT_BY_STATE.items() if code == 0] == [RunState.COMPLETED]
    assert not {1, EXIT_BAD_INPUT, 130} & set(EXIT_BY_STATE.values())  # errors, bad input, Ctrl-C
    documented = re.findall(r"^\| (\d+)\s+\| `(\w+)`", (ROOT / "README.md").read_text(), re.M)
    assert {RunState(state): int(code) for code, state in documented} == EXIT_BY_STATE  # the README's table


@pytest.mark.parametrize("route", list(WAIT_ROUTES))
async def test_baton_run_wait_exits_with_the_status_of_the_end(time_env, config, tmp_path, route, issuer):
    """Through the `baton` command (its main()), as a script would run it."""
    from client.cli import EXIT_BY_STATE
    from tests.test_engine import OutboxRejects  # (test_engine imports this module)
    from tests.test_integration import BATON, cli_env, run_cli

    data, bounces, nobody_answers, end = WAIT_ROUTES[route]
    path = tmp_path / "input.json"
    path.write_text(json.dumps(data))
    tools = {"tools_class": OutboxRejects} if bounces else {}
    async with running_worker(time_env.client, config, **tools) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = f"wait-{route}-{uuid.uuid4().hex[:6]}"
        env = cli_env(time_env.client.service_client.config.target_host, w.task_queue,
                      issuer.mint(REQUESTER, now=await time_env.get_current_time()))
        waiting = asyncio.create_task(run_cli(BATON, "run", "onboarding", "--input", path, "--id", run_id, "--wait",
                                              "--json", env=env))
        if nobody_answers:
            await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
            await time_env.sleep(timedelta(hours=49))
        result = await waiting
    assert result.rc == EXIT_BY_STATE[end], str(result)
    assert result.json()["state"] == end.value and result.json()["run_id"] == run_id


async def test_baton_run_wait_exits_8_with_one_line_when_temporal_ends_the_run(time_env, config, tmp_path, issuer):
    """Terminated (or cancelled, or timed out by Temporal): no Baton end, no traceback either."""
    from client.cli import EXIT_ENDED_IN_TEMPORAL
    from tests.test_integration import BATON, cli_env, run_cli

    path = tmp_path / "input.json"
    path.write_text(json.dumps(PEP))
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = f"wait-terminated-{uuid.uuid4().hex[:6]}"
        env = cli_env(time_env.client.service_client.config.target_host, w.task_queue,
                      issuer.mint(REQUESTER, now=await time_env.get_current_time()))
        waiting = asyncio.create_task(run_cli(BATON, "run", "onboarding", "--input", path, "--id", run_id, "--wait",
                                              env=env))
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        await time_env.client.get_workflow_handle(run_id).terminate("an operator stopped it")
        result = await waiting
    assert result.rc == EXIT_ENDED_IN_TEMPORAL == 8, str(result)
    assert len(result.err_lines) == 1 and "terminated" in result.err and run_id in result.err, str(result)
