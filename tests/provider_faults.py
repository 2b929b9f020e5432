"""Provider faults at scale: a faulty OpenAI-compatible provider, and the shipped processes run against it.

`FaultyProvider` is tests/fake_provider.py's server with a responder that fails a
configurable share of requests, drawn with a seeded RNG, from every way a real
provider misbehaves: 429 with `Retry-After`, 500, a reset connection, an answer
slower than the client's timeout, a body that is not JSON, JSON that is not a
Chat Completion, and an answer that fails the step's output model. The other
requests get a valid Chat Completion built by the offline stand-in's answerer
(activities/llm/offline.py, with the shipped offline scripts) for the schema
the request carries, so the processes take their real routes.

`fault_scenario` starts N runs of the shipped processes against a worker whose
every tier points at that provider, approves whatever parks, waits for all with
a deadline, and checks each run against what really happened: its typed outcome,
its budget, the failed calls its ledger lists against the faults the provider
injected into its requests, every Retry-After against the next request, and the
systems of record against the effects its ledger and outcome claim.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client, WorkflowExecutionStatus

from activities.llm.catalog import ModelSpec, Price, ProviderSpec
from activities.llm.conversation import Conversation, Message, ToolSchema, ToolUse
from activities.llm.offline import OfflineProvider
from activities.llm.offline_scripts import OfflineScripts
from activities.llm.provider import ProviderRejected
from activities.llm.transport import HttpSettings
from baton_examples.systems import SystemsOfRecord
from client.sdk import Baton, Refused, UnknownRun
from tests.conftest import running_worker
from tests.fake_provider import FakeProvider, Recorded, Reply, error_reply, openai_answer
from worker.config import BatonConfig
from workflows.outcome import RunOutcome, RunState

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

KINDS = ("rate_limit", "server_error", "reset", "slow", "not_json", "bad_shape", "bad_output")
FAULT_MARK = "fault-injected"  # in every schema-failing answer, so the answerer can look past it
CLIENT_TIMEOUT_S = 1.5  # the worker's per-request timeout in the scenario; "slow" answers just past it
SLOW_BY_S = 0.5
TIGHT_EVERY, TIGHT_BUDGET_USD = 5, 0.003  # every 5th run asks for a budget this low

# What each effectful tool writes, and the id of the row in its result.
EFFECTS = {
    "create_crm_record": ("crm_records", "customer_id"),
    "send_email": ("outbox", "message_id"),
    "issue_refund": ("refunds", "refund_id"),
    "open_ticket": ("tickets", "ticket_id"),
    "update_crm_deal": ("deal_activities", "activity_id"),
}


# ----- the provider ------------------------------------------------------------------


@dataclass
class Injected:
    kind: str
    at: float  # the fake's monotonic clock, when the request arrived
    key: str  # which request: model and messages (a retry of it has the same key)
    prompt: str  # its first user message (says which run it belongs to)
    retry_after: float | None = None  # seconds the 429 asked for


def request_key(body: dict) -> str:
    text = json.dumps({"model": body.get("model"), "messages": body.get("messages")}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def first_prompt(body: dict) -> str:
    return next((m.get("content") or "" for m in body.get("messages", []) if m.get("role") == "user"), "")


class FaultyProvider(FakeProvider):
    """An OpenAI-compatible server failing `share` of its requests (seeded); valid answers otherwise.

    Fault kinds are drawn from a shuffled bag of `kinds` (reshuffled by the same
    RNG when empty), so every kind shows up once the faults outnumber the kinds.
    Scripted replies (`script()`) still come first, as with FakeProvider.
    """

    def __init__(
        self, share: float, seed: int, *, scripts: OfflineScripts | None = None, kinds: tuple[str, ...] = KINDS,
        client_timeout_s: float = CLIENT_TIMEOUT_S, retry_after_s: tuple[int, ...] = (1, 2),
    ) -> None:
        super().__init__(self._respond)
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        self.share = share
        self.kinds = kinds
        self.injected: list[Injected] = []
        self.answered = 0
        self._rng = random.Random(seed)
        self._bag: list[str] = []
        self._draw_lock = threading.Lock()
        self._answerer = OfflineProvider(scripts)
        self._client_timeout_s = client_timeout_s
        self._retry_after_s = retry_after_s

    def counts(self) -> dict[str, int]:
        found = Counter(i.kind for i in self.injected)
        return {kind: found.get(kind, 0) for kind in KINDS}

    def _draw(self) -> tuple[str | None, str | None]:
        with self._draw_lock:
            if self._rng.random() >= self.share:
                return None, None
            if not self._bag:
                self._bag = list(self.kinds)
                self._rng.shuffle(self._bag)
            kind = self._bag.pop()
            retry = None
            if kind == "rate_limit":  # seconds mostly, sometimes an HTTP date (whole seconds, so at least 2 ahead)
                retry = "date" if self._rng.random() < 0.25 else str(self._rng.choice(self._retry_after_s))
            return kind, retry

    def _respond(self, request: Recorded) -> Reply:
        kind, retry = self._draw()
        if kind is None:
            return self._answer(request.body)
        injected = Injected(kind, request.at, request_key(request.body), first_prompt(request.body))
        with self._lock:
            self.injected.append(injected)
        match kind:
            case "rate_limit":
                if retry == "date":
                    when = int(time.time()) + 3
                    header = email.utils.formatdate(when, usegmt=True)
                    injected.retry_after = when - time.time()
                else:
                    header, injected.retry_after = retry, float(retry)
                return error_reply(429, "Rate limit reached for requests", headers={"retry-after": header},
                                   kind="rate_limit_exceeded")
            case "server_error":
                return error_reply(500, "The server had an error while processing your request.", kind="server_error")
            case "reset":
                return Reply(reset=True)
            case "slow":
                reply = self._answer(request.body)
                reply.delay_s = self._client_timeout_s + SLOW_BY_S
                return reply
            case "not_json":
                return Reply(200, "<html><body><h1>502 Bad Gateway</h1></body></html>")
            case "bad_shape":  # JSON, but not a Chat Completion: no choices, or an empty list of them
                return Reply(200, self._rng_choice([
                    {"object": "chat.completion", "model": request.body.get("model"), "choices": []},
                    {"object": "list", "data": [{"text": "hello"}]},
                ]))
            case _:  # bad_output: a well-formed completion whose content fails the step's output model
                return openai_answer({FAULT_MARK: "this answer lacks every required field"},
                                     model=request.body.get("model", "faulty"), prompt_tokens=100, completion_tokens=12)

    def _rng_choice(self, options: list) -> object:
        with self._draw_lock:
            return self._rng.choice(options)

    def _answer(self, body: dict) -> Reply:
        """A valid Chat Completion: the offline stand-in's answer for this conversation and schema."""
        try:
            done = asyncio.run(self._answerer.complete(wire_conversation(body), ANSWER_SPEC))
        except ProviderRejected as err:
            return error_reply(400, str(err), kind="invalid_request_error")
        self.answered += 1
        uses = [{"id": u.id, "name": u.name, "arguments": u.arguments} for u in done.message.tool_uses]
        return openai_answer(
            None if uses else done.message.content, model=body.get("model", "faulty"),
            prompt_tokens=done.usage.input, completion_tokens=done.usage.output, tool_calls=uses or None,
        )


ANSWER_SPEC = ModelSpec(provider="offline", name="faulty", price=Price(input=0, output=0))


def wire_conversation(body: dict) -> Conversation:
    """A Chat Completions request back in Baton's neutral form, minus injected bad answers and their repairs.

    Dropping those keeps the offline scripts' turn count where it would have
    been without the fault, so a scripted agent still takes its scripted route.
    """
    system, messages, skip_repair = "", [], False
    for m in body.get("messages", []):
        role, content = m.get("role"), m.get("content") or ""
        if role == "system":
            system = content
        elif role == "assistant" and FAULT_MARK in content:
            skip_repair = True
        elif role == "assistant":
            uses = [
                ToolUse(id=c["id"], name=c["function"]["name"], arguments=json.loads(c["function"]["arguments"] or "{}"))
                for c in m.get("tool_calls") or []
            ]
            messages.append(Message(role="assistant", content=content, tool_uses=uses))
        elif role == "tool":
            messages.append(Message(role="tool", tool_use_id=m.get("tool_call_id"), content=content))
        elif skip_repair:
            skip_repair = False
        else:
            messages.append(Message(role="user", content=content))
    schema = (body.get("response_format") or {}).get("json_schema") or {}
    tools = [
        ToolSchema(name=t["function"]["name"], description=t["function"].get("description", ""),
                   parameters=t["function"].get("parameters") or {})
        for t in body.get("tools") or []
    ]
    return Conversation(
        system=system, messages=messages, output_name=schema.get("name", "Output"),
        output_schema=schema.get("schema") or {}, tools=tools,
        max_output_tokens=body.get("max_tokens") or body.get("max_completion_tokens") or 1024,
    )


def faulty_config(config: BatonConfig, url: str, client_timeout_s: float = CLIENT_TIMEOUT_S) -> BatonConfig:
    """`config` with every tier on one model of an OpenAI-compatible provider at `url` (on this machine: personal data allowed)."""
    models = {
        "faulty-fast": ModelSpec(provider="faulty", name="faulty-fast", price=Price(input=0.15, output=0.60),
                                 personal_data=True),
        "faulty-strong": ModelSpec(provider="faulty", name="faulty-strong", price=Price(input=3.00, output=15.00),
                                   personal_data=True),
    }
    tiers = {tier: ["faulty-strong" if tier == "strong" else "faulty-fast"] for tier in {*config.tiers, "fast", "strong"}}
    return config.model_copy(update={
        "providers": {**config.providers, "faulty": ProviderSpec(protocol="openai", base_url=f"{url}/v1")},
        "models": {**config.models, **models},
        "tiers": tiers,
        "http": HttpSettings(timeout_s=client_timeout_s, connect_timeout_s=client_timeout_s),
    })


# ----- the runs ----------------------------------------------------------------------


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


@dataclass
class Case:
    process: str
    data: dict
    token: str  # a string in every prompt of this run and no other's


def cases(runs: int, seed_data: dict) -> list[Case]:
    """`runs` inputs over every shipped route, each made unique (its own applicant, ticket or deal).

    Clones of the example applicants and deals are added to `seed_data`, so each
    run's prompts name it alone and its effects are its own. Every fifth run, and
    every follow-up of deal D-502, asks for a cost cap too low for a strong-tier
    call, so that caps fire under faults too.
    """
    onboarding = [_read(EXAMPLES / "onboarding" / f"{name}.json") for name in ("clear", "review", "reject")]
    tickets = [_read(p) for p in sorted((EXAMPLES / "support-triage").glob("*.json"))]
    deals = [_read(p) for p in sorted((EXAMPLES / "sales-followup").glob("*.json"))]
    menu = [("onboarding", o) for o in onboarding] + [("support-triage", t) for t in tickets] \
        + [("sales-followup", d) for d in deals]
    applicants = {a["applicant_id"]: a for a in seed_data["applicants"]}
    by_deal = {d["deal_id"]: d for d in seed_data["deals"]}
    out = []
    for i in range(runs):
        process, base = menu[i % len(menu)]
        tag = f"r{i:04d}"
        data = {k: v for k, v in base.items() if not k.startswith("_")}
        if process == "onboarding":
            a = {**applicants[data["applicant_id"]]}
            a["applicant_id"], a["name"] = f"{a['applicant_id']}-{tag}", f"{a['name']} {tag}"
            seed_data["applicants"].append(a)
            data.update(applicant_id=a["applicant_id"], name=a["name"], email=f"{tag}.{data['email']}")
            token = a["name"]
        elif process == "support-triage":
            data["ticket_id"] = token = f"{data['ticket_id']}-{tag}"
        else:
            d = {**by_deal[data["deal_id"]], "deal_id": f"{data['deal_id']}-{tag.upper()}"}
            seed_data["deals"].append(d)
            data["deal_id"] = token = d["deal_id"]
        if i % TIGHT_EVERY == TIGHT_EVERY - 1 or data.get("deal_id", "").startswith("D-502"):
            # a cost cap too low for a strong-tier call: sales ends budget_exceeded, an agent escalates
            data["budget"] = {"max_cost_usd": TIGHT_BUDGET_USD}
        out.append(Case(process, data, token))
    return out


@dataclass
class RunRecord:
    case: Case
    run_id: str
    outcome: RunOutcome | None = None
    ledger: list = field(default_factory=list)  # the run's and its agents'
    open_state: str | None = None  # for a run still open at the deadline: what its status says
    budget_usd: float | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class ScenarioReport:
    runs: list[RunRecord]
    injected: list[Injected]
    requests: int
    seconds: float
    figures: dict

    @property
    def problems(self) -> list[str]:
        return [f"{r.run_id}: {p}" for r in self.runs for p in r.problems] + self.figures.get("problems", [])


AGENT_STEPS = ("returns_agent", "technical_agent", "billing_agent")


async def fault_scenario(client: Client, config: BatonConfig, runs: int, share: float, seed: int) -> dict:
    """N runs of the shipped processes against a provider failing `share` of calls; the figures."""
    return (await run_fault_scenario(client, config, runs, share, seed)).figures


async def run_fault_scenario(
    client: Client, config: BatonConfig, runs: int, share: float, seed: int, *,
    deadline_s: float | None = None, kinds: tuple[str, ...] = KINDS,
) -> ScenarioReport:
    deadline_s = deadline_s if deadline_s is not None else 60.0 + 1.5 * runs
    seed_data = _read(config.systems.seed or EXAMPLES / "systems.json")
    plan = cases(runs, seed_data)
    seed_file = config.systems.db.parent / f"fault-seed-{uuid.uuid4().hex[:6]}.json"
    seed_file.parent.mkdir(parents=True, exist_ok=True)
    seed_file.write_text(json.dumps(seed_data))
    base = config.model_copy(update={"systems": config.systems.model_copy(update={"seed": seed_file})})
    systems = SystemsOfRecord(config.systems.db)
    systems.create(seed_file)
    before = {table: systems.count(table) for table, _ in EFFECTS.values()}

    started = time.monotonic()
    with FaultyProvider(share, seed, scripts=base.offline_scripts(), kinds=kinds) as fake:
        async with running_worker(client, faulty_config(base, fake.url)) as worker:
            baton = Baton(client, worker.task_queue)
            records = [RunRecord(c, await baton.start(c.process, c.data)) for c in plan]
            await _drive(baton, base, records, started + deadline_s)
            for r in records:
                await _collect(baton, r)
        seconds = time.monotonic() - started
        requests = len(fake.requests)
        injected = list(fake.injected)
        log = list(fake.requests)

    after = {table: systems.count(table) for table, _ in EFFECTS.values()}
    figures = _figures(records, injected, log, systems, before, after, share, seed, seconds)
    return ScenarioReport(records, injected, requests, seconds, figures)


async def _drive(baton: Baton, config: BatonConfig, records: list[RunRecord], deadline: float) -> None:
    """Approve whatever parks until every run has closed or the deadline passes.

    Runs are watched with `describe`, not awaited with `result`: on the
    time-skipping server that keeps real time running, so Retry-After waits and
    people's deadlines are not skipped past before anyone could act.
    """
    open_runs = {r.run_id: r for r in records}
    while open_runs and time.monotonic() < deadline:
        for run_id in list(open_runs):
            desc = await baton.client.get_workflow_handle(run_id).describe()
            if desc.status != WorkflowExecutionStatus.RUNNING:
                del open_runs[run_id]
                continue
            await _approve_parked(baton, config, run_id)
        await asyncio.sleep(0.2)


async def _approve_parked(baton: Baton, config: BatonConfig, run_id: str) -> None:
    try:
        status = await baton.status(run_id)
    except Exception:  # noqa: BLE001 (not answering yet: the next round asks again)
        return
    targets = [(run_id, status)]
    if status.current_step in AGENT_STEPS:  # an agent's approvals are asked in its child workflow
        try:
            targets.append((f"{run_id}/{status.current_step}", await baton.status(f"{run_id}/{status.current_step}")))
        except Exception:  # noqa: BLE001
            pass
    for wf_id, st in targets:
        for request in st.open_requests:
            people = [p for role in request.roles for p in config.roles[role].people] if request.roles else []
            for person in people:
                try:
                    await baton.approve(wf_id, by=person, request_id=request.id, comment="fault scenario")
                    break
                except Refused:
                    continue
                except Exception:  # noqa: BLE001 (closed meanwhile)
                    break


async def _collect(baton: Baton, r: RunRecord) -> None:
    """The run's outcome, ledgers and budget; a run still open is explained or counted stuck, then ended."""
    handle = baton.client.get_workflow_handle(r.run_id, result_type=RunOutcome[dict])
    desc = await handle.describe()
    try:
        status = await baton.status(r.run_id)
        r.budget_usd = status.budget.max_cost_usd if status.budget else None
    except Exception as err:  # noqa: BLE001
        status = None
        r.problems.append(f"status query failed: {err}")
    if desc.status == WorkflowExecutionStatus.RUNNING:
        if status is not None and (status.reason or status.current_step or status.open_requests):
            waits = ", ".join(q.id for q in status.open_requests)
            r.open_state = f"{status.state.value}: {status.reason or f'at {status.current_step}'}" + (
                f"; waiting for {waits}" if waits else "")
        await handle.terminate(reason="fault scenario deadline")
        return
    try:
        r.outcome = await baton.result(r.run_id)  # typed, the ends Temporal records as Failed included
    except Exception as err:  # noqa: BLE001 (Temporal ended it otherwise: no typed outcome)
        r.problems.append(f"ended without a typed outcome: {type(err).__name__}: {err}")
        return
    r.ledger = list(await baton.ledger(r.run_id))
    for step in AGENT_STEPS:
        if any(e.step == step for e in r.ledger):
            try:
                r.ledger += await baton.ledger(f"{r.run_id}/{step}")
            except UnknownRun:
                r.problems.append(f"agent step {step} has no child workflow to read")


# ----- the checks ----------------------------------------------------------------------


def call_kind(call) -> str | None:
    """Which injected fault a failed ModelCall in a ledger corresponds to (None: it answered)."""
    if call.outcome == "invalid":
        return "bad_output"
    if call.outcome != "unavailable":
        return None
    if call.status == 429:
        return "rate_limit"
    if call.status is not None and call.status >= 500:
        return "server_error"
    if call.error.startswith("timed out"):
        return "slow"
    if call.error.startswith("connection failed"):
        return "reset"
    if "(not JSON)" in call.error:
        return "not_json"
    if call.error.startswith("malformed response body"):
        return "bad_shape"
    return "unclassified"


def _figures(
    records: list[RunRecord], injected: list[Injected], log: list[Recorded], systems: SystemsOfRecord,
    before: dict, after: dict, share: float, seed: int, seconds: float,
) -> dict:
    problems: list[str] = []
    for r in records:
        _check_run(r, injected)
    early = _retry_after_violations(injected, log)
    problems += early
    duplicated, lost = _effects(records, systems, before, after, problems)
    ended = Counter(r.outcome.state.value for r in records if r.outcome is not None)
    injected_counts = Counter(i.kind for i in injected)
    recorded = Counter(call_kind(c) for r in records for e in r.ledger for c in e.calls) - Counter({None: 10**9})
    return {
        "runs": len(records),
        "share": share,
        "seed": seed,
        "requests": len(log),
        "faults_injected": {k: injected_counts.get(k, 0) for k in KINDS},
        "failed_calls_in_ledgers": {k: recorded.get(k, 0) for k in [*KINDS, "unclassified"]},
        "completed": ended.get(RunState.COMPLETED.value, 0),
        "ended_typed": dict(sorted(ended.items())),
        "open_with_reason": sum(1 for r in records if r.open_state is not None),
        "stuck": sum(1 for r in records if r.outcome is None and r.open_state is None),
        "duplicated": duplicated,
        "lost": lost,
        "runs_with_problems": sum(1 for r in records if r.problems),
        "retry_after_violations": len(early),
        "seconds": round(seconds, 1),
        "problems": problems,
    }


def _check_run(r: RunRecord, injected: list[Injected]) -> None:
    o = r.outcome
    if o is None:
        if r.open_state is None:
            r.problems.append("still open at the deadline with no reason in its status (stuck)")
        else:
            r.problems.append(f"still open at the deadline: {r.open_state}")
        return
    if not o.state.is_final or not o.reason:
        r.problems.append(f"ended {o.state.value} without a reason")
    if o.state is RunState.BUDGET_EXCEEDED and not (o.cap and o.cap in o.reason):
        r.problems.append(f"budget_exceeded without naming the cap: cap={o.cap!r} reason={o.reason!r}")
    if r.budget_usd is not None and o.cost_usd > r.budget_usd + 1e-9:
        r.problems.append(f"cost ${o.cost_usd} exceeds its budget ${r.budget_usd}")
    billed = round(sum(c.cost_usd for e in r.ledger if e.kind != "agent" for c in e.calls), 6)
    if abs(billed - o.cost_usd) > 2e-6:
        r.problems.append(f"outcome cost ${o.cost_usd} is not what its model calls cost (${billed})")
    mine = Counter(i.kind for i in injected if r.case.token in i.prompt)
    listed = Counter(k for e in r.ledger for c in e.calls if (k := call_kind(c)) is not None)
    if mine != listed:
        r.problems.append(f"faults injected into its requests {dict(mine)} != failed calls in its ledger {dict(listed)}")
    if o.state is RunState.FAILED and not o.reason.startswith("step "):
        r.problems.append(f"failed without naming the step: {o.reason}")


def _retry_after_violations(injected: list[Injected], log: list[Recorded]) -> list[str]:
    """Every 429's request, asked again sooner than its Retry-After said."""
    found = []
    for fault in (i for i in injected if i.kind == "rate_limit"):
        later = [q.at for q in log if q.at > fault.at and request_key(q.body) == fault.key]
        if later and later[0] - fault.at < fault.retry_after - 0.05:
            found.append(
                f"a 429 asked for {fault.retry_after:.2f}s and the same request came back after "
                f"{later[0] - fault.at:.2f}s: {fault.prompt[:60]!r}"
            )
    return found


def _effects(records: list[RunRecord], systems: SystemsOfRecord, before: dict, after: dict,
             problems: list[str]) -> tuple[int, int]:
    """Effects each run claims (ledger tool entries, and its outcome's ids) against the systems of record.

    lost: a claimed effect with no row; duplicated: rows beyond the distinct
    effects claimed (a write done twice, or done by a run that says it did not).
    """
    claimed: dict[str, set[str]] = {table: set() for table, _ in EFFECTS.values()}
    lost = 0
    for r in records:
        ids = []
        for e in r.ledger:
            if e.kind == "tool" and e.name in EFFECTS and e.outcome == "ok" and e.decision:
                table, column = EFFECTS[e.name]
                ids.append((table, column, e.decision.get(column)))
        result = (r.outcome.result or {}) if r.outcome else {}
        for key, (table, column) in {"customer_id": EFFECTS["create_crm_record"],
                                     "confirmation_id": EFFECTS["send_email"],
                                     "message_id": EFFECTS["send_email"],
                                     "activity_id": EFFECTS["update_crm_deal"]}.items():
            if result.get(key):
                ids.append((table, column, result[key]))
        for table, column, value in ids:
            claimed[table].add(value)
            if value is None or systems.count(table, **{column: value}) != 1:
                lost += 1
                r.problems.append(f"claims {table}.{column}={value} but the system of record has no such row")
    duplicated = 0
    for table, values in claimed.items():
        extra = (after[table] - before[table]) - len(values)
        if extra > 0:
            duplicated += extra
            problems.append(f"{table}: {after[table] - before[table]} rows written, {len(values)} claimed by runs")
    return duplicated, lost
