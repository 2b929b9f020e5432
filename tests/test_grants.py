"""Grants: which tools a process or agent may call, within which bounds, and how baton.toml is checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from activities.tools.grants import Bound, Grant
from worker.config import BatonConfig, ConfigError, load, shipped_grants

ROOT = Path(__file__).resolve().parent.parent

ROLES = """
[roles.compliance]
people = ["ana"]
[roles.compliance-lead]
people = ["kim"]
[roles.support-lead]
people = ["sol"]
[roles.sales-manager]
people = ["max"]
"""


@pytest.fixture(autouse=True)
def no_env_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATON_CONFIG", raising=False)


# ----- Bound ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bound", "value", "problem"),
    [
        (Bound(max=500), 500, None),
        (Bound(max=500), 500.01, "above the granted maximum 500"),
        (Bound(min=1), 1, None),
        (Bound(min=1), 0.5, "below the granted minimum 1"),
        (Bound(min=1, max=10), "5", "is not a number"),
        (Bound(max=10), None, "is not a number"),
        (Bound(one_of=["low", "normal"]), "normal", None),
        (Bound(one_of=["low", "normal"]), "urgent", "not one of the granted values"),
        (Bound(domains=["northwind.example"]), "maria@northwind.example", None),
        (Bound(domains=["northwind.example"]), "Maria@NorthWind.Example", None),
        (Bound(domains=["NorthWind.example"]), "maria@northwind.example", None),
        (Bound(domains=["northwind.example"]), "mallory@evil.example", "not at a granted domain"),
        (Bound(domains=["northwind.example"]), "mallory@northwind.example.evil.example", "not at a granted domain"),
        (Bound(domains=["northwind.example"]), "northwind.example", "not at a granted domain"),
    ],
)
def test_a_bound_checks_one_value(bound: Bound, value, problem: str | None) -> None:
    found = bound.problem("field", value)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found and found.startswith(f"field={value!r}")


def test_a_bound_checks_every_item_of_a_list() -> None:
    bound = Bound(domains=["northwind.example"])
    assert bound.problem("to", ["a@northwind.example", "b@northwind.example"]) is None
    found = bound.problem("to", ["a@northwind.example", "m@evil.example"])
    assert found is not None and "'m@evil.example'" in found
    assert Bound(max=10).problem("amounts", [1, 2, 11]) == "amounts=11 is above the granted maximum 10"


def test_a_bound_refuses_unknown_limits() -> None:
    with pytest.raises(ValueError, match="maximum"):
        Bound.model_validate({"maximum": 5})


# ----- Grant.refusal --------------------------------------------------------------------

RETURNS = Grant(tools=["lookup_order", "issue_refund"], bounds={"issue_refund": {"amount_usd": Bound(max=500)}})


def test_a_granted_call_within_its_bounds_is_allowed() -> None:
    assert RETURNS.refusal("st/returns", "issue_refund", {"order_id": "O-1", "amount_usd": 35}) is None
    assert RETURNS.refusal("st/returns", "lookup_order", {"order_id": "O-1"}) is None


def test_an_ungranted_tool_is_refused_naming_the_grantee_and_its_tools() -> None:
    found = RETURNS.refusal("st/returns", "send_email", {"to": "x@example.com"})
    assert found == "send_email is not granted to st/returns (granted: lookup_order, issue_refund)"
    assert Grant().refusal("p", "lookup_order", {}) == "lookup_order is not granted to p (granted: none)"


def test_an_argument_out_of_bounds_is_refused_naming_tool_argument_and_grantee() -> None:
    found = RETURNS.refusal("st/returns", "issue_refund", {"order_id": "O-1", "amount_usd": 5000})
    assert found is not None
    assert found.startswith("issue_refund: amount_usd=5000") and "maximum 500" in found and "st/returns" in found


def test_a_missing_bounded_argument_is_refused() -> None:
    assert "not a number" in RETURNS.refusal("st/returns", "issue_refund", {"order_id": "O-1"})


# ----- BatonConfig.bad_grants -------------------------------------------------------------


def test_the_shipped_grants_have_no_problems() -> None:
    assert BatonConfig().bad_grants() == []
    assert BatonConfig(grants=shipped_grants()).bad_grants() == []


@pytest.mark.parametrize(
    ("grantee", "grant", "problem"),
    [
        ("nope", Grant(tools=["lookup_order"]), "grants.nope: no such process or agent"),
        ("support-triage/ghost", Grant(tools=["search_kb"]), "grants.support-triage/ghost: no such process or agent"),
        ("onboarding/returns", Grant(tools=["search_kb"]), "grants.onboarding/returns: no such process or agent"),
        ("onboarding", Grant(tools=["drop_tables"]), "grants.onboarding.tools: no tool 'drop_tables'"),
        (
            "onboarding",
            Grant(tools=["send_email"], bounds={"issue_refund": {"amount_usd": Bound(max=1)}}),
            "grants.onboarding.bounds.issue_refund: bounds a tool that is not granted",
        ),
        (
            "support-triage/returns",
            Grant(tools=["issue_refund"], bounds={"issue_refund": {"amount": Bound(max=500)}}),
            "grants.support-triage/returns.bounds.issue_refund.amount: issue_refund has no argument 'amount'",
        ),
        (
            "support-triage/technical",
            Grant(tools=["search_kb", "issue_refund"]),
            "grants.support-triage/technical.tools: issue_refund is irreversible and the agent declares no approval for it",
        ),
    ],
    ids=["unknown-grantee", "unknown-agent", "agent-of-another-process", "unknown-tool", "bound-on-ungranted-tool",
         "unknown-argument", "irreversible-without-approval"],
)
def test_a_bad_grant_is_named(grantee: str, grant: Grant, problem: str) -> None:
    found = BatonConfig(grants={**shipped_grants(), grantee: grant}).bad_grants()
    assert len(found) == 1 and found[0].startswith(problem), found


def test_the_known_grantees_are_listed_for_a_typo() -> None:
    (found,) = BatonConfig(grants={"support-triage/retruns": Grant()}).bad_grants()
    assert "support-triage/returns" in found and "sales-followup" in found


def test_a_process_may_hold_an_irreversible_tool_its_steps_approve() -> None:
    assert BatonConfig(grants={"sales-followup": Grant(tools=["send_email"])}).bad_grants() == []


# ----- load() ------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "baton.toml"
    path.write_text(ROLES + text)
    return path


def refused_in_one_line(tmp_path: Path, toml: str, named: str) -> None:
    """Loading `toml` stops with one ConfigError line that begins with the file and `named`."""
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {named}"), message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[grants."support-triage/ghost"]\ntools = ["search_kb"]\n', "grants.support-triage/ghost: no such process"),
        ('[grants.onboarding]\ntools = ["drop_tables"]\n', "grants.onboarding.tools: no tool 'drop_tables'"),
        (
            '[grants."support-triage/technical"]\ntools = ["search_kb", "issue_refund"]\n',
            "grants.support-triage/technical.tools: issue_refund is irreversible",
        ),
        (
            '[grants."support-triage/returns"]\ntools = ["issue_refund"]\n'
            "bounds = { issue_refund = { amount = { max = 500 } } }\n",
            "grants.support-triage/returns.bounds.issue_refund.amount: issue_refund has no argument 'amount'",
        ),
        (
            '[grants."support-triage/returns"]\ntools = ["issue_refund"]\n'
            "bounds = { issue_refund = { amount_usd = { maximum = 500 } } }\n",
            "grants.support-triage/returns.bounds.issue_refund.amount_usd.maximum:",
        ),
        ('[grants.onboarding]\ntool = ["send_email"]\n', "grants.onboarding.tool:"),
    ],
    ids=["unknown-agent", "unknown-tool", "irreversible-without-approval", "unknown-argument", "unknown-limit", "typo"],
)
def test_load_refuses_a_bad_grant_naming_it(tmp_path: Path, toml: str, named: str) -> None:
    refused_in_one_line(tmp_path, toml, named)


def test_load_reads_grants_from_the_file(tmp_path: Path) -> None:
    config = load(write(tmp_path, '[grants."support-triage/billing"]\ntools = ["lookup_invoices"]\n'))
    assert config.grants == {"support-triage/billing": Grant(tools=["lookup_invoices"])}


def test_the_shipped_baton_toml_loads_with_the_shipped_grants(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # its paths (offline scripts) are relative to the repository root
    config = load(Path("baton.toml"))
    assert config.bad_grants() == [] and config.missing_roles() == []
    # The entry point's examples get the demo's grants; the articles' package (named in [plugins]) only the file's.
    articles = ("prior-authorization", "deposition-research")
    assert {k: g for k, g in config.grants.items() if not k.startswith(articles)} == shipped_grants()
    assert sorted(k for k in config.grants if k.startswith(articles)) == [
        "deposition-research/researcher", "prior-authorization"]


# ----- bounds that would enforce nothing are refused at start (fail closed) ------------------

RETURNS_TOML = '[grants."support-triage/returns"]\ntools = ["lookup_order", "issue_refund"]\n'
FOLLOWUP_TOML = '[grants.sales-followup]\ntools = ["read_crm_notes", "send_email", "update_crm_deal"]\n'
AMOUNT = "grants.support-triage/returns.bounds.issue_refund.amount_usd"


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        (RETURNS_TOML + "bounds = { issue_refund = { amount_usd = { max = nan } } }\n", f"{AMOUNT}.max: "),
        (RETURNS_TOML + "bounds = { issue_refund = { amount_usd = { max = inf } } }\n", f"{AMOUNT}.max: "),
        (RETURNS_TOML + "bounds = { issue_refund = { amount_usd = { min = -inf } } }\n", f"{AMOUNT}.min: "),
        (RETURNS_TOML + "bounds = { issue_refund = { amount_usd = {} } }\n", f"{AMOUNT}: sets no limit"),
        (RETURNS_TOML + "bounds = { issue_refund = { amount_usd = { min = 10, max = 5 } } }\n",
         f"{AMOUNT}: min 10 is above max 5"),
        (RETURNS_TOML + "bounds = { issue_refund = { reason = { one_of = [] } } }\n",
         "grants.support-triage/returns.bounds.issue_refund.reason.one_of: "),
        (FOLLOWUP_TOML + "bounds = { send_email = { to = { domains = [] } } }\n",
         "grants.sales-followup.bounds.send_email.to.domains: "),
        (FOLLOWUP_TOML + 'bounds = { send_email = { to = { domains = [""] } } }\n',
         "grants.sales-followup.bounds.send_email.to.domains.0: "),
        (FOLLOWUP_TOML + "bounds = { send_email = { to = { max = 5 } } }\n",
         "grants.sales-followup.bounds.send_email.to: min and max bound numbers; to is not one"),
        (FOLLOWUP_TOML + 'bounds = { send_email = { subject = { domains = ["northwind.example"] } } }\n',
         "grants.sales-followup.bounds.send_email.subject: domains bound e-mail addresses; subject is not one"),
        (RETURNS_TOML + 'bounds = { issue_refund = { amount_usd = { one_of = ["5"] } } }\n',
         f"{AMOUNT}: one_of bounds text; amount_usd is not text"),
        (FOLLOWUP_TOML + "bounds = { update_crm_deal = { meeting_at = { min = 0 } } }\n",
         "grants.sales-followup.bounds.update_crm_deal.meeting_at: min and max bound numbers"),
    ],
    ids=["nan", "inf", "minus-inf", "empty-table", "min-above-max", "empty-one_of", "empty-domains", "blank-domain",
         "number-bound-on-an-address", "domains-on-a-subject", "one_of-on-a-number", "number-bound-on-a-datetime"],
)
def test_load_refuses_a_bound_that_would_enforce_nothing(tmp_path: Path, toml: str, named: str) -> None:
    refused_in_one_line(tmp_path, toml, named)


def test_every_kind_of_bound_loads_on_an_argument_it_can_constrain(tmp_path: Path) -> None:
    billing = (
        '[grants."support-triage/billing"]\ntools = ["lookup_invoices", "open_ticket"]\n'
        'bounds = { open_ticket = { severity = { one_of = ["low"] }, customer_email = { domains = ["a.example"] } } }\n'
    )
    config = load(write(tmp_path, billing + RETURNS_TOML + "bounds = { issue_refund = { amount_usd = { min = 1, max = 1 } } }\n"))
    assert config.grants["support-triage/returns"].bounds["issue_refund"]["amount_usd"] == Bound(min=1, max=1)
    assert config.grants["support-triage/billing"].bounds["open_ticket"]["severity"] == Bound(one_of=["low"])
