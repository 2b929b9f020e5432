"""Decisions prove who decided: tokens the run verifies, not names a caller types (issue 16, item 2).

Every attack here got through when `by` was free text: a forged, expired,
misaddressed or unsigned token, a name with no token, a requester approving
their own run. Each must leave the run parked, the update refused, the signal
recorded as refused. And a standard OpenID Connect issuer nobody on the team
wrote (oidc-provider-mock, authlib-based) must work as the organisation's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from oidc_provider_mock import User, run_server_in_thread
from temporalio.client import Client, WorkflowFailureError

from activities import identity
from activities.oidc import IdentitySettings
from client.credentials import Credentials, NoCredential
from client.sdk import Baton, Refused
from tests.conftest import LEADS, REQUESTER, REVIEWERS, SUPPORT_LEADS, running_worker
from tests.test_agents import open_request, rows, with_scripts
from tests.test_facts import ANA, add_orders, refunds, scripts, ticket
from tests.test_onboarding_routes import PEP, wait_for_state
from worker.issuer import AUDIENCE, LocalIssuer
from workflows.decisions import MAX_REFUSALS_RECORDED
from workflows.outcome import RunState


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(issuer: LocalIssuer, now: datetime, **changes) -> dict:
    issued = int(now.timestamp())
    return {"iss": issuer.url, "aud": AUDIENCE, "sub": REVIEWERS[0], "iat": issued, "exp": issued + 600,
            "roles": ["compliance"], **changes}


def forged(issuer: LocalIssuer, now: datetime, attack: str) -> str:
    """A token for a compliance reviewer that must prove nothing, made the way `attack` names."""
    if attack == "unsigned":
        return f"{_b64({'alg': 'none', 'kid': issuer.kid})}.{_b64(_claims(issuer, now))}."
    if attack == "hs256-with-public-key":  # the classic confusion: the published key used as an HMAC secret
        secret = RSAKey.import_key(issuer.jwks()["keys"][0]).as_pem(private=False)
        head = f"{_b64({'alg': 'HS256', 'kid': issuer.kid})}.{_b64(_claims(issuer, now))}"
        sig = base64.urlsafe_b64encode(hmac.new(secret, head.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
        return f"{head}.{sig}"
    if attack == "wrong-key":  # signed by a key of its own, naming the issuer's kid
        key = RSAKey.generate_key(2048, parameters={"kid": issuer.kid})
        return jwt.encode({"alg": "RS256", "kid": issuer.kid}, _claims(issuer, now), key)
    changes = {
        "expired": {"exp": int((now - timedelta(minutes=10)).timestamp()), "iat": int((now - timedelta(hours=1)).timestamp())},
        "wrong-audience": {"aud": "another-app"},
        "wrong-issuer": {"iss": "https://issuer.invalid"},
    }[attack]
    return jwt.encode({"alg": "RS256", "kid": issuer.kid}, _claims(issuer, now, **changes), issuer._key)


ATTACKS = ["unsigned", "hs256-with-public-key", "wrong-key", "expired", "wrong-audience", "wrong-issuer"]
REASONS = {
    "unsigned": "signature does not verify", "hs256-with-public-key": "signature does not verify",
    "wrong-key": "signature does not verify", "expired": "expired", "wrong-audience": "'aud'", "wrong-issuer": "'iss'",
}


async def refused_signals(baton: Baton, run_id: str, count: int) -> list:
    for _ in range(200):
        refused = [e for e in await baton.ledger(run_id) if e.outcome == "refused"]
        if len(refused) >= count:
            return refused
        await asyncio.sleep(0.05)
    raise AssertionError(f"{run_id} never recorded {count} refusal(s)")


@pytest.mark.parametrize("attack", ATTACKS)
async def test_a_token_that_proves_nobody_is_refused_by_update_and_signal(time_env, config, issuer, attack):
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        token = forged(issuer, await time_env.get_current_time(), attack)

        async def attacker(by: str | None) -> str:
            return token

        with pytest.raises(Refused, match=re.escape(REASONS[attack])):
            await Baton(time_env.client, w.task_queue, tokens=attacker).approve(run_id, request_id="compliance_review")
        handle = time_env.client.get_workflow_handle(run_id)
        await handle.signal("approve", {"request_id": "compliance_review", "token": token})
        (refusal,) = await refused_signals(baton, run_id, 1)
        status = await baton.status(run_id)
        await handle.terminate("test over")
    assert REASONS[attack] in refusal.detail and refusal.by is None
    assert token not in refusal.detail
    assert status.state is RunState.AWAITING_APPROVAL and [r.id for r in status.open_requests] == ["compliance_review"]


async def test_a_name_without_a_token_approves_nothing(time_env, config):
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        handle = time_env.client.get_workflow_handle(run_id)
        await handle.signal("approve", {"request_id": "compliance_review", "by": REVIEWERS[0]})  # any --identity
        (refusal,) = await refused_signals(baton, run_id, 1)
        with pytest.raises(NoCredential, match="no credential"):  # `baton approve --by` with no BATON_TOKEN or login
            await Baton(await bare(time_env.client), w.task_queue).approve(run_id, by=REVIEWERS[0])
        status = await baton.status(run_id)
        await handle.terminate("test over")
    assert "no token" in refusal.detail and refusal.by is None
    assert status.state is RunState.AWAITING_APPROVAL


async def test_by_is_only_a_cross_check_of_the_tokens_subject(time_env, config, issuer):
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        alice = issuer.mint(REVIEWERS[1], now=await time_env.get_current_time())

        async def alices(by: str | None) -> str:
            return alice

        as_alice = Baton(time_env.client, w.task_queue, tokens=alices)
        with pytest.raises(Refused, match="is not the token's subject"):
            await as_alice.approve(run_id, by=REVIEWERS[0])
        verdict = await as_alice.approve(run_id, comment="checked")  # no --by: whoever the token proves
        outcome = await baton.result(run_id)
    assert (verdict.by, verdict.token) == (REVIEWERS[1], None)  # the token is not echoed back into history
    assert outcome.result["reviewed_by"] == REVIEWERS[1]


async def test_a_token_without_the_role_asked_is_refused(time_env, config):
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        with pytest.raises(Refused, match=r"for role compliance \(their token lists compliance-lead\)"):
            await baton.approve(run_id, by=LEADS[0])  # a real token, but the lead is asked only on escalation
        status = await baton.status(run_id)
        await time_env.client.get_workflow_handle(run_id).terminate("test over")
    assert status.state is RunState.AWAITING_APPROVAL


async def test_nobody_approves_a_run_they_started(time_env, config, issuer):
    async def carol_starts(by: str | None) -> str:
        return issuer.mint(by or REVIEWERS[0], now=await time_env.get_current_time())

    async with running_worker(time_env.client, config) as w:
        carols = Baton(time_env.client, w.task_queue, tokens=carol_starts)
        run_id = await carols.start("onboarding", PEP)
        await wait_for_state(carols, run_id, RunState.AWAITING_APPROVAL)
        with pytest.raises(Refused, match=f"'{REVIEWERS[0]}' started this run and may not decide"):
            await carols.approve(run_id)
        started_by = (await carols.status(run_id)).started_by
        await carols.approve(run_id, by=REVIEWERS[1])  # another reviewer may
        outcome = await carols.result(run_id)
    assert (started_by.subject, started_by.issuer, started_by.kid) == (REVIEWERS[0], issuer.url, issuer.kid)
    assert outcome.state is RunState.COMPLETED and outcome.result["reviewed_by"] == REVIEWERS[1]


async def bare(client: Client) -> Client:
    """`client` without credentials: a caller with no token at all."""
    config = client.config()
    config["interceptors"] = [i for i in config["interceptors"] if not isinstance(i, Credentials)]
    return Client(**config)


async def test_a_start_without_a_valid_token_is_refused_typed(time_env, config):
    async with running_worker(time_env.client, config) as w:
        anonymous = Baton(await bare(time_env.client), w.task_queue)
        run_id = await anonymous.start("onboarding", PEP)
        with pytest.raises(WorkflowFailureError) as failed:
            await time_env.client.get_workflow_handle(run_id).result()
    cause = failed.value.cause
    assert (cause.type, cause.non_retryable) == ("StartRefused", True)
    assert cause.message == "start refused: no token: a decision needs a signed token from the identity provider"


# ----- an OpenID Connect issuer nobody on the team wrote --------------------------------


def code_flow(base: str, person: str, client_id: str) -> str:
    """An ID token for `person`, through the mock's authorize and token endpoints, as a browser and app would."""
    redirect = "http://127.0.0.1/callback"
    query = {"client_id": client_id, "redirect_uri": redirect, "response_type": "code", "scope": "openid"}
    with httpx.Client(base_url=base) as http:
        answer = http.post("/oauth2/authorize", params=query, data={"sub": person})
        code = parse_qs(urlparse(answer.headers["location"]).query)["code"][0]
        token = http.post("/oauth2/token", data={"grant_type": "authorization_code", "code": code,
                                                  "redirect_uri": redirect}, auth=(client_id, "secret"))
    return token.json()["id_token"]


@pytest.mark.integration
async def test_tokens_of_a_standard_oidc_provider_decide(dev_env, config):
    people = [User(sub=REQUESTER, claims={"roles": []}), User(sub=REVIEWERS[0], claims={"roles": ["compliance"]})]
    with run_server_in_thread(user_claims=people) as server:
        base = f"http://localhost:{server.server_port}"
        config = config.model_copy(update={"identity": IdentitySettings(issuer=base, audience="baton")})

        async def from_the_provider(by: str | None) -> str:
            return await asyncio.to_thread(code_flow, base, by or REQUESTER, "baton")

        async with running_worker(dev_env.client, config) as w:
            baton = Baton(dev_env.client, w.task_queue, tokens=from_the_provider)
            run_id = await baton.start("onboarding", PEP)
            await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
            verdict = await baton.approve(run_id, by=REVIEWERS[0], comment="checked")
            outcome = await baton.result(run_id)
            ledger = await baton.ledger(run_id)
            status = await baton.status(run_id)
    decided = next(e for e in ledger if e.step == "compliance_review")
    assert verdict.by == REVIEWERS[0] and outcome.state is RunState.COMPLETED
    assert (decided.by, decided.issuer) == (REVIEWERS[0], base) and decided.kid
    assert status.started_by.subject == REQUESTER


@pytest.mark.parametrize("lax", [{"approved": "yes"}, {"approved": 1}, {"approved": True, "approved_by": "head-of-compliance"}],
                         ids=["yes-for-true", "one-for-true", "extra-field"])
async def test_a_decision_says_exactly_what_it_says(time_env, config, issuer, lax):
    """A real reviewer's token, with a payload pydantic's lax mode would have read as an approval."""
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        token = issuer.mint(REVIEWERS[0], now=await time_env.get_current_time())
        handle = time_env.client.get_workflow_handle(run_id)
        with pytest.raises(Exception) as refused:
            await handle.execute_update("decide", {"request_id": "compliance_review", "token": token, **lax})
        signal = {k: v for k, v in lax.items() if k != "approved"} or {"approved": lax["approved"]}
        await handle.signal("approve", {"request_id": "compliance_review", "token": token, **signal})
        (refusal,) = await refused_signals(baton, run_id, 1)
        status = await baton.status(run_id)
        await handle.terminate("test over")
    assert "approved" in str(refused.value.__cause__ or refused.value), refused.value
    assert refusal.outcome == "refused" and token not in refusal.detail
    assert status.state is RunState.AWAITING_APPROVAL and [r.id for r in status.open_requests] == ["compliance_review"]


async def test_a_flood_of_refused_signals_is_counted_not_recorded_one_by_one(time_env, config):
    """Where the server takes 10,000 signals a run (Temporal's default), the ledger stays small enough to read."""
    flood = MAX_REFUSALS_RECORDED + 40
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        handle = time_env.client.get_workflow_handle(run_id)
        for i in range(flood):
            await handle.signal("approve", {"request_id": "compliance_review", "by": f"mallory-{i}"})
        for _ in range(200):
            status = await baton.status(run_id)
            if status.refused_signals == flood:
                break
            await asyncio.sleep(0.05)
        ledger = await baton.ledger(run_id)
        await handle.terminate("test over")
    refused = [e for e in ledger if e.outcome == "refused"]
    assert status.refused_signals == flood, status.refused_signals
    assert len(refused) == MAX_REFUSALS_RECORDED, len(refused)
    assert "further refused signals are counted" in refused[-1].detail
    assert status.state is RunState.AWAITING_APPROVAL


async def test_an_agents_refund_is_not_approved_by_signalling_its_child_run(time_env, config, systems, issuer, tmp_path):
    """The child run of an agent asks a support lead; its own run's starter, or a name with no token, cannot answer."""
    lead = SUPPORT_LEADS[0]

    async def lead_starts(by: str | None) -> str:
        return issuer.mint(by or lead, now=await time_env.get_current_time())

    add_orders(systems, config.systems.db, ("O-2911", ANA, 45.0), ("O-2912", ANA, 45.0))
    config = with_scripts(config, tmp_path, scripts({"T-3921": refunds(("O-2911", 45.0), ("O-2912", 45.0))}))
    async with running_worker(time_env.client, config) as w:
        leads = Baton(time_env.client, w.task_queue, tokens=lead_starts)
        run_id = await leads.start("support-triage", ticket("T-3921", ANA))
        child = f"{run_id}/returns_agent"
        request = await open_request(leads, child)
        with pytest.raises(Refused, match=f"'{lead}' started this run and may not decide"):
            await leads.approve(child, request_id=request.id)
        handle = time_env.client.get_workflow_handle(child)
        await handle.signal("approve", {"request_id": request.id, "by": lead})  # a name, no token
        await handle.signal("approve", {"request_id": request.id, "token": await lead_starts(None)})  # the starter's
        refused = await refused_signals(leads, child, 2)
        status = await leads.status(child)
        await handle.terminate("test over")  # the child first: the test server leaves it parked otherwise
        await time_env.client.get_workflow_handle(run_id).terminate("test over")
    assert "no token" in refused[0].detail and "started this run" in refused[1].detail
    assert [r.id for r in status.open_requests] == [request.id]
    assert rows(config.systems.db, "SELECT order_id FROM refunds") == [("O-2911",)]  # the rule's $45, nothing more


async def test_a_refused_update_leaves_a_line_in_the_workers_log(time_env, config, issuer, caplog):
    """Nothing reaches the run's history, but a security team can still see the attempt (and never the token)."""
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        token = forged(issuer, await time_env.get_current_time(), "wrong-key")

        async def attacker(by: str | None) -> str:
            return token

        with caplog.at_level("WARNING", logger="temporalio.workflow"), pytest.raises(Refused):
            await Baton(time_env.client, w.task_queue, tokens=attacker).approve(run_id, request_id="compliance_review")
        await time_env.client.get_workflow_handle(run_id).terminate("test over")
    (line,) = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert line.startswith("decision for compliance_review refused: the token's signature does not verify"), line
    assert token not in caplog.text


async def test_a_decision_by_update_has_its_token_verified_once(time_env, config, monkeypatch):
    """The validator verifies the token in the activation the handler then runs in: the handler takes its
    answer rather than checking the signature again (replay, which runs no validator, verifies in the handler)."""
    verified = []
    decode = identity.jwt.decode
    monkeypatch.setattr(identity.jwt, "decode", lambda *a, **k: verified.append(a[0]) or decode(*a, **k))
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        before = len(verified)
        decided = await baton.approve(run_id, by=REVIEWERS[0], comment="checked")
        during = verified[before:]
        outcome = await baton.result(run_id)
    assert (decided.by, outcome.state) == (REVIEWERS[0], RunState.COMPLETED)
    assert len(during) == 1 and during[0]


@pytest.mark.parametrize("claims", [
    {"exp": "never"}, {"exp": True}, {"exp": float("inf")}, {"exp": float("nan")}, {"exp": None},
    {"nbf": "later"}, {"iat": [1]},
], ids=["exp-text", "exp-bool", "exp-inf", "exp-nan", "exp-missing", "nbf-text", "iat-list"])
def test_a_signed_token_whose_times_are_not_dates_is_refused_without_a_clock_too(issuer, claims):
    """The handler and the signal path check everything but the times (`now` None), and leave those to a
    clock they trust: a time claim that is no date must still be refused there, never waved through."""
    now = datetime.now(UTC)
    token = jwt.encode({"alg": "RS256", "kid": issuer.kid}, {k: v for k, v in _claims(issuer, now, **claims).items()
                                                            if v is not None}, issuer._key)
    trusted = identity.TrustedIssuer(issuer=issuer.url, audience=AUDIENCE, jwks=issuer.jwks())
    assert identity.verify(issuer.mint(REVIEWERS[0], now=now), trusted, None).subject == REVIEWERS[0]
    with pytest.raises(identity.IdentityRefused, match="not valid here"):
        identity.verify(token, trusted, None)
