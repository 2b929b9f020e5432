"""`baton audit`: a run read back from its history alone, through Temporal (time-skipping server).

Runs are driven to a point with a worker, then read with no worker at all
(the audit replays the history locally), and compared with what the worker's
own `ledger` and `status` queries answered while it ran. The CLI is run as a
subprocess against the same server, so the bytes compared are the bytes a user
gets; `--history` is run against no server at all.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from client.audit import audit, audit_text, export_json
from client.run_record import ReplayFailed, history_from_file, run_record, run_record_from_history
from client.sdk import Baton
from tests.conftest import AUDIT_KEY, REQUESTER, ROOT, running_worker
from tests.test_integration import BATON, Completed, cli_env, expect_exit, expect_refusal, run_cli
from tests.test_onboarding_routes import CLEAR, PEP, wait_for_state
from worker.config import AuditSettings
from baton_examples.onboarding.contracts import Applicant
from workflows.outcome import RunState

def keyed(value: object, key: bytes = AUDIT_KEY) -> str:
    """HMAC-SHA256 of canonical JSON, computed here from the standard library, as an auditor holding the key would."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "hmac-sha256:" + hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


COMPARED = ("step", "kind", "name", "tier", "provider", "model", "tokens_in", "tokens_out", "cost_usd",
            "latency_ms", "attempts", "outcome", "decision")
NOWHERE = "127.0.0.1:1"  # no server listens there: `--history` must not need one


def ticket(name: str) -> dict:
    return json.loads((ROOT / "examples" / "support-triage" / f"{name}.json").read_text())


async def baton_cli(time_env, *args: object, target: str | None = None, cwd: Path = ROOT) -> Completed:
    target = target or time_env.client.service_client.config.target_host
    return await run_cli(BATON, *args, env=cli_env(target, "unused-by-audit"), cwd=cwd)


async def test_a_closed_run_audited_with_no_worker_matches_what_the_worker_answered(time_env, config):
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", CLEAR)
        outcome = await baton.result(run_id)
        queried = await baton.ledger(run_id)
        status = await baton.status(run_id)
    # The worker is gone: everything below comes from the history alone.

    record = await run_record(time_env.client, run_id)
    assert record.ledger == queried
    assert record.status == status
    assert record.outcome == outcome
    assert (record.process, record.business_key, record.state, record.close_status) == (
        "onboarding", "A-1001", "completed", "completed")
    assert record.summary == "onboarding · A-1001" and record.input["applicant_id"] == "A-1001"

    data = audit(record)
    assert len(data["steps"]) == len(queried) == 7
    for step, entry in zip(data["steps"], queried):
        expected = entry.model_dump(mode="json")
        assert {k: step[k] for k in COMPARED} == {k: expected[k] for k in COMPARED}
    assert [s["then"] for s in data["steps"]] == [
        *({"step": e.step} for e in queried[1:]), {"end": "completed"}]
    assert data["run"]["state"] == "completed" and data["run"]["reason"] == outcome.reason
    # The default policy keeps digests, not values: the input is proved, not shown.
    assert (data["run"]["values"], data["run"]["input"]) == ("digests", None)
    assert data["run"]["input_digest"] == keyed(Applicant.model_validate(CLEAR).model_dump(mode="json"))
    assert all(s["input_digest"] == keyed(e.input) and s["output_digest"] == keyed(e.decision) and s["input"] is None
               for s, e in zip(data["steps"], queried))
    shown = audit(record.model_copy(update={"audit_values": "full"}))["run"]  # what a "full" policy exports
    assert shown["input"] == record.input and keyed(shown["input"]) == shown["input_digest"]

    # Taken twice, the same bytes, in both forms, from the command line.
    as_json = [await baton_cli(time_env, "audit", run_id, "--json") for _ in range(2)]
    as_text = [await baton_cli(time_env, "audit", run_id) for _ in range(2)]
    for result in (*as_json, *as_text):
        expect_exit(result, 0)
    assert as_json[0].out == as_json[1].out == export_json(data) + "\n"
    assert as_text[0].out == as_text[1].out == audit_text(data) + "\n"
    assert json.loads(as_json[0].out) == data
    assert "end: completed" in as_text[0].out and "welcome_email" in as_text[0].out


async def test_all_digests_exports_no_value_and_no_dictionary_reverses_its_digests(time_env, config, monkeypatch, tmp_path):
    config = config.model_copy(update={"audit": AuditSettings(values="all-digests")})
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        await baton.approve(run_id, by="carol")
        await baton.result(run_id)
    record = await run_record(time_env.client, run_id)
    data = audit(record)

    assert data["run"]["values"] == "all-digests" and data["run"]["input"] is None and data["run"]["result"] is None
    assert data["run"]["result_digest"] == keyed(record.outcome.model_dump(mode="json")["result"])
    assert all(s["input"] is None and s["decision"] is None for s in data["steps"])
    assert all(s["output_digest"] == keyed(e.decision) for s, e in zip(data["steps"], record.ledger))
    exported = export_json(data)
    for value in (PEP["name"], PEP["email"], PEP["document_number"], '"pep":true'):
        assert value not in exported
    # A dictionary of likely values, digested unkeyed, matches no digest; another key gives other digests.
    pep = next(e for e in record.ledger if e.step == "validate_identity")
    unkeyed = "sha256:" + hashlib.sha256(json.dumps(pep.decision, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    digests = {s["output_digest"] for s in data["steps"]} | {s["input_digest"] for s in data["steps"]}
    assert unkeyed not in digests and keyed(pep.decision) in digests
    assert audit(record, key=b"k" * 32)["steps"][0]["output_digest"] != data["steps"][0]["output_digest"]

    monkeypatch.delenv("BATON_AUDIT_KEY")  # no key: `baton audit` refuses, rather than export unkeyed digests
    refused = await baton_cli(time_env, "audit", run_id, cwd=tmp_path)  # and no local stack's key there
    assert refused.rc != 0 and "BATON_AUDIT_KEY" in refused.err


async def test_a_run_whose_policy_keeps_full_values_exports_its_inputs(time_env, config):
    config = config.model_copy(update={"audit": AuditSettings(values="full")})
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", CLEAR)
        await baton.result(run_id)

    data = audit(await run_record(time_env.client, run_id))
    assert data["run"]["values"] == "full" and data["run"]["input"]["applicant_id"] == "A-1001"
    assert keyed(data["run"]["input"]) == data["run"]["input_digest"]
    kept = [s for s in data["steps"] if s.get("input") is not None]
    assert len(kept) == len(data["steps"]) and all(keyed(s["input"]) == s["input_digest"] for s in kept)
    assert '"applicant_id":"A-1001"' in audit_text(data)


async def test_a_parked_run_shows_its_open_request_then_the_approval_with_who_when_and_why(time_env, config, issuer):
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)

        parked = audit(await run_record(time_env.client, run_id))
        assert (parked["run"]["state"], parked["run"]["temporal_status"], parked["run"]["closed_at"]) == (
            "awaiting_approval", "running", None)
        assert [s["step"] for s in parked["steps"]] == ["validate_identity", "pull_credit", "match_kyc"]
        assert parked["steps"][-1]["then"] == {"open": "awaiting_approval", "waiting_for": ["compliance_review"]}
        (request,) = parked["open_requests"]
        assert (request["id"], request["roles"], request["context"]["verdict"]) == (
            "compliance_review", ["compliance"], "review")
        assert parked["approvals"] == []
        text = audit_text(parked)
        assert "compliance_review: asks compliance" in text and "open: awaiting_approval" in text

        await baton.approve(run_id, by="carol", comment="PEP checked")
        await baton.result(run_id)
        queried = await baton.ledger(run_id)

    done = audit(await run_record(time_env.client, run_id))
    assert done["open_requests"] == [] and done["run"]["state"] == "completed"
    decided = next(e for e in queried if e.step == "compliance_review")
    human = [a for a in done["approvals"] if a["step"] == "compliance_review"]
    assert human == [{
        "seq": decided.seq, "step": "compliance_review", "where": "run", "outcome": "approved", "by": "carol",
        "issuer": issuer.url, "kid": issuer.kid, "rule": None, "comment": "PEP checked", "detail": "",
        "requested_at": decided.started_at.isoformat().replace("+00:00", "Z"),
        "decided_at": decided.decision["decided_at"], "waited_ms": decided.latency_ms,
    }]
    assert f"approved by carol (verified: issuer {issuer.url}, key {issuer.kid}) at" in audit_text(done)
    assert '"PEP checked"' in audit_text(done)
    assert done["run"]["started_by"] == {"subject": REQUESTER, "issuer": issuer.url, "kid": issuer.kid, "roles": []}
    assert f"by {REQUESTER} (verified: issuer {issuer.url}" in audit_text(done)


async def test_a_rule_approval_a_refused_proposal_and_the_budget_consumed(time_env, config):
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        clear = await baton.start("onboarding", CLEAR)
        await baton.result(clear)
        injected = await baton.start("support-triage", ticket("injected-order-note"))
        await baton.result(injected)
        status = await baton.status(injected)
        child_ledger = await baton.ledger(f"{injected}/returns_agent")

    # A threshold rule allowed the irreversible send: the rule is named, nobody is.
    ruled = audit(await run_record(time_env.client, clear))
    (rule,) = [a for a in ruled["approvals"] if a["by"] == "rule"]
    assert rule["step"] == "send_confirmation.approval" and "verdict == 'clear'" in rule["rule"]
    assert "by rule `" in audit_text(ruled)

    # The agent was talked into a $5000 refund by the order note; the grant refused it, inside the agent's trail.
    parent = audit(await run_record(time_env.client, injected))
    (refused,) = parent["refusals"]
    assert (refused["where"], refused["kind"], refused["tool"]) == ("agent returns", "refused", "issue_refund")
    assert "amount_usd" in refused["detail"] and refused["proposed"]["amount_usd"] == 5000
    assert refused["agent_run"] == f"{injected}/returns_agent"
    assert "issue_refund — " in audit_text(parent)

    # The agent's own run records the same refusal as a ledger entry.
    child = audit(await run_record(time_env.client, f"{injected}/returns_agent"))
    (own,) = [r for r in child["refusals"] if r["where"] == "run"]
    (expected,) = [e for e in child_ledger if e.outcome == "refused"]
    assert (own["seq"], own["tool"], own["detail"]) == (expected.seq, "issue_refund", expected.detail)

    # The budget: limits and usage as the status query gives them (whatever caps they hold), and the spend.
    dumped = status.model_dump(mode="json")
    assert parent["budget"] == {
        "limits": dumped["budget"], "used": dumped.get("usage"), "cost_usd": status.cost_usd, "steps": status.steps,
    }
    assert parent["budget"]["cost_usd"] == round(sum(s["cost_usd"] for s in parent["steps"]), 6) > 0
    assert f"max_cost_usd={status.budget.max_cost_usd}" in audit_text(parent)


async def test_a_run_that_failed_in_temporal_is_audited_with_its_baton_end_and_result(time_env, config):
    """budget_exceeded closes the run Failed in Temporal; the audit still reads Baton's end, reason and result."""
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", {**CLEAR, "budget": {"max_steps": 2}})
        outcome = await baton.result(run_id)
        queried = await baton.ledger(run_id)

    record = await run_record(time_env.client, run_id)
    assert (outcome.state, record.close_status, record.outcome) == (RunState.BUDGET_EXCEEDED, "failed", outcome)
    data = audit(record)
    assert (data["run"]["state"], data["run"]["temporal_status"], data["run"]["reason"]) == (
        "budget_exceeded", "failed", outcome.reason)
    assert data["run"]["result"] == outcome.result and outcome.result["applicant_id"] == CLEAR["applicant_id"]
    assert [s["step"] for s in data["steps"]] == [e.step for e in queried] == ["validate_identity", "pull_credit"]
    assert data["steps"][-1]["then"] == {"end": "budget_exceeded"}
    assert "closed   " in audit_text(data) and "(temporal: failed)" in audit_text(data)


async def test_history_file_audits_with_no_server(time_env, config, tmp_path: Path):
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", CLEAR)
        await baton.result(run_id)
    history = await time_env.client.get_workflow_handle(run_id).fetch_history()
    path = tmp_path / "history.json"
    path.write_text(history.to_json())
    from_server = export_json(audit(await run_record(time_env.client, run_id)))

    offline = await baton_cli(time_env, "audit", run_id, "--history", path, "--json", target=NOWHERE)
    expect_exit(offline, 0)
    assert offline.out == from_server + "\n"
    assert (await run_record_from_history(history_from_file(run_id, path), time_env.client.data_converter)).ledger == (
        await run_record(time_env.client, run_id)).ledger

    missing = await baton_cli(time_env, "audit", run_id, "--history", tmp_path / "nope.json", target=NOWHERE)
    expect_refusal(missing, "nope.json")


async def test_a_history_that_does_not_replay_is_one_clear_line(time_env, config, tmp_path: Path):
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", CLEAR)
        await baton.result(run_id)
    history = (await time_env.client.get_workflow_handle(run_id).fetch_history()).to_json_dict()

    # Tampered: the first tool call recorded as a model call. The code schedules run_tool there.
    scheduled = next(e for e in history["events"] if "activityTaskScheduledEventAttributes" in e)
    scheduled["activityTaskScheduledEventAttributes"]["activityType"]["name"] = "call_model"
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(history))

    with pytest.raises(ReplayFailed, match="does not replay on this code.*Nondeterminism"):
        await run_record_from_history(history_from_file(run_id, tampered), time_env.client.data_converter)
    result = await baton_cli(time_env, "audit", run_id, "--history", tampered, target=NOWHERE)
    expect_exit(result, 1)
    assert result.out == "" and len(result.err_lines) == 1, str(result)
    assert result.err_lines[0].startswith(f"baton: cannot reconstruct {run_id}: its history does not replay")
    assert "Nondeterminism" in result.err_lines[0] and "'call_model'" in result.err_lines[0]

    # The same history under another process's name: its input is not that process's input.
    history["events"][0]["workflowExecutionStartedEventAttributes"]["workflowType"]["name"] = "sales-followup"
    scheduled["activityTaskScheduledEventAttributes"]["activityType"]["name"] = "run_tool"
    renamed = tmp_path / "renamed.json"
    renamed.write_text(json.dumps(history))
    result = await baton_cli(time_env, "audit", run_id, "--history", renamed, target=NOWHERE)
    expect_exit(result, 1)
    assert len(result.err_lines) == 1 and "'sales-followup'" in result.err_lines[0], str(result)


async def test_an_unknown_run_is_one_line_and_exit_2(time_env):
    result = await baton_cli(time_env, "audit", "no-such-run-7f3a")
    expect_refusal(result, "no-such-run-7f3a")


async def test_a_history_recorded_before_model_names_were_kept_still_audits():
    """A history recorded before requested_model / reported_model were kept: its steps show the label alone."""
    path = ROOT / "tests" / "histories" / "archive" / "before-baseline" / "onboarding-clear.json"
    record = await run_record_from_history(history_from_file("onboarding-clear", path))
    llm = [e for e in record.ledger if e.kind == "llm"]
    assert llm and all(e.model and (e.requested_model, e.reported_model) == (None, None) for e in llm)
    data = audit(record)
    text = audit_text(data)
    for e in llm:
        [step] = [s for s in data["steps"] if s["seq"] == e.seq]
        assert (step["requested_model"], step["reported_model"]) == (None, None)
        assert f"{e.provider}/{e.model} " in text  # no names in brackets after the label


@pytest.mark.parametrize(("requested", "reported", "shown"), [
    ("gpt-4o-mini", "gpt-4o-mini-2024-07-18", "openai/mini (gpt-4o-mini, answered by gpt-4o-mini-2024-07-18)"),
    ("gpt-4o-mini", "gpt-4o-mini", "openai/mini (gpt-4o-mini)"),
    ("gpt-4o-mini", None, "openai/mini (gpt-4o-mini)"),  # refused: nobody answered
    ("mini", "mini", "openai/mini"),  # the label is the model's own name
    (None, None, "openai/mini"),  # recorded before the names were kept
])
def test_a_model_cell_says_what_the_label_meant(requested, reported, shown):
    from client.render import model_text

    assert model_text("openai", "mini", requested, reported) == shown
