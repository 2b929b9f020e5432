"""kill -9 the worker while an MCP payment is in flight: it is neither lost silently nor sent twice.

The real dev server on a SQLite file, the real worker as a process of its own
(tests/crash_worker.py) running the test process as a package named in
baton.toml, and the official SDK's server over streamable HTTP, holding the
payment after it journaled it (tests/mcp_server.py --hold). The worker dies
mid-call; the next worker finds the step's attempt timed out, records the
outcome as unknown and asks a person, and the payment is not sent again.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import pytest

from client.sdk import Baton
from tests.mcp_process import McpCall
from tests.stack_process import ServerOnFile, WorkerProcess, World, open_request, outcome_of
from tests.stack_process import free_port
from tests.test_mcp_once import calls
from tests.test_mcp_tools import SERVER, wait_for_port
from worker.config import load
from workflows.outcome import RunState

pytestmark = pytest.mark.integration


async def test_a_payment_killed_mid_call_is_recorded_unknown_and_not_sent_again(tmp_path):
    journal, hold = tmp_path / "journal.jsonl", tmp_path / "hold"
    hold.touch()
    port = free_port()
    mcp = subprocess.Popen([sys.executable, str(SERVER), "http", str(port), "--journal", str(journal), "--hold", str(hold)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = ServerOnFile(tmp_path / "temporal.db")
    workers: list[WorkerProcess] = []
    try:
        wait_for_port(mcp, port)
        await server.start()
        world = World.create(tmp_path / "world", [])
        with world.config.open("a") as f:
            f.write(f'\n[plugins]\npackages = ["tests.mcp_process"]\n\n'
                    f'[mcp.servers.pay]\nurl = "http://127.0.0.1:{port}/mcp"\n\n'
                    '[grants.test-mcp-call]\ntools = ["pay.post_payment"]\n')
        queue = f"mcp-kill-{uuid.uuid4().hex[:8]}"
        client = await server.client()
        baton = Baton(client, queue, tokens=world.tokens)

        async def worker() -> WorkerProcess:
            w = WorkerProcess(server, world, queue).start()
            workers.append(w)
            await w.ready()
            return w

        first = await worker()
        call = McpCall(tool="pay.post_payment", args={"account": "ACC-7", "amount_usd": 900.0},
                       approve_role="compliance", unknown_role="compliance-lead", timeout_s=5)
        load(world.config)  # this test's client knows the process as the worker does: from baton.toml's [plugins]
        run_id = await baton.start("test-mcp-call", call)
        await open_request(baton, run_id)
        await baton.approve(run_id, by="carol", request_id="ask.approval")
        for _ in range(600):  # the payment reached the server, which holds it: the worker is mid-call
            if calls(journal, "post_payment"):
                break
            await asyncio.sleep(0.05)
        first.kill()
        await worker()

        request = await open_request(baton, run_id, timeout=120)
        assert request.id == "ask.unknown", request
        assert request.roles == ["compliance-lead"]
        (unknown,) = [e for e in await baton.ledger(run_id) if e.outcome == "unknown"]
        assert unknown.step == "ask" and "timeout" in unknown.detail
        hold.unlink()  # the held call now finishes on the server, answering a worker that is gone
        await asyncio.sleep(1)
        assert len(calls(journal, "post_payment")) == 1  # not repeated on its own

        await baton.reject(run_id, by="erin", request_id="ask.unknown", comment="ACC-7 shows the payment: posted")
        outcome = await outcome_of(client, run_id, 60)
        assert outcome.state is RunState.REJECTED, outcome.reason
        assert len(calls(journal, "post_payment")) == 1
        audit = json.dumps([e.model_dump(mode="json") for e in await baton.ledger(run_id)])
        assert "unknown" in audit and "ACC-7 shows the payment" in audit
    finally:
        for w in workers:
            w.kill()
        await asyncio.to_thread(server.stop)
        mcp.terminate()
        mcp.wait(timeout=10)
