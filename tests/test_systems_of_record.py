"""The example systems of record in SQLite, and the tool activity in front of them.

Expected values come from examples/systems.json as written (not from the code):
A-1001 Ada Lovelace (GB, clean, 742/0), A-1002 Grace Hopper (US, PEP, 701/0),
A-1003 Victor Lustig (FR, sanctioned, 655/1), A-1004 Alan Turing (GB, 598/1).
Effects are checked by reading the SQLite file directly.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.tools import records
from activities.tools.activity import ToolActivities
from activities.tools.contracts import ToolCall
from activities.tools.systems import SystemsOfRecord

SEED = Path(__file__).resolve().parent.parent / "examples" / "systems.json"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "systems.db"  # create() must make the parent dirs


@pytest.fixture
def sor(db_path: Path) -> SystemsOfRecord:
    systems = SystemsOfRecord(db_path)
    systems.create(SEED)
    return systems


def rows(db_path: Path, sql: str, *params) -> list[tuple]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def identity(sor: SystemsOfRecord, applicant_id: str, name: str, document: str) -> records.IdentityCheck:
    return sor.verify_identity(
        records.IdentityQuery(applicant_id=applicant_id, name=name, document_number=document), None
    )


def customer(applicant_id: str = "A-1001", email: str = "ada@example.com") -> records.NewCustomer:
    return records.NewCustomer(applicant_id=applicant_id, name="Ada Lovelace", email=email, segment="prime")


def welcome(to: str = "ada@example.com") -> records.Email:
    return records.Email(to=to, subject="Welcome aboard", body="Hello Ada")


# ------------------------------------------------------------------- seeding


def test_create_loads_the_seed(sor: SystemsOfRecord, db_path: Path) -> None:
    assert db_path.exists()
    assert rows(db_path, "SELECT applicant_id, name, document_number, country, pep, sanctioned"
                         " FROM applicants ORDER BY applicant_id") == [
        ("A-1001", "Ada Lovelace", "P1234567", "GB", 0, 0),
        ("A-1002", "Grace Hopper", "P7654321", "US", 1, 0),
        ("A-1003", "Victor Lustig", "P0000013", "FR", 0, 1),
        ("A-1004", "Alan Turing", "P1912061", "GB", 0, 0),
    ]
    assert rows(db_path, "SELECT * FROM credit ORDER BY applicant_id") == [
        ("A-1001", 742, 0), ("A-1002", 701, 0), ("A-1003", 655, 1), ("A-1004", 598, 1),
    ]
    assert rows(db_path, "SELECT COUNT(*) FROM crm_records") == [(0,)]
    assert rows(db_path, "SELECT COUNT(*) FROM outbox") == [(0,)]


def test_create_without_seed_makes_empty_tables(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    SystemsOfRecord(path).create()
    for table in ("applicants", "credit", "crm_records", "outbox"):
        assert rows(path, f"SELECT COUNT(*) FROM {table}") == [(0,)]


def test_create_twice_keeps_existing_rows(sor: SystemsOfRecord, db_path: Path) -> None:
    sor.create_crm_record(customer(), "onboarding-A-1001/crm")
    sor.send_email(welcome(), "onboarding-A-1001/email")
    # an operator edited a seeded applicant; re-seeding must not overwrite it
    conn = sqlite3.connect(db_path)
    with conn:
        conn.execute("UPDATE applicants SET country = 'IE' WHERE applicant_id = 'A-1001'")
    conn.close()

    sor.create(SEED)
    SystemsOfRecord(db_path).create(SEED)

    assert rows(db_path, "SELECT COUNT(*) FROM applicants") == [(4,)]
    assert rows(db_path, "SELECT COUNT(*) FROM credit") == [(4,)]
    assert rows(db_path, "SELECT COUNT(*) FROM crm_records") == [(1,)]
    assert rows(db_path, "SELECT COUNT(*) FROM outbox") == [(1,)]
    assert rows(db_path, "SELECT country FROM applicants WHERE applicant_id = 'A-1001'") == [("IE",)]


# ------------------------------------------------------------ identity checks


def test_identity_match(sor: SystemsOfRecord) -> None:
    check = identity(sor, "A-1001", "Ada Lovelace", "P1234567")
    assert check.verified is True
    assert check.country == "GB"
    assert check.pep is False
    assert check.sanctions_hit is False


def test_identity_wrong_document(sor: SystemsOfRecord) -> None:
    check = identity(sor, "A-1001", "Ada Lovelace", "P9999999")
    assert check.verified is False
    assert check.country == "GB"
    assert "does not match" in check.reason
    assert check.pep is False and check.sanctions_hit is False


def test_identity_wrong_name(sor: SystemsOfRecord) -> None:
    check = identity(sor, "A-1001", "Ada Byron", "P1234567")
    assert check.verified is False
    assert "does not match" in check.reason


def test_identity_someone_elses_document(sor: SystemsOfRecord) -> None:
    # Grace Hopper's real document, presented under Ada's applicant id
    check = identity(sor, "A-1001", "Grace Hopper", "P7654321")
    assert check.verified is False


def test_identity_unknown_applicant(sor: SystemsOfRecord) -> None:
    check = identity(sor, "A-9999", "Nobody", "X0000000")
    assert check.verified is False
    assert check.country is None
    assert "not in the register" in check.reason


def test_identity_pep_flag(sor: SystemsOfRecord) -> None:
    check = identity(sor, "A-1002", "Grace Hopper", "P7654321")
    assert check.verified is True
    assert check.country == "US"
    assert check.pep is True
    assert check.sanctions_hit is False


def test_identity_sanctions_flag(sor: SystemsOfRecord) -> None:
    check = identity(sor, "A-1003", "Victor Lustig", "P0000013")
    assert check.verified is True
    assert check.country == "FR"
    assert check.sanctions_hit is True
    assert check.pep is False


def test_identity_flags_not_revealed_on_mismatch(sor: SystemsOfRecord) -> None:
    check = identity(sor, "A-1003", "Victor Lustig", "WRONG")
    assert check.verified is False
    assert check.sanctions_hit is False


# ------------------------------------------------------------------- credit


@pytest.mark.parametrize(
    ("applicant_id", "score", "defaults"),
    [("A-1001", 742, 0), ("A-1002", 701, 0), ("A-1003", 655, 1), ("A-1004", 598, 1)],
)
def test_credit_lookup(sor: SystemsOfRecord, applicant_id: str, score: int, defaults: int) -> None:
    report = sor.pull_credit(records.CreditQuery(applicant_id=applicant_id), None)
    assert report == records.CreditReport(found=True, score=score, open_defaults=defaults)


def test_credit_unknown_applicant(sor: SystemsOfRecord) -> None:
    report = sor.pull_credit(records.CreditQuery(applicant_id="A-9999"), None)
    assert report.found is False
    assert report.score == 0 and report.open_defaults == 0


# ------------------------------------------------------------------ writes


def test_create_crm_record_is_idempotent(sor: SystemsOfRecord, db_path: Path) -> None:
    first = sor.create_crm_record(customer(), "onboarding-A-1001/crm")
    second = sor.create_crm_record(customer(), "onboarding-A-1001/crm")

    assert first.created is True
    assert second.created is False
    assert second.customer_id == first.customer_id
    assert first.customer_id.startswith("C-")
    assert second.applicant_id == first.applicant_id == "A-1001"
    assert rows(db_path, "SELECT customer_id, idempotency_key, applicant_id, name, email, segment"
                         " FROM crm_records") == [
        (first.customer_id, "onboarding-A-1001/crm", "A-1001", "Ada Lovelace", "ada@example.com", "prime"),
    ]


def test_create_crm_record_same_key_changed_payload_keeps_first(sor: SystemsOfRecord, db_path: Path) -> None:
    first = sor.create_crm_record(customer(email="ada@example.com"), "key-1")
    retry = sor.create_crm_record(customer(applicant_id="A-1002", email="other@example.com"), "key-1")
    assert retry.created is False
    assert retry.customer_id == first.customer_id
    assert retry.applicant_id == "A-1001"
    assert rows(db_path, "SELECT applicant_id, email FROM crm_records") == [("A-1001", "ada@example.com")]


def test_create_crm_record_different_keys_make_different_rows(sor: SystemsOfRecord, db_path: Path) -> None:
    a = sor.create_crm_record(customer(), "key-a")
    b = sor.create_crm_record(customer(), "key-b")
    assert a.created and b.created
    assert a.customer_id != b.customer_id
    assert rows(db_path, "SELECT COUNT(*) FROM crm_records") == [(2,)]
    assert sor.count("crm_records", applicant_id="A-1001") == 2


def test_send_email_is_idempotent(sor: SystemsOfRecord, db_path: Path) -> None:
    first = sor.send_email(welcome(), "onboarding-A-1001/email")
    second = sor.send_email(welcome(), "onboarding-A-1001/email")

    assert first.queued is True
    assert second.queued is False
    assert second.message_id == first.message_id
    assert first.message_id.startswith("M-")
    assert rows(db_path, "SELECT message_id, idempotency_key, recipient, subject, body FROM outbox") == [
        (first.message_id, "onboarding-A-1001/email", "ada@example.com", "Welcome aboard", "Hello Ada"),
    ]


def test_send_email_different_keys_make_different_rows(sor: SystemsOfRecord, db_path: Path) -> None:
    a = sor.send_email(welcome(), "mail-1")
    b = sor.send_email(welcome("grace@example.com"), "mail-2")
    assert a.queued and b.queued
    assert a.message_id != b.message_id
    assert sorted(rows(db_path, "SELECT recipient FROM outbox")) == [("ada@example.com",), ("grace@example.com",)]


def test_ids_are_stable_across_instances(sor: SystemsOfRecord, db_path: Path) -> None:
    """A retried activity runs in a new worker process: the id must not depend on the instance."""
    first = sor.create_crm_record(customer(), "stable-key")
    again = SystemsOfRecord(db_path).create_crm_record(customer(), "stable-key")
    assert again.customer_id == first.customer_id
    assert again.created is False


def test_count_rejects_unknown_table(sor: SystemsOfRecord) -> None:
    with pytest.raises(ValueError, match="unknown table"):
        sor.count("sqlite_master")


# ----------------------------------------------------------- the tool activity


def run_tool(sor: SystemsOfRecord, call: ToolCall):
    return ActivityEnvironment().run(ToolActivities(sor).run_tool, call)


def test_run_tool_read(sor: SystemsOfRecord) -> None:
    result = run_tool(
        sor,
        ToolCall(
            step="validate_identity",
            tool="verify_identity",
            args={"applicant_id": "A-1002", "name": "Grace Hopper", "document_number": "P7654321"},
        ),
    )
    assert result.output == {
        "verified": True, "country": "US", "pep": True, "sanctions_hit": False, "reason": "",
    }
    assert result.attempt == 1
    assert result.latency_ms >= 0


def test_run_tool_write_is_idempotent_through_the_activity(sor: SystemsOfRecord, db_path: Path) -> None:
    call = ToolCall(
        step="crm",
        tool="create_crm_record",
        args={"applicant_id": "A-1001", "name": "Ada Lovelace", "email": "ada@example.com", "segment": "prime"},
        idempotency_key="run-1/crm",
    )
    first = run_tool(sor, call)
    second = run_tool(sor, call)
    assert first.output["created"] is True
    assert second.output["created"] is False
    assert first.output["customer_id"] == second.output["customer_id"]
    assert rows(db_path, "SELECT COUNT(*) FROM crm_records") == [(1,)]


@pytest.mark.parametrize(
    ("tool", "args", "key"),
    [
        ("verify_identity", {"applicant_id": "A-1001", "name": "Ada Lovelace"}, None),  # missing field
        ("verify_identity", {"applicant_id": "", "name": "Ada", "document_number": "P1"}, None),  # empty
        ("pull_credit", {"applicant": "A-1001"}, None),
        ("send_email", {"to": "not-an-email", "subject": "Hi", "body": "Hello"}, "k-1"),
        ("create_crm_record", {"applicant_id": "A-1001", "name": "Ada"}, "k-2"),
    ],
    ids=["identity-missing", "identity-empty", "credit-wrong-key", "email-bad-address", "crm-missing"],
)
def test_run_tool_invalid_args_non_retryable(
    sor: SystemsOfRecord, db_path: Path, tool: str, args: dict, key: str | None
) -> None:
    with pytest.raises(ApplicationError) as caught:
        run_tool(sor, ToolCall(step="s", tool=tool, args=args, idempotency_key=key))
    err = caught.value
    assert err.non_retryable
    assert err.type == "InvalidToolArgs"
    assert repr(tool) in err.message
    assert rows(db_path, "SELECT COUNT(*) FROM crm_records") == [(0,)]
    assert rows(db_path, "SELECT COUNT(*) FROM outbox") == [(0,)]


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("create_crm_record",
         {"applicant_id": "A-1001", "name": "Ada Lovelace", "email": "ada@example.com", "segment": "prime"}),
        ("send_email", {"to": "ada@example.com", "subject": "Hi", "body": "Hello"}),
    ],
)
@pytest.mark.parametrize("key", [None, ""], ids=["none", "empty"])
def test_run_tool_write_without_key_non_retryable(
    sor: SystemsOfRecord, db_path: Path, tool: str, args: dict, key: str | None
) -> None:
    with pytest.raises(ApplicationError) as caught:
        run_tool(sor, ToolCall(step="s", tool=tool, args=args, idempotency_key=key))
    err = caught.value
    assert err.non_retryable
    assert err.type == "MissingIdempotencyKey"
    assert repr(tool) in err.message
    assert "idempotency key" in err.message
    assert rows(db_path, "SELECT COUNT(*) FROM crm_records") == [(0,)]
    assert rows(db_path, "SELECT COUNT(*) FROM outbox") == [(0,)]


def test_run_tool_read_needs_no_key(sor: SystemsOfRecord) -> None:
    result = run_tool(sor, ToolCall(step="s", tool="pull_credit", args={"applicant_id": "A-1004"}))
    assert result.output == {"found": True, "score": 598, "open_defaults": 1}


def test_run_tool_unknown_tool_non_retryable(sor: SystemsOfRecord) -> None:
    with pytest.raises(ApplicationError) as caught:
        run_tool(sor, ToolCall(step="s", tool="drop_tables", args={}, idempotency_key="k"))
    err = caught.value
    assert err.non_retryable
    assert err.type == "UnknownTool"
    assert "drop_tables" in err.message
