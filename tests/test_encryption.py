"""Encrypted payloads (client/codec.py), through Temporal: what the server keeps is ciphertext.

A client and worker built with a key ring run onboarding on the time-skipping
server; the plain `temporal` CLI then reads the history as anyone who reaches
the namespace would, and finds none of the applicant's personal data. Keys
rotate: a run parked under key A finishes, replays and audits once the worker
moves to [B, A]. A payload under a key the reader does not have fails in one
line naming the key, not as garbage.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets

import httpx
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from client.audit import audit
from client.codec import KEY_ID, DecryptionError, EncryptionCodec, KeyRing, KeyRingError, configured_keys, ensure_local_key
from client.converter import data_converter
from client.run_record import ReplayFailed, run_record
from client.sdk import Baton
from tests.conftest import running_worker
from tests.test_onboarding_routes import CLEAR, PEP, wait_for_state
from worker.binaries import temporal_cli
from worker.codec_server import CodecServer, trusted_issuer
from worker.registration import baton_worker
from workflows.outcome import RunState


def ring(*names: str) -> KeyRing:
    """A ring of fresh random keys, one per name, the first newest (the same name gives the same key)."""
    return KeyRing([(name, KEYS.setdefault(name, secrets.token_bytes(32))) for name in names])


KEYS: dict[str, bytes] = {}


def encrypted(client: Client, keys: KeyRing) -> Client:
    """`client` (its credentials kept) with Baton's converter encrypting under `keys`."""
    config = client.config()
    config["data_converter"] = data_converter(keys)
    return Client(**config)


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
    found: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            meta = node.get("metadata")
            if isinstance(meta, dict) and KEY_ID in meta:
                found.add(base64.b64decode(meta[KEY_ID]).decode())
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(history_json))
    return found


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
