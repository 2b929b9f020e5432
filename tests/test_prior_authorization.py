"""Prior authorization (examples/baton_examples/prior_authorization), through Temporal on the test kit.

The repo's baton.toml as it ships (its [plugins], roles, grants and budgets);
the model is a function of the typed turn, which reads the request id from the
prompt and answers what a careful extractor would: the fields the note states,
null for the ones it does not. The CRM and policy table are the package's
SQLite systems, read back directly to see what really happened.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import date

import pytest

from baton_examples.prior_authorization.contracts import ExtractedRequest
from client.audit import audit
from client.run_record import run_record_from_history
from client.testkit import ModelTurn, process_test_env
from tests.conftest import ROOT
from workflows.outcome import RunState

CONFIG = ROOT / "baton.toml"
REVIEWER = "clinical-reviewer"  # the person baton.toml's [roles.clinical-reviewer] names

# What the note of each example states (examples/prior-authorization/*.json), field by field.
READ = {
    "PA-1001": ExtractedRequest(
        member_id="M-20417", patient_name="Jordan Sample", procedure_code="29881", diagnosis_code="M23.221",
        requested_date=date(2026, 12, 8), provider_npi="1234567893", provider_name="Northside Orthopedics",
        clinical_justification="Locking knee; meniscal tear on MRI; failed eight weeks of therapy.",
    ),
    "PA-1002": ExtractedRequest(
        member_id="M-40981", patient_name="Riley Sample", procedure_code="72148", provider_npi="1987654320",
        clinical_justification="Radiating low back pain for six weeks; conservative care has not helped.",
    ),  # no diagnosis code, no date: the note states neither
    "PA-1003": ExtractedRequest(
        member_id="M-31552", patient_name="Morgan Sample", procedure_code="97110", diagnosis_code="M54.50",
        requested_date=date(2026, 12, 1), provider_npi="1456789012", provider_name="Lakeside Physical Therapy",
        clinical_justification="Twenty sessions done with steady gains; eight more to finish strengthening.",
    ),
}
FILES = {"PA-1001": "clean", "PA-1002": "missing-fields", "PA-1003": "over-limit"}


def extractor(turn: ModelTurn) -> ExtractedRequest:
    """The scripted model: the request named in the prompt, as its note states it (the note is in the prompt)."""
    assert turn.output_type is ExtractedRequest and turn.step == "extract_request"
    (request_id,) = [r for r in READ if f"request {r} " in turn.prompt]
    assert "<note>" in turn.prompt and "never guess" in turn.prompt
    return READ[request_id]


def request(request_id: str) -> dict:
    return json.loads((ROOT / "examples" / "prior-authorization" / f"{FILES[request_id]}.json").read_text())


def rows(kit, table: str) -> list[dict]:
    with sqlite3.connect(kit.config.systems.db) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(f"SELECT * FROM {table} ORDER BY rowid")]


async def test_a_complete_covered_request_is_authorized_by_the_rules_and_logged_once(tmp_path):
    async with process_test_env(CONFIG, model=extractor, directory=tmp_path) as kit:
        run_id = await kit.baton.start("prior-authorization", request("PA-1001"))
        outcome = await kit.baton.result(run_id)
        ledger = await kit.baton.ledger(run_id)
        cases, decisions = rows(kit, "pa_cases"), rows(kit, "pa_decisions")

    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert [e.step for e in ledger] == ["extract_request", "check_coverage", "check_policy_limits", "log_case"]
    rule = next(e for e in ledger if e.step == "check_policy_limits")
    assert rule.decision["verdict"] == "approve" and rule.decision["missing"] == []
    assert outcome.result["decision"] == "approved" and outcome.result["reviewed_by"] is None
    assert [(c["request_id"], c["member_id"], c["procedure_code"], c["status"]) for c in cases] == [
        ("PA-1001", "M-20417", "29881", "approved")]
    assert outcome.result["case_id"] == cases[0]["case_id"] and decisions == []


async def test_a_missing_field_goes_to_a_clinical_reviewer_who_approves(tmp_path):
    async with process_test_env(CONFIG, model=extractor, directory=tmp_path) as kit:
        run_id = await kit.baton.start("prior-authorization", request("PA-1002"))
        await kit.wait_for(run_id, RunState.AWAITING_APPROVAL)
        (asked,) = (await kit.baton.status(run_id)).open_requests
        parked_cases = rows(kit, "pa_cases")
        await kit.baton.approve(run_id, by=REVIEWER, comment="diagnosis and date confirmed with the office")
        outcome = await kit.baton.result(run_id)
        ledger = await kit.baton.ledger(run_id)
        cases, decisions = rows(kit, "pa_cases"), rows(kit, "pa_decisions")

    assert (asked.id, asked.roles) == ("clinical_review", ["clinical-reviewer"])
    assert "does not state diagnosis_code, requested_date" in asked.ask and "Approve to authorize" in asked.ask
    assert "M-40981" not in asked.ask and "Riley" not in asked.ask  # the ask is shown undecoded: no patient data
    assert asked.context["missing"] == ["diagnosis_code", "requested_date"] and asked.context["coverage"] is None
    assert [c["status"] for c in parked_cases] == ["pending_review"]  # logged before the reviewer decided
    assert outcome.state is RunState.COMPLETED, outcome.reason
    # Without a date the policy cannot be read for the day: no coverage call, and nothing invented.
    assert [e.step for e in ledger] == [
        "extract_request", "check_policy_limits", "log_case", "clinical_review", "record_decision"]
    assert (outcome.result["verdict"], outcome.result["decision"], outcome.result["reviewed_by"]) == (
        "incomplete", "approved", REVIEWER)
    assert [(c["status"], c["diagnosis_code"], c["requested_date"]) for c in cases] == [("approved", None, None)]
    assert [(d["case_id"], d["status"], d["decided_by"]) for d in decisions] == [(cases[0]["case_id"], "approved", REVIEWER)]


async def test_a_policy_limit_denial_goes_to_a_reviewer_who_rejects_and_the_crm_records_the_denial(tmp_path):
    async with process_test_env(CONFIG, model=extractor, directory=tmp_path) as kit:
        run_id = await kit.baton.start("prior-authorization", request("PA-1003"))
        await kit.wait_for(run_id, RunState.AWAITING_APPROVAL)
        (asked,) = (await kit.baton.status(run_id)).open_requests
        await kit.baton.reject(run_id, by=REVIEWER, comment="limit reached; no exception documented")
        outcome = await kit.baton.result(run_id)
        cases, decisions = rows(kit, "pa_cases"), rows(kit, "pa_decisions")

    assert "the policy rules deny it: visit limit reached: 20 of 20 visits used this plan year" in asked.ask
    assert outcome.state is RunState.REJECTED, outcome.reason
    assert (outcome.result["verdict"], outcome.result["decision"]) == ("deny", "denied")
    assert [c["status"] for c in cases] == ["denied"]
    assert [(d["status"], d["decided_by"], d["comment"]) for d in decisions] == [
        ("denied", REVIEWER, "limit reached; no exception documented")]


async def test_a_person_outside_the_role_cannot_decide_the_review(tmp_path):
    async with process_test_env(CONFIG, model=extractor, directory=tmp_path) as kit:
        run_id = await kit.baton.start("prior-authorization", request("PA-1003"))
        await kit.wait_for(run_id, RunState.AWAITING_APPROVAL)
        with pytest.raises(Exception, match="clinical-reviewer"):
            await kit.baton.approve(run_id, by="supervising-attorney")
        still = await kit.baton.status(run_id)
        await kit.baton.reject(run_id, by=REVIEWER)
        await kit.baton.result(run_id)

    assert still.state is RunState.AWAITING_APPROVAL and [r.id for r in still.open_requests] == ["clinical_review"]


async def test_the_audit_shows_every_nodes_input_and_output_and_the_web_ui_no_patient_data(tmp_path):
    async with process_test_env(CONFIG, model=extractor, directory=tmp_path) as kit:
        run_id = await kit.baton.start("prior-authorization", request("PA-1003"))
        await kit.wait_for(run_id, RunState.AWAITING_APPROVAL)
        await kit.baton.reject(run_id, by=REVIEWER, comment="limit reached")
        await kit.baton.result(run_id)
        ledger = await kit.baton.ledger(run_id)
        handle = kit.env.client.get_workflow_handle(run_id)
        described = await handle.describe()
        history = await handle.fetch_history()
        record = await run_record_from_history(history, kit.env.client.data_converter)

    nodes = ["extract_request", "check_coverage", "check_policy_limits", "log_case", "clinical_review", "record_decision"]
    data = audit(record)
    assert [s["step"] for s in data["steps"]] == nodes == [e.step for e in ledger]
    for step, entry in zip(data["steps"], ledger):  # each node's input (keyed digest) and output (in full)
        assert entry.input is not None and entry.decision is not None, entry.step
        assert step["input_digest"].startswith("hmac-sha256:") and step["output_digest"].startswith("hmac-sha256:")
        assert step["decision"] == entry.decision and step["input"] is None  # "digests": inputs are proved, not shown
    full = audit(record.model_copy(update={"audit_values": "full"}))
    assert [s["input"] for s in full["steps"]] == [e.input for e in ledger]
    extract, coverage = full["steps"][0], full["steps"][1]
    assert "M-31552" in json.dumps(extract["input"]) and extract["decision"]["member_id"] == "M-31552"
    assert coverage["input"]["member_id"] == "M-31552" and coverage["decision"]["visits_used"] == 20

    # What Temporal shows without decoding holds none of the patient's data.
    shown = json.dumps([str(described.static_summary), str(described.static_details),
                        {k.name: str(v) for k, v in (described.typed_search_attributes or [])}], default=str)
    raw = history.to_json()
    for value in ("M-31552", "Morgan Sample", "M54.50", "steady gains"):
        assert value not in shown and value not in raw, value
    assert "prior-authorization" in str(described.static_summary)
