"""A team's package outside the repository plugs in through baton.toml, with no engine file edited.

The test writes a tiny package into tmp_path (a process that looks a payee up,
drafts a memo with the model and pays an invoice, an irreversible tool that
parks for a person), names it in a baton.toml, and drives it through Temporal:
config validation knows its grants, the worker registers its workflow and
tools, it parks, is approved, pays once, and is audited, reported and
listed by `baton tools` like a shipped process. The `baton` CLI, run as a
subprocess against the real dev server with only the team's package named,
lists, runs, shows in its inbox and approves the team's process.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.audit import audit
from client.inventory import build
from client.report import build_report
from client.run_record import run_record
from client.sdk import Baton
from tests.conftest import REQUESTER, REVIEWERS, running_worker
from tests.test_integration import BATON, cli_env, eventually, expect_exit, run_cli
from tests.test_onboarding_routes import wait_for_state
from worker.config import ConfigError, load
from workflows.outcome import RunState
from workflows.registry import REGISTRY

PACKAGE = {
    "__init__.py": '"""Accounts payable: our own process on Baton."""\n',
    "tools.py": '''
        """The payables ledger and its two tools, declared where they are implemented."""

        from __future__ import annotations

        import sqlite3

        from pydantic import Field

        from workflows.api import Contract, Effect, SystemsSettings, tool


        class PayeeQuery(Contract):
            payee_id: str = Field(min_length=1)


        class Payee(Contract):
            payee_id: str
            iban: str


        class Payment(Contract):
            payee_id: str
            amount_eur: float = Field(gt=0, le=10_000)


        class PaymentReceipt(Contract):
            payment_id: str
            created: bool


        class Payables:
            def __init__(self, settings: SystemsSettings) -> None:
                self.path = str(settings.db)
                with sqlite3.connect(self.path) as db:
                    db.execute("CREATE TABLE IF NOT EXISTS team_payments (key TEXT PRIMARY KEY, payee_id TEXT, amount REAL)")

            @tool(Effect.READ, "Read a payee's bank account.")
            def look_up_payee(self, q: PayeeQuery, key: str | None) -> Payee:
                return Payee(payee_id=q.payee_id, iban="DE00 TEAM " + q.payee_id)

            @tool(Effect.IRREVERSIBLE, "Pay a payee; once per idempotency key.")
            def pay_invoice(self, p: Payment, key: str) -> PaymentReceipt:
                with sqlite3.connect(self.path) as db:
                    made = db.execute("INSERT OR IGNORE INTO team_payments VALUES (?,?,?)", (key, p.payee_id, p.amount_eur))
                return PaymentReceipt(payment_id="P-" + key[-8:], created=made.rowcount == 1)
    ''',
    "workflow.py": '''
        """Pay an invoice: look the payee up, draft the memo, pay once a person approves."""

        from __future__ import annotations

        from datetime import timedelta

        from pydantic import BaseModel, Field
        from temporalio import workflow

        from workflows.api import AskPolicy, PlannedStep, Process, RunOutcome, RunState

        with workflow.unsafe.imports_passed_through():
            from team_payables.tools import Payables, Payment, PayeeQuery


        class Invoice(BaseModel):
            invoice_id: str
            payee_id: str
            amount_eur: float

            def business_key(self) -> str:
                return self.invoice_id


        class Memo(BaseModel):
            text: str = Field(min_length=1, max_length=200)


        class Paid(BaseModel):
            invoice_id: str
            payment_id: str | None = None


        @workflow.defn(name="pay-invoice")
        class PayInvoice(Process):
            name = "pay-invoice"
            roles = ("compliance",)
            outputs = (Memo,)
            plan = (
                PlannedStep("payee", "tool", tool="look_up_payee"),
                PlannedStep("memo", "llm", tier="fast"),
                PlannedStep("pay.approval", "approval", roles=("compliance",)),
                PlannedStep("pay", "tool", tool="pay_invoice"),
            )

            @workflow.run
            async def run(self, invoice: Invoice) -> RunOutcome[Paid]:
                return await self.execute(lambda: self._pay(invoice), None)

            async def _pay(self, i: Invoice) -> RunOutcome[Paid]:
                result = self.keep(Paid(invoice_id=i.invoice_id))
                payee = await self.tool("payee", Payables.look_up_payee, PayeeQuery(payee_id=i.payee_id))
                memo = await self.llm("memo", f"A one-line memo for invoice {i.invoice_id}", Memo)
                receipt = await self.tool(
                    "pay", Payables.pay_invoice, Payment(payee_id=payee.payee_id, amount_eur=i.amount_eur),
                    approval=AskPolicy(roles=["compliance"], timeout=timedelta(hours=4)), facts=memo,
                )
                result.payment_id = receipt.payment_id
                return self.end(RunState.COMPLETED, f"paid as {receipt.payment_id}", result)
    ''',
    "plugin.py": '''
        """What this package brings to a Baton worker."""

        from team_payables.tools import Payables
        from team_payables.workflow import PayInvoice
        from workflows.api import Package

        package = Package(name="team-payables", processes=(PayInvoice,), systems=Payables)
    ''',
}

GRANT = '[grants.pay-invoice]\ntools = ["look_up_payee", "pay_invoice"]\n'
ROLES = "".join(f'[roles.{r}]\npeople = ["someone"]\n' for r in ("compliance", "compliance-lead", "support-lead", "sales-manager"))
TEAM_ONLY = '[plugins]\npackages = ["team_payables.plugin"]\n[roles.compliance]\npeople = ["someone"]\n' + GRANT


@pytest.fixture
def team_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The team's package, written outside the repository and importable from there only, and only in the test.

    Its modules and the tools they declared are forgotten after it: the tool catalog other tests list is Baton's.
    """
    root = tmp_path / "team" / "team_payables"
    root.mkdir(parents=True)
    for name, text in PACKAGE.items():
        (root / name).write_text(textwrap.dedent(text).lstrip())
    monkeypatch.syspath_prepend(str(root.parent))
    yield root  # the registry and the tool catalog are restored after every test (tests/conftest.py)
    for module in [m for m in sys.modules if m.partition(".")[0] == "team_payables"]:
        del sys.modules[module]


def test_a_grant_for_a_process_no_package_brings_is_refused(tmp_path: Path):
    (tmp_path / "baton.toml").write_text(ROLES + '[grants.pay-nobody]\ntools = ["send_email"]\n')
    with pytest.raises(ConfigError, match="grants.pay-nobody: no such process"):
        load(tmp_path / "baton.toml")


def test_a_package_baton_toml_names_that_cannot_be_imported_is_refused_in_one_line(tmp_path: Path):
    (tmp_path / "baton.toml").write_text('[plugins]\npackages = ["no_such_team_package"]\n' + ROLES)
    with pytest.raises(ConfigError, match="plugins.packages: cannot import 'no_such_team_package'") as refused:
        load(tmp_path / "baton.toml")
    assert "\n" not in str(refused.value)


def test_packages_named_in_baton_toml_replace_the_advertised_ones(team_package, tmp_path: Path):
    """A team runs only its own package: the examples' processes, and the roles they ask, are not required."""
    (tmp_path / "baton.toml").write_text(TEAM_ONLY)
    loaded = load(tmp_path / "baton.toml")
    assert sorted(REGISTRY.known()) == ["pay-invoice"] and loaded.plugins.packages == ["team_payables.plugin"]


def test_the_examples_run_beside_a_teams_package_when_named_with_it(team_package, tmp_path: Path):
    (tmp_path / "baton.toml").write_text(
        '[plugins]\npackages = ["baton_examples.package", "team_payables.plugin"]\n' + ROLES + GRANT
    )
    load(tmp_path / "baton.toml")
    assert sorted(REGISTRY.known()) == ["onboarding", "pay-invoice", "sales-followup", "support-triage"]


async def test_a_teams_package_runs_parks_is_approved_audited_and_reported(time_env, config, team_package, tmp_path):
    (tmp_path / "baton.toml").write_text(TEAM_ONLY)
    loaded = load(tmp_path / "baton.toml")  # the grant names the package's process and tools: accepted
    config = config.model_copy(update={"plugins": loaded.plugins, "grants": loaded.grants})  # the suite's people

    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("pay-invoice", {"invoice_id": f"INV-{uuid.uuid4().hex[:6]}", "payee_id": "ACME",
                                                   "amount_eur": 120.5})
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        asked = (await baton.status(run_id)).open_requests
        await baton.approve(run_id, by=REVIEWERS[0], comment="invoice matches the order")
        outcome = await baton.result(run_id)
        record = await run_record(time_env.client, run_id)  # rebuilt by replaying its history on this registry

    assert [r.id for r in asked] == ["pay.approval"] and asked[0].roles == ["compliance"]
    assert outcome.state is RunState.COMPLETED, outcome.reason
    with sqlite3.connect(config.systems.db) as db:
        assert db.execute("SELECT payee_id, amount FROM team_payments").fetchall() == [("ACME", 120.5)]

    steps = {s["step"]: s for s in audit(record)["steps"]}
    assert list(steps) == ["payee", "memo", "pay.approval", "pay"]
    assert [a["by"] for a in audit(record)["approvals"]] == [REVIEWERS[0]]
    report = build_report([record], targets={})
    assert [(p["process"], p["runs"]) for p in report["processes"]] == [("pay-invoice", 1)]
    tools = {t.name: t.effect for t in build(config, "pay-invoice").tools}
    assert tools["pay_invoice"] == "irreversible" and tools["look_up_payee"] == "read"


@pytest.mark.integration
async def test_the_cli_knows_a_teams_process_named_in_baton_toml(dev_env, config, issuer, team_package, tmp_path):
    """`baton` as a subprocess, its baton.toml naming only the team's package (on PYTHONPATH, outside the repo):
    it lists the process's tools, runs it, shows its request in the inbox, approves it and waits for its end."""
    toml = tmp_path / "baton.toml"
    toml.write_text(TEAM_ONLY)
    loaded = load(toml)
    config = config.model_copy(update={"plugins": loaded.plugins, "grants": loaded.grants})
    invoice = tmp_path / "invoice.json"
    invoice.write_text(json.dumps({"invoice_id": f"INV-{uuid.uuid4().hex[:6]}", "payee_id": "ACME", "amount_eur": 80}))

    async with running_worker(dev_env.client, config) as w:
        env = {**cli_env(dev_env.client.service_client.config.target_host, w.task_queue, issuer.mint(REQUESTER)),
               "BATON_CONFIG": str(toml), "PYTHONPATH": str(team_package.parent)}
        tools = await run_cli(BATON, "tools", "--process", "pay-invoice", "--json", env=env, cwd=tmp_path)
        expect_exit(tools, 0)
        assert {t["name"]: t["effect"] for t in tools.json()["tools"]} == {"look_up_payee": "read", "pay_invoice": "irreversible"}

        waiting = asyncio.create_task(run_cli(BATON, "run", "pay-invoice", "--input", invoice, "--wait", "--json",
                                              env=env, cwd=tmp_path))

        async def asked() -> list[dict] | None:
            found = (await run_cli(BATON, "inbox", "--process", "pay-invoice", "--json", env=env, cwd=tmp_path)).json()
            return found["requests"] or None

        [request] = await eventually(asked, "the payment's approval in the inbox")
        assert request["id"] == "pay.approval" and request["process"] == "pay-invoice"
        approved = await run_cli(BATON, "approve", request["run_id"], "--request", "pay.approval",
                                 env={**env, "BATON_TOKEN": issuer.mint(REVIEWERS[0])}, cwd=tmp_path)
        expect_exit(approved, 0)
        done = await waiting

    expect_exit(done, 0)
    ended = done.json()
    assert ended["state"] == "completed" and [e["step"] for e in ended["ledger"]] == ["payee", "memo", "pay.approval", "pay"]
