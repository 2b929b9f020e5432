"""A Baton stack made of real processes, for crash, restart and chaos tests.

- `ServerOnFile`: Temporal's dev server (worker/devserver.py) on a SQLite file and free ports,
  which can be stopped (SIGTERM, or kill -9) and started again on the same file and ports.
- `WorkerProcess`: `python -m tests.crash_worker` (the real Baton worker with pause points) as a
  subprocess in its own process group, killed with SIGKILL to the whole group.
- `World`: the files a worker reads (baton.toml, a seed of the systems of record, offline
  scripts), with one order, deal and e-mail address per run, so every run's effects can be
  counted on their own: a CRM record or e-mail by the applicant's address, a refund by its order,
  a follow-up by its deal. Counts are by business content, not by idempotency key, so an effect
  written twice under two keys is seen as two.

Nothing here changes the product: it is the product started the way a user starts it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client, RPCTimeoutOrCancelledError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from baton_examples.systems import SystemsOfRecord
from client.sdk import Baton, UnknownRun
from worker.connection import connect
from worker.devserver import DevServer
from worker.issuer import AUDIENCE, LocalIssuer
from workflows.outcome import RunOutcome, RunState

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "systems.json"
SCRIPTS = ROOT / "examples" / "offline-scripts.json"

# Who decides (the same people as tests/conftest.py's `config` fixture).
COMPLIANCE = "carol"
SUPPORT_LEAD = "sam-support"
SALES_MANAGER = "mia-sales"
ROLES = {
    "compliance": ["carol", "alice", "dana"],
    "compliance-lead": ["erin"],
    "support-lead": [SUPPORT_LEAD],
    "sales-manager": [SALES_MANAGER],
}


def free_port() -> int:
    """A port nobody listens on, which the kernel will not hand to the next `bind(0)` for a while.

    A port only bound and closed can be given to the next `bind(0)`: the dev
    server picks several ports of its own that way as it starts, and one of
    them taking the UI port we chose makes the CLI fail at start (seen once
    in CI: "the Temporal dev server exited (2)", a Go panic). As Temporal's own
    free-port helper does (temporalio/cli#564), connect once and close the
    accepted side first: the port waits in TIME_WAIT, so no `bind(0)` returns it,
    while a server binding it by number with SO_REUSEADDR (Go's listeners,
    Python's HTTP servers) still can.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # else the waiting end bars a rebind too
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = listener.accept()
            accepted.close()  # the listening side closes first: its end of the connection keeps the port
    return port


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL, wait_s: float = 15) -> None:
    """Signal a process started with start_new_session=True, and its children; then reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=15)


# ----- the server ------------------------------------------------------------------------


class ServerOnFile:
    """The real dev server on `db`, restartable on the same file and the same ports."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.port = free_port()
        self.ui_port = free_port()
        self._dev: DevServer | None = None
        self.starts = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._dev = DevServer(self.db, port=self.port, ui_port=self.ui_port)
        await self._dev.__aenter__()
        if self._dev.reused:  # someone else took our port: these tests must not use their server
            raise RuntimeError(f"port {self.port} was taken by another server")
        self.starts += 1

    def stop(self, hard: bool = False) -> None:
        """SIGTERM (the server shuts down in order) or kill -9 (it just dies)."""
        if self._dev is None or self._dev.process is None:
            return
        kill_group(self._dev.process, signal.SIGKILL if hard else signal.SIGTERM, wait_s=20)
        for _ in range(100):  # the port is free again before we start on it
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    break
            time.sleep(0.1)

    async def restart(self, hard: bool = False, down_s: float = 0.0) -> None:
        await asyncio.to_thread(self.stop, hard)
        await asyncio.sleep(down_s)
        await self.start()

    async def client(self) -> Client:
        return await connect(self.target)


# ----- the worker --------------------------------------------------------------------------


class WorkerProcess:
    """`python -m tests.crash_worker --config FILE` in its own process group."""

    def __init__(self, server: ServerOnFile, world: World, queue: str, cwd: Path = ROOT, **pause: Any) -> None:
        """`cwd`: the worker's working directory (its own, for a worker that shares no files with another)."""
        self.server, self.world, self.queue, self.cwd = server, world, queue, cwd
        self.pause = pause
        self.proc: subprocess.Popen | None = None
        self.log = world.dir / f"worker-{uuid.uuid4().hex[:6]}.log"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BATON_CRASH_", "OTEL_"))}
        env.update(
            TEMPORAL_ADDRESS=self.server.target,
            TEMPORAL_NAMESPACE="default",
            BATON_TASK_QUEUE=self.queue,
            BATON_CRASH_MARKERS=str(self.world.markers),
            PYTHONPATH=str(ROOT),  # `tests` is no installed package: found from any working directory
        )
        for name, value in self.pause.items():
            if value is not None:
                env[f"BATON_CRASH_{name.upper()}"] = ",".join(value) if isinstance(value, list | tuple) else str(value)
        env.pop("TEMPORAL_PROFILE", None)
        return env

    def start(self) -> WorkerProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.crash_worker", "--config", str(self.world.config)],
                cwd=self.cwd, env=self.env(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    async def ready(self, timeout: float = 60) -> None:
        """Wait for the worker's 'polling' line (the real worker is built and running)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"crash worker exited early: {self.output()[-2000:]}")
            if "crash-worker polling" in self.output():
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"crash worker not ready in {timeout}s: {self.output()[-2000:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9, no goodbye: in-flight activities are left for Temporal to time out and retry."""
        if self.proc is not None:
            kill_group(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc, signal.SIGTERM, wait_s=15)


# ----- the world: config, seed, scripts, cases, effects -----------------------------------


KINDS = ("onboarding-clear", "onboarding-review", "onboarding-reject", "refund-small", "refund-large", "sales")
APPLICANTS = {  # from examples/systems.json: the KYC route each applicant takes
    "onboarding-clear": {"applicant_id": "A-1001", "name": "Ada Lovelace", "document_number": "P1234567"},
    "onboarding-review": {"applicant_id": "A-1002", "name": "Grace Hopper", "document_number": "P7654321"},
    "onboarding-reject": {"applicant_id": "A-1003", "name": "Victor Lustig", "document_number": "P0000013"},
}


@dataclass
class Case:
    """One run to make: which process, which input, how it should be decided, what it may write."""

    n: int
    kind: str
    approve: bool = True  # for kinds that park: the decision the script sends
    run_id: str = ""
    outcome: RunOutcome | None = None
    error: str | None = None

    @property
    def tag(self) -> str:
        return f"C{self.n:05d}"

    @property
    def email(self) -> str:
        return f"applicant-{self.tag.lower()}@example.com"

    @property
    def order_id(self) -> str:
        return f"O-{self.tag}"

    @property
    def ticket_id(self) -> str:
        return f"T-{self.tag}"

    @property
    def deal_id(self) -> str:
        return f"D-{self.tag}"

    @property
    def contact(self) -> str:
        return f"buyer-{self.tag.lower()}@northwind.example"

    @property
    def process(self) -> str:
        return {"refund-small": "support-triage", "refund-large": "support-triage", "sales": "sales-followup"}.get(
            self.kind, "onboarding"
        )

    @property
    def parks(self) -> bool:
        return self.kind in ("onboarding-review", "refund-large", "sales")

    def input(self) -> dict:
        if self.process == "onboarding":
            return {**APPLICANTS[self.kind], "email": self.email}
        if self.process == "support-triage":
            what = "kettle arrived with a cracked lid" if self.kind == "refund-small" else "espresso machine stopped working"
            return {
                "ticket_id": self.ticket_id, "customer_email": "ana@example.com", "subject": what,
                "body": f"My order {self.order_id}: {what}. I would like my money back.", "order_id": self.order_id,
            }
        return {"deal_id": self.deal_id}

    async def start(self, baton: Baton, timeout: float = 120) -> str:
        """Start the run; its id carries the case's tag, so markers and logs name the case.

        The id is chosen before the first try, so a start retried through a server restart
        (whose first try may have got through unanswered) starts the run once.
        """
        self.run_id = f"{self.process}-{self.tag}-{uuid.uuid4().hex[:6]}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                await baton.start(self.process, self.input(), run_id=self.run_id)
                return self.run_id
            except WorkflowAlreadyStartedError:
                return self.run_id  # an earlier try got through
            except (RPCError, RuntimeError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1)

    def approval_target(self) -> str:
        """The run that holds the request: the agent's child for a refund, else the run itself."""
        return f"{self.run_id}/returns_agent" if self.kind == "refund-large" else self.run_id

    def approver(self) -> str:
        return {"onboarding-review": COMPLIANCE, "refund-large": SUPPORT_LEAD, "sales": SALES_MANAGER}[self.kind]

    def effects_found(self, systems: SystemsOfRecord) -> dict[str, int]:
        if self.process == "onboarding":
            return {"crm_record": systems.count("crm_records", email=self.email),
                    "email": systems.count("outbox", recipient=self.email)}
        if self.process == "support-triage":
            return {"refund": systems.count("refunds", order_id=self.order_id)}
        return {"email": systems.count("outbox", recipient=self.contact),
                "crm_update": systems.count("deal_activities", deal_id=self.deal_id)}

    def effects_expected(self) -> dict[str, int]:
        """From the run's own end: what a run that ended this way must have left, exactly once.

        An onboarding run that completed wrote one CRM record and sent one e-mail; a rejected one
        nothing. A triage run that completed refunded its order once (every refund here is
        approved, by the $50 rule or by the support lead). A follow-up that completed sent one
        e-mail and logged one CRM update; a rejected one neither.
        """
        done = self.outcome is not None and self.outcome.state is RunState.COMPLETED
        if self.process == "onboarding":
            return {"crm_record": int(done), "email": int(done)}
        if self.process == "support-triage":
            return {"refund": int(done and (self.approve or not self.parks))}
        return {"email": int(done), "crm_update": int(done)}

    def expected_state(self) -> RunState:
        if self.kind == "onboarding-reject":
            return RunState.REJECTED
        if self.parks and not self.approve and self.kind != "refund-large":
            return RunState.REJECTED
        return RunState.COMPLETED  # a rejected refund still ends the ticket completed, unpaid


@dataclass
class World:
    """The worker's files in `dir`: baton.toml, a seed with one order/deal per case, scripts."""

    dir: Path
    cases: list[Case] = field(default_factory=list)
    issuer: LocalIssuer | None = None  # the worker's [identity]: lives in the test process, across restarts

    async def tokens(self, by: str | None) -> str:
        """A token for the person `by` names (a starter of no role when None), from the world's issuer."""
        return self.issuer.mint(by or "requester")

    @property
    def config(self) -> Path:
        return self.dir / "baton.toml"

    @property
    def systems_db(self) -> Path:
        return self.dir / "systems.db"

    @property
    def markers(self) -> Path:
        return self.dir / "markers"

    @property
    def systems(self) -> SystemsOfRecord:
        return SystemsOfRecord(self.systems_db)

    @classmethod
    def create(cls, dir: Path, cases: list[Case], payloads: str = "", issuer: LocalIssuer | None = None) -> World:
        """`payloads`: the lines of the worker's [payloads] table beside its db (a shared store, a threshold);
        `issuer`: another world's identity provider, for workers that trust the same one."""
        dir.mkdir(parents=True, exist_ok=True)
        world = cls(dir, cases, issuer or LocalIssuer(ROLES, directory=dir / "issuer").start())
        world.markers.mkdir(exist_ok=True)
        seed = json.loads(SEED.read_text())
        scripts = json.loads(SCRIPTS.read_text())
        by_match = {(s["match"], s.get("output")): s for s in scripts["scripts"]}
        for c in cases:
            if c.process == "support-triage":
                small = c.kind == "refund-small"
                total = 35.0 if small else 420.0
                seed["orders"].append({
                    "order_id": c.order_id, "customer_email": "ana@example.com",
                    "items": ["kettle" if small else "espresso machine"], "total_usd": total,
                    "status": "delivered", "delivered_on": "2026-11-02", "note": "",
                })
                source = "ticket T-3001" if small else "ticket T-3006"
                original = "O-2001" if small else "O-2002"
                for output in ("TriageDecision", "Resolution", "SupervisorVerdict"):
                    s = json.loads(json.dumps(by_match[(source, output)]).replace(original, c.order_id))
                    s["match"] = f"ticket {c.ticket_id}"
                    scripts["scripts"].append(s)
            elif c.process == "sales-followup":
                deal = copy.deepcopy(seed["deals"][0])
                deal.update(deal_id=c.deal_id, contact_email=c.contact)
                seed["deals"].append(deal)
                for output in ("BuyerSignals", "FollowUpDraft"):
                    s = copy.deepcopy(by_match[("Deal D-501", output)])
                    s["match"] = f"Deal {c.deal_id} "
                    scripts["scripts"].append(s)
        (dir / "seed.json").write_text(json.dumps(seed))
        (dir / "scripts.json").write_text(json.dumps(scripts))
        own_store = f"directory = {json.dumps(str(dir / 'payloads'))}"
        roles = "".join(f'[roles.{name}]\npeople = {json.dumps(people)}\n\n' for name, people in ROLES.items())
        world.config.write_text(
            f'[systems]\ndb = "{world.systems_db}"\nseed = "{dir / "seed.json"}"\n\n'
            f'[payloads]\ndb = "{dir / "payloads.db"}"\n{payloads or own_store}\n\n'
            f'[offline]\nscripts = "{dir / "scripts.json"}"\n\n'
            # A model call's start-to-close is derived from these (config.llm_timeout_s(): 12 s
            # here, 205 s with the defaults): a worker killed mid-call is noticed when it expires.
            "[http]\ntimeout_s = 1.0\nconnect_timeout_s = 1.0\n\n"
            "[llm]\nrepair_turns = 0\n\n"
            f'[identity]\nissuer = "{world.issuer.url}"\naudience = "{AUDIENCE}"\n\n'
            + roles
        )
        return world

    def markers_of(self, prefix: str) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted(self.markers.glob(f"{prefix}*.json"))]

    async def marker(self, prefix: str, timeout: float = 60, worker: WorkerProcess | None = None) -> dict:
        """Wait for the crash worker to say it is inside the paused step."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.markers_of(prefix)
            if found:
                return found[0]
            if worker is not None and not worker.alive:
                raise RuntimeError(f"worker died before {prefix}: {worker.output()[-2000:]}")
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no {prefix} marker in {timeout}s" + (f": {worker.output()[-2000:]}" if worker else ""))


# ----- driving runs through faults ----------------------------------------------------------


async def retrying(call: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    """Call until it answers: the server may be restarting, the worker being replaced."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            return await asyncio.wait_for(call(), timeout=max(1.0, min(10.0, deadline - time.monotonic())))
        except (RPCError, RPCTimeoutOrCancelledError, asyncio.TimeoutError, RuntimeError) as err:
            last = err
            await asyncio.sleep(0.3)
    raise TimeoutError(f"{what}: no answer in {timeout}s (last: {last!r})")


async def open_request(baton: Baton, run_id: str, timeout: float = 120, interval: float = 0.25):
    """The run's first open approval request, once it has one (a query: needs a worker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = await asyncio.wait_for(baton.status(run_id), 5)
            if status.open_requests:
                return status.open_requests[0]
        except (RPCError, RPCTimeoutOrCancelledError, asyncio.TimeoutError, RuntimeError, UnknownRun):  # the agent's child may not exist yet
            pass
        await asyncio.sleep(interval)
    raise TimeoutError(f"{run_id} opened no request in {timeout}s")


async def decide(baton: Baton, case: Case, timeout: float = 180, interval: float = 0.25) -> None:
    """Wait for the case's request and send its decision (baton approve / reject, the SDK's update)."""
    target = case.approval_target()
    request = await open_request(baton, target, timeout, interval)
    send = baton.approve if case.approve else baton.reject
    await retrying(lambda: send(target, by=case.approver(), request_id=request.id, comment="chaos"), timeout, f"decide {target}")


async def outcome_of(client: Client, run_id: str, timeout: float) -> RunOutcome:
    """The run's outcome, waiting through server restarts (a long poll cut by a restart is retried)."""
    baton = Baton(client)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{run_id} did not end in {timeout}s")
        try:
            return await asyncio.wait_for(baton.result(run_id), left)
        except (RPCError, RPCTimeoutOrCancelledError, RuntimeError) as err:  # the server went away under the long poll
            if isinstance(err, RPCError) and err.status == RPCStatusCode.NOT_FOUND:
                raise
            await asyncio.sleep(1)
        except asyncio.TimeoutError:
            raise TimeoutError(f"{run_id} did not end in {timeout}s") from None


def effects_report(cases: list[Case], systems: SystemsOfRecord) -> dict[str, int]:
    """Expected / found / duplicated / lost effects over every case (each run counted on its own)."""
    expected = found = duplicated = lost = 0
    for c in cases:
        if c.outcome is None:  # not ended: no expectation to hold it to (counted as stuck instead)
            continue
        want, got = c.effects_expected(), c.effects_found(systems)
        for name, n in want.items():
            expected += n
            found += got[name]
            duplicated += max(0, got[name] - n)  # twice, or at all when the run's end allows none
            lost += max(0, n - got[name])
    return {"expected": expected, "found": found, "duplicated": duplicated, "lost": lost}
