"""Encrypted payloads (worker/codec.py), through Temporal: what the server keeps is ciphertext.

A client and worker built with a key ring run onboarding on the time-skipping
server; the plain `temporal` CLI then reads the history as anyone who reaches
the namespace would, and finds none of the applicant's personal data. Keys
rotate: a run parked under key A finishes, replays, audits and is reported
(`baton audit`, `baton report`) once the worker moves to [B, A]. A payload
under a key the reader does not have fails in one line naming the key, not as
garbage. Headers are sealed too (the start's bearer token), and a run whose
header was written in clear before still verifies its starter.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.common import HeaderCodecBehavior
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter

from client.audit import audit, export_json
from client.credentials import with_credentials
from client.run_record import ReplayFailed, run_record
from client.sdk import Baton
from activities.identity import STARTER_HEADER
from tests.conftest import REQUESTER, running_worker
from tests.history_payloads import json_objects, payloads
from tests.test_integration import BATON, cli_env, expect_exit, run_cli
from tests.test_report import wait_until_reported
from tests.test_onboarding_routes import CLEAR, PEP, wait_for_state
from worker.binaries import temporal_cli
from worker.codec import KEY_ID, SHOWN, DecryptionError, EncryptionCodec, KeyRing, KeyRingError, configured_keys, ensure_local_key
from worker.codec_server import CodecServer, trusted_issuer
from worker.connection import EncryptionKeyError, configured_converter, sealing_headers
from worker.converter import BatonPayloadConverter, data_converter
from workflows.visibility import Shown
from worker.registration import baton_worker
from workflows.outcome import RunState


def ring(*names: str) -> KeyRing:
    """A ring of fresh random keys, one per name, the first newest (the same name gives the same key)."""
    return KeyRing([(name, KEYS.setdefault(name, secrets.token_bytes(32))) for name in names])


KEYS: dict[str, bytes] = {}


def env_keys(*names: str) -> str:
    """The ring `ring(*names)` as BATON_KEYS spells it, for the CLIs."""
    ring(*names)
    return ",".join(f"{name}:{base64.b64encode(KEYS[name]).decode()}" for name in names)


def encrypted(client: Client, keys: KeyRing) -> Client:
    """`client` (its credentials kept) with Baton's converter encrypting under `keys`, headers too."""
    config = client.config()
    config["data_converter"] = data_converter(keys)
    return sealing_headers(Client(**config))


def personal(applicant: dict) -> list[str]:
    return [applicant["name"], applicant["email"], applicant["document_number"]]


async def workflow_show(client: Client, run_id: str, *flags: str) -> str:
    """`temporal workflow show --output json` on the plain CLI, as anyone with namespace access runs it."""
    proc = await asyncio.create_subprocess_exec(
        str(temporal_cli()), "workflow", "show", "--workflow-id", run_id, "--output", "json", *flags,
        "--address", client.service_client.config.target_host, "--namespace", client.namespace,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


def key_ids(history_json: str) -> set[str]:
    """Every encryption-key-id in a history as the CLI prints it (metadata values are base64)."""
    return {base64.b64decode(node["metadata"][KEY_ID]).decode() for node in json_objects(json.loads(history_json))
            if isinstance(node.get("metadata"), dict) and KEY_ID in node["metadata"]}


async def test_a_finished_run_shows_no_personal_data_to_the_plain_cli(time_env, config):
    client = encrypted(time_env.client, ring("a"))
    async with running_worker(client, config) as w:
        baton = Baton(client, w.task_queue)
        run_id = await baton.start("onboarding", CLEAR)
        outcome = await baton.result(run_id)
    assert outcome.state is RunState.COMPLETED

    shown = await workflow_show(time_env.client, run_id)
    assert key_ids(shown) == {"a"}  # every payload sealed, under the newest key
    for value in personal(CLEAR):
        assert value not in shown, value
        assert base64.b64encode(value.encode()).decode()[:-4] not in shown, value  # nor as base64 of the data
    # The control: read in clear, the same run would have shown them (the CLI prints payload data as base64).
    record = await run_record(client, run_id)
    assert record.input["name"] == CLEAR["name"] and record.state == "completed"


def summaries(history_json: str) -> list[dict]:
    """Every summary payload in a history as the CLI prints it: the run's, its steps', its timers'."""
    return [node["userMetadata"]["summary"] for node in json_objects(json.loads(history_json))
            if isinstance(node.get("userMetadata"), dict) and "summary" in node["userMetadata"]]


async def test_what_the_web_ui_shows_everyone_stays_readable_while_the_data_is_sealed(time_env, config):
    """Summaries and current details tell an operator what a run does without the keys, and hold no personal data."""
    client = encrypted(time_env.client, ring("a"))
    async with running_worker(client, config) as w:
        baton = Baton(client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        shown = await workflow_show(time_env.client, run_id)
        details = await temporal_text(time_env.client, "workflow", "metadata", "--workflow-id", run_id)
        await client.get_workflow_handle(run_id).terminate("test over")

    texts = []
    for summary in summaries(shown):
        assert base64.b64decode(summary["metadata"]["encoding"]) == b"json/plain", summary
        assert set(summary["metadata"]) == {"encoding"}, summary  # no mark left: the CLI prints it as text
        texts.append(json.loads(base64.b64decode(summary["data"])))
    assert any(t.startswith("onboarding · A") for t in texts), texts  # the run's, escaped markdown
    assert any(t.startswith("validate_identity · verify_identity") for t in texts), texts
    assert "compliance_review" in details and "compliance" in details, details  # what it waits for, and of whom
    assert key_ids(shown) == {"a"}  # ... while its input, prompts and results are sealed
    for value in personal(PEP):
        assert value not in shown and value not in details, value
        assert not any(value in t for t in texts), value


async def temporal_text(client: Client, *args: str) -> str:
    """The plain `temporal` CLI's text output, with no codec: what anyone with namespace access reads."""
    proc = await asyncio.create_subprocess_exec(
        str(temporal_cli()), *args, "--address", client.service_client.config.target_host,
        "--namespace", client.namespace, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


@settings(derandomize=True, database=None)
@given(st.text())
def test_a_summary_shown_in_clear_is_the_json_converter_s_payload_marked_shown(text: str) -> None:
    """Summaries are built by hand for speed (worker/converter.py _json_text): the same bytes as the JSON converter's."""
    shown = BatonPayloadConverter().to_payloads([Shown(text)])[0]
    plain = PydanticJSONPlainPayloadConverter().to_payload(text)
    assert shown.data == plain.data
    assert dict(shown.metadata) == {**plain.metadata, SHOWN: b"1"}


async def test_a_run_parked_under_key_a_finishes_replays_and_audits_after_rotation_to_b_a(dev_env, config):
    """On the real dev server, where a run parked by one worker goes on with the next, as in production."""
    under_a = encrypted(dev_env.client, ring("a"))
    async with running_worker(under_a, config) as w:
        queue = w.task_queue
        run_id = await Baton(under_a, queue).start("onboarding", PEP)
        await wait_for_state(Baton(under_a, queue), run_id, RunState.AWAITING_APPROVAL)

    rotated = encrypted(dev_env.client, ring("b", "a"))
    async with baton_worker(rotated, config, queue=queue) as w:  # the same queue: the run's next task
        baton = Baton(rotated, w.task_queue)
        await baton.approve(run_id, by="carol", comment="PEP checked")
        outcome = await baton.result(run_id)
    assert outcome.state is RunState.COMPLETED

    assert key_ids(await workflow_show(dev_env.client, run_id)) == {"a", "b"}  # old payloads kept, new under b
    record = await run_record(rotated, run_id)  # replays the whole history, a's payloads and b's
    assert (record.state, record.input["name"]) == ("completed", PEP["name"])
    data = audit(record)
    assert data["run"]["state"] == "completed"
    assert any(a["by"] == "carol" for a in data["approvals"])

    with pytest.raises(ReplayFailed, match="key id 'a'.*does not have"):
        await run_record(encrypted(dev_env.client, ring("b")), run_id)  # a reader that dropped key a too soon

    # `baton report` and `baton audit` as an operator runs them, the rotated ring in BATON_KEYS.
    reported = await wait_until_reported(rotated, queue, 1)
    assert reported["unreadable"] == [] and reported["processes"][0]["by_state"] == {"completed": 1}, reported
    env = cli_env(dev_env.client.service_client.config.target_host, queue) | {"BATON_KEYS": env_keys("b", "a")}
    from_cli = await run_cli(BATON, "report", "--json", env=env)
    expect_exit(from_cli, 0)
    assert {p["process"]: p["runs"] for p in from_cli.json()["processes"]} == {"onboarding": 1}
    assert from_cli.json()["unreadable"] == []
    audited = await run_cli(BATON, "audit", run_id, "--json", env=env)
    expect_exit(audited, 0)
    assert audited.json() == json.loads(export_json(data))
    too_soon = await run_cli(BATON, "report", "--json", env=env | {"BATON_KEYS": env_keys("b")})
    expect_exit(too_soon, 0)
    assert [u["run_id"] for u in too_soon.json()["unreadable"]] == [run_id]
    assert "key id 'a'" in too_soon.json()["unreadable"][0]["error"]


async def test_a_payload_under_an_unknown_key_or_altered_fails_clearly():
    sealed = await EncryptionCodec(ring("a")).encode([Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')])
    assert sealed[0].metadata[KEY_ID] == b"a" and b'"x"' not in sealed[0].data
    with pytest.raises(DecryptionError, match="key id 'a', which this process does not have"):
        await EncryptionCodec(ring("c")).decode(sealed)
    altered = Payload()
    altered.CopyFrom(sealed[0])
    altered.data = altered.data[:-1] + bytes([altered.data[-1] ^ 1])
    with pytest.raises(DecryptionError, match="fails authentication"):
        await EncryptionCodec(ring("a")).decode([altered])
    assert (await EncryptionCodec(ring("b", "a")).decode(sealed))[0].data == b'"x"'


def test_keys_come_from_the_environment_and_bad_ones_are_refused_in_one_line(tmp_path):
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    assert configured_keys({"BATON_KEYS": f"new:{key},old:{key}"}, tmp_path / "none").ids == ["new", "old"]
    assert configured_keys({}, tmp_path / "none") is None
    with pytest.raises(KeyRingError, match="'short' is 3 bytes"):
        configured_keys({"BATON_KEYS": "short:YWJj"}, tmp_path / "none")
    loose = tmp_path / "keys"
    loose.write_text(f"k1:{key}\n")
    loose.chmod(0o644)
    with pytest.raises(KeyRingError, match="readable by others"):
        configured_keys({"BATON_KEY_FILE": str(loose)}, tmp_path / "none")
    loose.chmod(0o600)
    assert configured_keys({"BATON_KEY_FILE": str(loose)}, tmp_path / "none").ids == ["k1"]

    local = ensure_local_key(tmp_path / ".baton" / "keys")  # what `baton dev` makes on first use
    assert local.stat().st_mode & 0o777 == 0o600
    made = configured_keys({}, local)
    assert len(made.ids) == 1 and ensure_local_key(local) == local and configured_keys({}, local).ids == made.ids
    assert configured_keys({"BATON_ENCRYPTION": "off"}, local) is None  # said explicitly: in clear


async def test_encryption_off_is_said_runs_in_clear_and_the_worker_warns(time_env, config, monkeypatch, caplog,
                                                                          tmp_path):
    """The suite runs encrypted (tests/conftest.py); this is the one run in clear, as BATON_ENCRYPTION=off asks."""
    monkeypatch.delenv("BATON_KEYS")
    monkeypatch.chdir(tmp_path)  # no local stack's .baton/keys here either
    with pytest.raises(EncryptionKeyError, match="no encryption key: set BATON_KEYS"):
        configured_converter()  # no key and nobody said: refused
    monkeypatch.setenv("BATON_ENCRYPTION", "off")
    config_off = time_env.client.config()
    config_off["data_converter"] = configured_converter()
    client = Client(**config_off)
    caplog.set_level(logging.WARNING, logger="baton")
    async with running_worker(client, config) as w:
        assert w.client.config()["header_codec_behavior"] is HeaderCodecBehavior.NO_CODEC  # no codec to seal with
        baton = Baton(client, w.task_queue)
        run_id = await baton.start("onboarding", CLEAR)
        assert (await baton.result(run_id)).state is RunState.COMPLETED
    assert [r.getMessage() for r in caplog.records if "NOT encrypted" in r.getMessage()], caplog.text
    history = await client.get_workflow_handle(run_id).fetch_history()
    assert CLEAR["email"] in history.events[0].workflow_execution_started_event_attributes.input.payloads[0].data.decode()


# ----- headers: a start carries its starter's bearer token (client/credentials.py) ---------------


def minting(time_env, issuer, into: list[str]):
    """A token provider that mints at the server's time, as the suite's does, and keeps every token it gave."""
    async def tokens(by: str | None) -> str:
        into.append(issuer.mint(by or REQUESTER, now=await time_env.get_current_time()))
        return into[-1]
    return tokens


def stored(history) -> list[str]:
    """A history as anyone who reaches the namespace reads it: its JSON, and every payload's bytes as stored."""
    return [history.to_json(), *(p.data.decode(errors="replace") for e in history.events for p in payloads(e))]


async def started_and_decided(baton: Baton, run_id: str) -> None:
    """A PEP's run parks for compliance; carol approves with her token; it completes."""
    await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
    await baton.approve(run_id, by="carol", comment="PEP checked")
    assert (await baton.result(run_id)).state is RunState.COMPLETED


async def test_the_start_token_is_sealed_in_the_history_and_still_verifies(time_env, config, issuer):
    tokens: list[str] = []
    client = encrypted(time_env.client, ring("a"))
    async with running_worker(client, config) as w:
        baton = Baton(client, w.task_queue, tokens=minting(time_env, issuer, tokens))
        run_id = await baton.start("onboarding", PEP)
        await started_and_decided(baton, run_id)
        assert (await baton.status(run_id)).started_by.subject == REQUESTER  # the worker opened the header

    history = await client.get_workflow_handle(run_id).fetch_history()
    header = history.events[0].workflow_execution_started_event_attributes.header.fields[STARTER_HEADER]
    assert header.metadata[KEY_ID] and header.metadata["encoding"] == b"binary/encrypted"
    assert len(tokens) == 2  # the start's and carol's decision's
    assert [t for t in tokens for text in stored(history) if t in text or t.split(".")[1] in text] == []
    record = await run_record(client, run_id)  # Baton's replayer opens the header as the worker did
    assert audit(record)["run"]["started_by"]["subject"] == REQUESTER


async def test_a_run_started_with_its_header_in_clear_still_verifies_finishes_and_audits(time_env, config, issuer):
    """Runs started before headers were sealed: their token is in clear, and a worker that seals reads it."""
    tokens: list[str] = []
    client = encrypted(time_env.client, ring("a"))
    config_before = client.config()
    config_before["header_codec_behavior"] = HeaderCodecBehavior.NO_CODEC  # a client of before the change
    before = with_credentials(Client(**config_before), minting(time_env, issuer, tokens))
    async with running_worker(before, config) as w:
        assert w.client.config()["header_codec_behavior"] is HeaderCodecBehavior.CODEC  # sealed by baton_worker
        baton = Baton(client, w.task_queue, tokens=minting(time_env, issuer, tokens))
        old = Baton(before, w.task_queue)
        old.client = before  # Baton would seal its headers today
        run_id = await old.start("onboarding", PEP)
        await started_and_decided(baton, run_id)
        assert (await baton.status(run_id)).started_by.subject == REQUESTER

    history = await client.get_workflow_handle(run_id).fetch_history()
    header = history.events[0].workflow_execution_started_event_attributes.header.fields[STARTER_HEADER]
    assert header.metadata["encoding"] == b"json/plain" and tokens[0] in header.data.decode()  # in clear, as then
    record = await run_record(client, run_id)
    assert audit(record)["run"]["started_by"]["subject"] == REQUESTER


# ----- the codec server (worker/codec_server.py) --------------------------------------------

UI = "http://localhost:8233"


async def test_the_codec_server_decodes_for_a_verified_caller_only(time_env, config, issuer):
    keys = ring("a")
    client = encrypted(time_env.client, keys)
    async with running_worker(client, config) as w:
        baton = Baton(client, w.task_queue)
        run_id = await baton.start("onboarding", CLEAR)
        await baton.result(run_id)

    with CodecServer(keys, await trusted_issuer(issuer.settings()), origins=[UI]) as server:
        token = issuer.mint("carol")
        decoded = await workflow_show(client, run_id, "--codec-endpoint", server.url, "--codec-auth", f"Bearer {token}")
        assert key_ids(decoded) == set()  # every payload opened
        start = json.loads(decoded)["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
        assert json.loads(base64.b64decode(start["data"])) | {"budget": None} == CLEAR | {"budget": None}

        async with httpx.AsyncClient(base_url=server.url) as http:
            sealed = json.loads(await workflow_show(client, run_id))["events"][0][
                "workflowExecutionStartedEventAttributes"]["input"]
            refused = await http.post("/decode", json=sealed)
            assert refused.status_code == 401 and "no credentials" in refused.json()["message"]
            forged = await http.post("/decode", json=sealed, headers={"Authorization": f"Bearer {token[:-4]}AAAA"})
            assert forged.status_code == 401 and "does not verify" in forged.json()["message"]
            opened = await http.post("/decode", json=sealed, headers={"Authorization": f"Bearer {token}"})
            assert opened.status_code == 200
            assert CLEAR["email"] in base64.b64decode(opened.json()["payloads"][0]["data"]).decode()

            preflight = await http.options("/decode", headers={"Origin": UI, "Access-Control-Request-Method": "POST"})
            assert preflight.headers["access-control-allow-origin"] == UI
            assert "Authorization" in preflight.headers["access-control-allow-headers"]
            other = await http.options("/decode", headers={"Origin": "http://evil.example"})
            assert "access-control-allow-origin" not in other.headers

    with CodecServer(keys, await trusted_issuer(issuer.settings()), origins=[UI], role="compliance-lead") as server:
        no_role = await httpx.AsyncClient(base_url=server.url).post(
            "/decode", json=sealed, headers={"Authorization": f"Bearer {token}"})
        assert no_role.status_code == 401 and "compliance-lead" in no_role.json()["message"]
