"""The test kit (client/testkit.py) as a process author uses it: their package, a function for a model.

The team package of tests/test_plugin.py runs on a stack the kit starts by
itself (its own time-skipping server, issuer and key), from a baton.toml as
the team would write it; the model is a function of the typed turn.
"""

from __future__ import annotations

import sqlite3
import uuid

import pytest

from client.testkit import ModelTurn, process_test_env
from tests.test_plugin import GRANT, PACKAGE, ROLES, team_package  # noqa: F401 (the fixture)
from worker.config import load
from workflows.outcome import RunState

TEAM_TOML = '[plugins]\npackages = ["team_payables.plugin"]\n' + ROLES.replace('"someone"', '"pat-payables"') + GRANT


def invoice() -> dict:
    return {"invoice_id": f"INV-{uuid.uuid4().hex[:6]}", "payee_id": "ACME", "amount_eur": 99.0}


async def test_a_teams_process_runs_on_the_kit_answered_by_a_function(team_package, tmp_path):  # noqa: F811
    (tmp_path / "baton.toml").write_text(TEAM_TOML)
    asked: list[ModelTurn] = []

    def model(turn: ModelTurn):
        asked.append(turn)
        return turn.output_type(text=f"memo for {turn.prompt.rsplit(' ', 1)[-1]}")

    async with process_test_env(tmp_path / "baton.toml", model=model, directory=tmp_path / "stack") as kit:
        data = invoice()
        run_id = await kit.baton.start("pay-invoice", data)
        await kit.wait_for(run_id, RunState.AWAITING_APPROVAL)
        await kit.baton.approve(run_id, by="pat-payables", comment="matches the order")
        outcome = await kit.baton.result(run_id)
        ledger = await kit.baton.ledger(run_id)
        db = kit.config.systems.db

    assert outcome.state is RunState.COMPLETED, outcome.reason
    ((turn),) = asked
    assert (turn.step, turn.output_type.__name__, turn.turn, turn.tools) == ("memo", "Memo", 0, ())
    memo = next(e for e in ledger if e.step == "memo")
    assert (memo.provider, memo.model, memo.requested_model, memo.tier) == ("scripted", "scripted-fast", "scripted", "fast")
    assert memo.decision == {"text": f"memo for {data['invoice_id']}"}
    assert memo.cost_usd > 0 and memo.tokens_in > 0
    approval = next(e for e in ledger if e.step == "pay.approval")
    assert (approval.outcome, approval.by) == ("approved", "pat-payables")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT payee_id, amount FROM team_payments").fetchall() == [("ACME", 99.0)]


class NotAMemo:
    pass


@pytest.mark.parametrize(
    "model, says",
    [
        (lambda turn: NotAMemo(), "the scripted model answered NotAMemo at step memo, which asks for Memo"),
        (lambda turn: 1 / 0, "the scripted model raised ZeroDivisionError at step memo"),
        (None, "no scripted model was given to process_test_env, and step memo asks one"),
    ],
    ids=["wrong-type", "raises", "no-model"],
)
async def test_a_scripted_model_at_fault_fails_the_step_once_saying_why(
    time_env, issuer, config, team_package, tmp_path, model, says,  # noqa: F811
):
    """On the suite's shared server and issuer (their people are the `config` fixture's)."""
    (tmp_path / "baton.toml").write_text(TEAM_TOML)
    team = load(tmp_path / "baton.toml")
    team = config.model_copy(update={"plugins": team.plugins, "grants": {**config.grants, **team.grants}})
    async with process_test_env(team, model=model, env=time_env, issuer=issuer, directory=tmp_path) as kit:
        run_id = await kit.baton.start("pay-invoice", invoice())
        outcome = await kit.baton.result(run_id)
        ledger = await kit.baton.ledger(run_id)

    assert outcome.state is RunState.FAILED
    assert says in outcome.reason
    (memo,) = [e for e in ledger if e.step == "memo"]
    assert (memo.outcome, memo.attempts) == ("error", 1)  # a test's mistake is not retried
