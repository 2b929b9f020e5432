"""The step API is typed end to end, as a type checker (mypy, in the test extra) sees it.

A process author's IDE must know what a step returns without running it: a
tool step called with the tool's declaration returns that tool's result type
and takes only its argument type, `rule` keeps its function's parameter and
result types, and an agent's answer is its declared output type. Each probe
below is a module a process author could write; mypy checks it against the
engine and the shipped examples as they are in this tree (and a team's
package outside it), so a signature that loses a type fails here.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from mypy import api as mypy

from tests.conftest import ROOT
from tests.test_plugin import PACKAGE

TYPED = '''
    from typing import assert_type

    from baton_examples.onboarding.kyc import KycResult, match_kyc
    from baton_examples.onboarding.tools import CreditQuery, CreditReport, IdentityCheck, IdentityQuery, OnboardingSystems
    from baton_examples.support_triage.contracts import Resolution, Ticket
    from baton_examples.support_triage.workflow import RETURNS
    from team_payables.tools import Payables, Payment, PaymentReceipt
    from workflows.api import Process


    class Probe(Process):
        async def steps(self, ticket: Ticket) -> None:
            identity = await self.tool("a", OnboardingSystems.verify_identity,
                                       IdentityQuery(applicant_id="A", name="N", document_number="D"))
            assert_type(identity, IdentityCheck)
            credit = await self.tool("b", OnboardingSystems.pull_credit, CreditQuery(applicant_id="A"))
            assert_type(credit, CreditReport)
            assert_type(await self.rule("c", match_kyc, identity, credit), KycResult)
            receipt = await self.tool("d", Payables.pay_invoice, Payment(payee_id="P", amount_eur=1.0))
            assert_type(receipt, PaymentReceipt)
            report = await self.agent("e", RETURNS, goal="resolve", context=ticket)
            assert_type(report.answer, Resolution | None)
'''

MISTYPED = '''
    from baton_examples.onboarding.kyc import match_kyc
    from baton_examples.onboarding.tools import CreditQuery, CreditReport, IdentityCheck, OnboardingSystems
    from workflows.api import Process


    class Probe(Process):
        async def steps(self, identity: IdentityCheck, credit: CreditReport) -> None:
            await self.tool("a", OnboardingSystems.verify_identity, CreditQuery(applicant_id="A"))  # line 8
            await self.rule("b", match_kyc, credit, identity)  # line 9
'''


def check(tmp_path: Path, cache: Path, probe: str) -> tuple[str, int]:
    """mypy's report on `probe`, the engine and examples of this tree and the team's package on its path."""
    team = tmp_path / "team" / "team_payables"
    team.mkdir(parents=True)
    for name, text in PACKAGE.items():
        (team / name).write_text(textwrap.dedent(text).lstrip())
    (tmp_path / "probe.py").write_text(textwrap.dedent(probe).lstrip())
    out, err, status = mypy.run([
        "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(cache),
        "--follow-imports=silent", "--no-error-summary", str(tmp_path / "probe.py"),
    ])
    assert not err, err
    return out, status


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mypy's cache, shared by this file's checks (the suite runs with pytest's own cache off)."""
    return tmp_path_factory.mktemp("mypy-cache")


@pytest.fixture(autouse=True)
def search_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tree's top level, its examples package and the team's package, where mypy looks for imports."""
    monkeypatch.setenv("MYPYPATH", ":".join(map(str, (ROOT, ROOT / "examples", tmp_path / "team"))))


def test_steps_return_their_declared_types(tmp_path: Path, cache: Path):
    out, status = check(tmp_path, cache, TYPED)
    assert status == 0, out


def test_a_tool_or_rule_called_with_the_wrong_types_is_a_type_error(tmp_path: Path, cache: Path):
    out, status = check(tmp_path, cache, MISTYPED)
    errors = sorted(line.split(":")[1] for line in out.splitlines() if ": error:" in line)
    assert status == 1 and errors == ["8", "9", "9"], out
