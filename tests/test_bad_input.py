"""Bad input, generated: refused at the door with one clear line, or handled; never a crashed workflow task.

Property-based (hypothesis, derandomized, no example database) over what people and
scripts hand Baton: process inputs (arbitrary JSON and near-valid mutations of the
shipped examples) through the SDK and the CLI, and whatever the SDK accepts run for
real; decisions and signals with arbitrary payloads; unknown signals, queries and
updates. "No crash" is checked in the run's history: no WORKFLOW_TASK_FAILED event,
and the same worker still completes a run afterwards. baton.toml: tests/test_bad_config.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from client.sdk import Baton, InputError, Refused, read_input, validate_input
from tests.conftest import LEADS, REVIEWERS, ROOT, running_worker
from tests.test_integration import Stack, eventually, stack, temporal  # noqa: F401 (stack: the fixture)
from tests.test_integration import baton as baton_cli
from tests.test_onboarding_routes import CLEAR, PEP, wait_for_state
from worker.converter import DATA_CONVERTER
from workflows.registry import REGISTRY
from workflows.decisions import MAX_REFUSALS_RECORDED
from workflows.outcome import RunOutcome, RunState
from workflows.status import RunStatus

PROCESSES = REGISTRY.known()  # the installed processes (Baton's examples, by their entry point)

# Reproducible in CI, nothing written into the repository, and fast enough for two cores.
FUZZ = settings(derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=examples)

EXAMPLES = {
    "onboarding": sorted((ROOT / "examples" / "onboarding").glob("*.json")),
    "support-triage": sorted((ROOT / "examples" / "support-triage").glob("*.json")),
    "sales-followup": sorted((ROOT / "examples" / "sales-followup").glob("*.json")),
}
CAPS = ("max_cost_usd", "max_steps", "max_llm_calls", "max_tool_calls", "max_wall_clock", "max_approval_idle")

# ----- strategies ---------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
odd_strings = st.sampled_from([
    "", " ", "\x00", "\n", "é", "例え", "\u202e", "🙂", "\ud800", "x" * 100_000, "a@b", "a@b.c", "@example.com",
    "ada@example.com", "ada@@example.com", "ada@example.com\n", "ada@例え.jp", "Robert'); DROP TABLE crm;--",
    "P3D", "PT-1H", "-P1D", "1e400", "NaN", "null",
])
odd_numbers = st.sampled_from([0, -1, 1, 0.0, -0.0, 1e-300, 1e308, 2**63, -(2**63), 10**30, math.inf, -math.inf, math.nan])
odd_values = st.one_of(odd_strings, odd_numbers, json_values)
cap_values = st.one_of(
    odd_numbers, st.integers(min_value=-3, max_value=10**6), st.floats(),
    st.sampled_from(["PT1H", "P2D", "P999999999D", "PT0S", "-PT1H", "PT0.000001S", "P", "3 days", 3600.5]),
    odd_values,
)
budget_overrides = st.one_of(
    st.dictionaries(st.sampled_from(CAPS), cap_values, max_size=2),
    st.dictionaries(st.sampled_from([*CAPS, "max_everything", "maximum"]), odd_values, max_size=4),
    odd_values,
)


@st.composite
def near_valid(draw, process: str | None = None) -> tuple[str, object]:
    """A shipped example of a process, mutated a little: a field dropped, added, retyped, or a budget override."""
    process = process or draw(st.sampled_from(sorted(EXAMPLES)))
    data = json.loads(draw(st.sampled_from(EXAMPLES[process])).read_text())
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        how = draw(st.sampled_from(["drop", "set", "add", "budget", "budget"]))
        if how == "drop" and data:
            data.pop(draw(st.sampled_from(sorted(data))))
        elif how == "set" and data:
            data[draw(st.sampled_from(sorted(data)))] = draw(odd_values)
        elif how == "add":
            data[draw(st.text(max_size=12))] = draw(odd_values)
        else:
            data["budget"] = draw(budget_overrides)
    return process, data


def one_line(message: str) -> bool:
    return bool(message) and "\n" not in message and "Traceback" not in message


def check_validation(process: str, data: object) -> object | None:
    """validate_input refuses with one InputError line, or accepts a value the workflow will read back the same."""
    try:
        value = validate_input(process, data)
    except InputError as err:
        assert one_line(str(err)), repr(str(err))
        return None
    converter = DATA_CONVERTER.payload_converter
    back = converter.from_payloads(converter.to_payloads([value]), [PROCESSES[process].input])[0]
    assert back == value, f"{value!r} does not reach the workflow as it was accepted: {back!r}"
    return value


# ----- 1. process inputs through the SDK ------------------------------------------------------


@fuzz(300)
@given(process=st.sampled_from([*PROCESSES, "no-such-process", ""]), data=json_values)
def test_any_json_is_refused_in_one_line_or_accepted_unchanged(process, data):
    check_validation(process, data)


@fuzz(400)
@given(case=near_valid())
def test_near_valid_inputs_are_refused_in_one_line_or_accepted_unchanged(case):
    check_validation(*case)


EDGE_CAPS = [
    None, True, 0, -1, 1, 2, 0.0, -0.0, 0.5, 1e-300, 1e308, 2**63, 10**30, math.inf, -math.inf, math.nan, "", "1",
    "PT1H", "P2D", "P999999999D", "PT0S", "-PT1H", "PT0.000001S", "P", "3 days", 3600.5, [], {}, {"max": 1},
]


@pytest.mark.parametrize("cap", [*CAPS, "max_everything"])
def test_every_budget_cap_with_every_edge_value(cap):
    """Exhaustive where hypothesis would rarely look: each cap, each edge value, each process."""
    for process, files in EXAMPLES.items():
        data = json.loads(files[0].read_text())
        for value in EDGE_CAPS:
            check_validation(process, {**data, "budget": {cap: value}})


@fuzz(150)
@given(content=st.one_of(
    st.binary(max_size=60),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"", b"\xff\xfe{}", b"[" * 100_000, b"{" * 5_000, b'{"a": NaN}', b"\xef\xbb\xbf{}", b"{}" * 3]),
))
def test_any_input_file_is_read_or_refused_in_one_line(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("input") / "input.json"
    path.write_bytes(content)
    try:
        data = read_input(path)
    except InputError as err:
        assert one_line(str(err)) and str(path) in str(err), repr(str(err))
    else:
        assert isinstance(data, dict)


def test_an_input_file_that_cannot_be_read_is_refused(tmp_path):
    for path in (tmp_path / "missing.json", tmp_path):
        with pytest.raises(InputError, match="cannot read"):
            read_input(path)


# ----- helpers for runs ----------------------------------------------------------------------


async def task_failures(client: Client, run_id: str) -> list[str]:
    """Every failed workflow task in a run's history, its agents' child runs included."""
    history = await client.get_workflow_handle(run_id).fetch_history()
    failed, children = [], []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            failed.append(f"{run_id}: {event.workflow_task_failed_event_attributes.failure.message}")
        elif event.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
            children.append(event.child_workflow_execution_started_event_attributes.workflow_execution.workflow_id)
    for child in dict.fromkeys(children):
        failed += await task_failures(client, child)
    return failed


async def still_works(baton: Baton) -> None:
    """The worker survived: a clear onboarding run completes on it."""
    outcome = await asyncio.wait_for(baton.result(await baton.start("onboarding", CLEAR)), 60)
    assert outcome.state is RunState.COMPLETED, outcome.reason


async def counted(baton: Baton, run_id: str, count: int) -> RunStatus:
    """The run's status once it has counted `count` refused signals (or after 10 s: fewer)."""
    for _ in range(100):
        status = await baton.status(run_id)
        if status.refused_signals >= count:
            break
        await asyncio.sleep(0.1)
    return status


async def refusals(baton: Baton, run_id: str, count: int) -> list:
    """The run's `refused` ledger entries, once there are `count` of them (or after 10 s: fewer)."""
    refused: list = []
    for _ in range(100):
        try:
            refused = [e for e in await asyncio.wait_for(baton.ledger(run_id), 5) if e.outcome == "refused"]
        except (TimeoutError, WorkflowQueryFailedError, RPCError):
            pass  # a run whose task failed cannot answer; the history check says why
        if len(refused) >= count:
            break
        await asyncio.sleep(0.1)
    return refused


async def refused_update(handle: WorkflowHandle, *args, **kwargs) -> str:
    """An update the run must refuse to its caller, quickly; returns the message."""
    with pytest.raises((WorkflowUpdateFailedError, RPCError)) as refused:
        await asyncio.wait_for(handle.execute_update(*args, **kwargs), 10)
    err = refused.value
    message = str(err.cause if isinstance(err, WorkflowUpdateFailedError) and err.cause else err)
    assert message
    return message


# ----- 2. decisions and signals with arbitrary payloads -----------------------------------------

PEOPLE = {*REVIEWERS, *LEADS}


def could_decide(payload: object) -> bool:
    return isinstance(payload, dict) and str(payload.get("by")) in PEOPLE


decision_like = st.fixed_dictionaries(
    {}, optional={"by": odd_values | st.text(max_size=20), "request_id": odd_values, "comment": odd_values,
                  "approved": odd_values, "extra": odd_values},
)
def encodable(payload: object) -> bool:
    """What a client can send at all (a lone surrogate, say, never leaves the caller)."""
    try:
        DATA_CONVERTER.payload_converter.to_payloads([payload])
    except Exception:  # noqa: BLE001
        return False
    return True


payloads = st.one_of(json_values, decision_like, odd_values).filter(lambda p: not could_decide(p) and encodable(p))


def collect(strategy, examples: int) -> list:
    """Draw `examples` values from a strategy, reproducibly, for a property checked inside one async test."""
    drawn = []

    @fuzz(examples)
    @given(strategy)
    def draw(value):
        drawn.append(value)

    draw()
    return drawn


RAW_PAYLOADS = [
    Payload(metadata={"encoding": b"no/such-encoding"}, data=b"{}"),
    Payload(metadata={"encoding": b"json/plain"}, data=b"{not json"),
    Payload(metadata={"encoding": b"json/plain"}, data=b"[" * 100_000),
    Payload(metadata={"encoding": b"json/plain"}, data=b"\xff\xfe"),
    Payload(metadata={"encoding": b"binary/null"}),
    Payload(metadata={"encoding": b"binary/plain"}, data=b"\x00\x01"),
    Payload(metadata={"encoding": b"json/protobuf", "messageType": b"no.Such"}, data=b"{}"),
    Payload(metadata={}, data=b"{}"),
    Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({"junk": "x" * 600_000}).encode()),  # oversized
]


async def test_any_decision_payload_is_refused_or_recorded_and_the_run_can_still_be_approved(time_env, config):
    junk = collect(payloads, 40)
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        handle = time_env.client.get_workflow_handle(run_id, result_type=RunOutcome[dict])
        signals = 0
        try:
            for payload in junk:
                await refused_update(handle, "decide", payload)  # the update answers the caller
                # A signal cannot answer: the run records it as refused.
                await handle.signal("approve" if signals % 2 else "reject", payload)
                signals += 1
            for raw in RAW_PAYLOADS:
                await handle.signal("approve", RawValue(raw))
                signals += 1
                await refused_update(handle, "decide", RawValue(raw))
            await refused_update(handle, "decide", args=[{"by": REVIEWERS[0]}, "extra"])
            for args in ([], [{"by": REVIEWERS[0]}, "extra"], [None, None, None]):
                await handle.signal("approve", args=args)
                signals += 1
            for by, request_id in [("mallory", None), ("", None), (REVIEWERS[0], "nope"), ("x" * 10_000, "\x00"),
                                   (LEADS[0], "compliance_review"), (REVIEWERS[0], "")]:
                with pytest.raises((Refused, InputError)):
                    await baton.approve(run_id, by=by, request_id=request_id)
                with pytest.raises((Refused, InputError)):
                    await baton.reject(run_id, by=by, request_id=request_id, comment="🙂" * 1000)
            kept = min(signals, MAX_REFUSALS_RECORDED)  # the rest are counted (tests/test_identity.py floods)
            refused = await refusals(baton, run_id, kept)
            status = await counted(baton, run_id, signals)
            assert await task_failures(time_env.client, run_id) == []
            assert (len(refused), status.refused_signals) == (kept, signals), "a signal left no trace"
            assert all(e.detail.split(" signal refused: ")[1] for e in refused)
            assert status.state is RunState.AWAITING_APPROVAL and [r.id for r in status.open_requests] == ["compliance_review"]

            await baton.approve(run_id, by=REVIEWERS[0], request_id="compliance_review", comment="checked")
            outcome = await asyncio.wait_for(handle.result(), 60)
        finally:
            await terminate_if_running(handle)
    assert outcome.state is RunState.COMPLETED and outcome.result["reviewed_by"] == REVIEWERS[0], outcome.reason
    assert await task_failures(time_env.client, run_id) == []


async def terminate_if_running(handle: WorkflowHandle) -> None:
    try:
        await handle.terminate("test over")  # a parked run would hold back the shared server's clock
    except RPCError:
        pass  # already closed


@pytest.mark.parametrize(
    ("args", "why"),
    [([None], "the payload is NoneType, not a decision"),  # `handle.signal("approve", None)`: crashed the task
     ([{"by": REVIEWERS[0]}, "extra"], "the signal carried 2 payloads"),  # `--input A --input B`: crashed the task
     ([RawValue(Payload(metadata={"encoding": b"no/such"}, data=b"{}"))], "cannot be read as a decision")],
)
async def test_regression_a_null_or_doubled_signal_payload_is_refused_not_a_stuck_run(time_env, config, args, why):
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        handle = time_env.client.get_workflow_handle(run_id, result_type=RunOutcome[dict])
        try:
            await handle.signal("approve", args=args)
            refused = await refusals(baton, run_id, 1)
            assert await task_failures(time_env.client, run_id) == []
            await baton.approve(run_id, by=REVIEWERS[0])
            outcome = await asyncio.wait_for(handle.result(), 60)
        finally:
            await terminate_if_running(handle)
    assert len(refused) == 1 and why in refused[0].detail
    assert outcome.state is RunState.COMPLETED, outcome.reason


async def test_whatever_validate_input_accepts_runs_without_a_crashed_task(time_env, config):
    accepted: dict[str, list] = {process: [] for process in PROCESSES}
    for process, data in collect(near_valid(), 300):
        try:
            value = validate_input(process, data)
        except InputError:
            continue
        if value not in accepted[process]:
            accepted[process].append(value)
    sample = [(p, v) for p, values in accepted.items() for v in values[:4]]
    assert {p for p, _ in sample} == set(PROCESSES), accepted  # the generator reaches every process
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        handles = [time_env.client.get_workflow_handle(await baton.start(p, v)) for p, v in sample]
        try:
            # Skip time until every run has ended: deadlines and the wall-clock cap end parked ones.
            for _ in range(30):
                if all([(await h.describe()).status != WorkflowExecutionStatus.RUNNING for h in handles]):
                    break
                await time_env.sleep(timedelta(hours=12))
        finally:
            for h in handles:
                await terminate_if_running(h)
        for h in handles:
            assert await task_failures(time_env.client, h.id) == []
        await still_works(baton)


async def answered_or_refused(query) -> None:
    """A query with junk is answered or fails to its caller, quickly; either way the run is untouched."""
    try:
        await asyncio.wait_for(query, 10)
    except (WorkflowQueryFailedError, RPCError) as err:
        assert str(err)


async def test_unknown_signals_queries_and_updates_do_not_crash_the_run(time_env, config):
    junk = collect(payloads, 10)
    async with running_worker(time_env.client, config) as w:
        baton = Baton(time_env.client, w.task_queue)
        run_id = await baton.start("onboarding", PEP)
        await wait_for_state(baton, run_id, RunState.AWAITING_APPROVAL)
        handle = time_env.client.get_workflow_handle(run_id, result_type=RunOutcome[dict])
        try:
            for name, arg in zip(["", "approv", "APPROVE", "decide", "status", "ledger", "🙂", "x" * 1000] * 2, junk * 2):
                await handle.signal(name, arg)
                await answered_or_refused(handle.query(name, arg))
                await refused_update(handle, name, arg)
            for query in ("status", "ledger"):  # known queries with arguments they do not take
                await answered_or_refused(handle.query(query, args=junk[:2]))
            await refused_update(handle, "approve", {"by": REVIEWERS[0]})  # a signal's name, as an update
            assert (await baton.status(run_id)).state is RunState.AWAITING_APPROVAL
            assert await task_failures(time_env.client, run_id) == []
            await baton.approve(run_id, by=REVIEWERS[0])
            outcome = await asyncio.wait_for(handle.result(), 60)
        finally:
            await terminate_if_running(handle)
    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert await task_failures(time_env.client, run_id) == []


CLI_CASES = {
    "not-json.json": b"{oops",
    "list.json": b"[1, 2]",
    "latin1.json": b'{"deal_id": "D-\xe9"}',
    "deep.json": b"[" * 100_000,
    "bad-email.json": json.dumps({**CLEAR, "email": "ada@@example.com"}).encode(),
    "infinite-budget.json": b'{"deal_id": "D-501", "budget": {"max_cost_usd": 1e400}}',
    "zero-cap.json": b'{"deal_id": "D-501", "budget": {"max_steps": 0}}',
    "unknown-cap.json": b'{"deal_id": "D-501", "budget": {"max_everything": 1}}',
}


@pytest.mark.parametrize("name", sorted(CLI_CASES))
def test_baton_run_refuses_bad_input_in_one_line_with_exit_2_and_starts_nothing(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(CLI_CASES[name])
    process = "onboarding" if name == "bad-email.json" else "sales-followup"
    # No server listens there: a run that got as far as connecting would exit 1, not 2.
    env = {"PATH": "/usr/bin:/bin", "TEMPORAL_ADDRESS": "127.0.0.1:1", "OTEL_SDK_DISABLED": "true"}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "baton"), "run", process, "--input", str(path)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and done.stderr.count("\n") == 1 and done.stderr.startswith("baton: "), done.stderr


# ----- 6. bad input past the door: a plain `temporal workflow start` ------------------------------
# Anyone who can reach the namespace can start a run without `baton run`'s checks. Such a run must
# end at once, failed in Temporal and typed for Baton, naming what is wrong and never echoing it.

DEEP_FOR_THE_CLI = 5_000  # the `temporal` CLI itself refuses JSON nested more than 10,000 deep
RAW_STARTS = {  # case: (the input as sent, words the failure must name, text it must not show)
    "invalid-email": (json.dumps({**CLEAR, "email": "not-an-email"}), ["email"], ["not-an-email"]),
    "600 KB": (json.dumps({**CLEAR, "notes": "private " * 75_000}), ["600,", "bytes"], ["private"]),  # under the server's 640 KiB
    f"{DEEP_FOR_THE_CLI:,} deep": ('{"a":' * DEEP_FOR_THE_CLI + "1" + "}" * DEEP_FOR_THE_CLI, ["JSON", "recursion"], ['{"a"']),
    "100,000 deep, by SDK": ("[" * 100_000 + "]" * 100_000, ["JSON", "recursion"], ["[["]),
    "no input": ("", ["onboarding takes", "applicant", "got 0"], []),  # `temporal workflow start` without --input
    "binary/null, by SDK": ("", ["applicant", "no value"], []),  # decodes to None whatever the type
}


async def start_raw(stack: Stack, case: str, tmp_path: Path) -> str:
    """Start an onboarding run the way a user of plain Temporal would, with no Baton check in between."""
    run_id = f"raw-{uuid.uuid4().hex[:8]}"
    text = RAW_STARTS[case][0]
    if case.endswith("by SDK"):  # what the CLI cannot send: JSON deeper than it takes, a payload with no JSON
        encoding = b"binary/null" if case.startswith("binary/null") else b"json/plain"
        payload = Payload(metadata={"encoding": encoding}, data=text.encode())
        await stack.client.start_workflow("onboarding", RawValue(payload), id=run_id, task_queue=stack.queue)
        return run_id
    path = tmp_path / "input.json"
    path.write_text(text)
    given = ["--input-file", path] if text else []
    started = await temporal("workflow", "start", "--type", "onboarding", "--task-queue", stack.queue,
                             "--workflow-id", run_id, *given, env=stack.env)
    assert started.rc == 0, str(started)
    return run_id


@pytest.mark.integration
@pytest.mark.parametrize("case", list(RAW_STARTS))
async def test_a_raw_start_with_bad_input_fails_at_once_naming_the_problem_not_the_value(stack, tmp_path, case):
    _, named, hidden = RAW_STARTS[case]
    run_id = await start_raw(stack, case, tmp_path)
    handle = stack.client.get_workflow_handle(run_id)
    with pytest.raises(WorkflowFailureError) as ended:
        await asyncio.wait_for(handle.result(), 30)
    failure = ended.value.cause
    assert isinstance(failure, ApplicationError), repr(failure)
    assert (failure.type, failure.non_retryable) == ("InvalidInput", True)
    assert all(word in failure.message for word in named), failure.message
    assert (await handle.describe()).status is WorkflowExecutionStatus.FAILED  # the Web UI's Failures filter
    assert await task_failures(stack.client, run_id) == []
    closing = (await handle.fetch_history()).events[-1]
    assert closing.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
    recorded = str(closing.workflow_execution_failed_event_attributes.failure)  # message, cause, stack, details
    for value in (*hidden, CLEAR["name"], CLEAR["email"], CLEAR["document_number"]):
        assert value not in recorded, f"{value!r} echoed in the failure: {recorded[:2000]}"

    outcome = await stack.baton.result(run_id)  # the SDK's typed answer, for a run that never ran
    assert (outcome.process, outcome.state, outcome.steps, outcome.cost_usd) == ("onboarding", RunState.FAILED, 0, 0)
    assert outcome.reason == failure.message

    async def listed_failed():
        return [r for r in await stack.baton.runs(status="failed") if r.run_id == run_id]

    (summary,) = await eventually(listed_failed, f"{run_id} in Baton.runs(status='failed')")
    assert (summary.process, summary.status, summary.temporal_status) == ("onboarding", "failed", "FAILED")


@pytest.mark.integration
async def test_every_baton_command_answers_for_a_run_that_failed_on_its_input(stack, tmp_path):
    """`baton runs`, `status`, `ledger`, `audit`, `approve` and `report` on it: clear answers, no traceback."""
    run_id = await start_raw(stack, "invalid-email", tmp_path)
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(stack.client.get_workflow_handle(run_id).result(), 30)
    env = stack.env

    async def listed_by_cli():
        found = (await baton_cli("runs", "--status", "failed", "--json", env=env)).json()
        return [r for r in found if r["run_id"] == run_id]

    (row,) = await eventually(listed_by_cli, f"{run_id} in `baton runs --status failed`")
    assert (row["process"], row["status"]) == ("onboarding", "failed")
    for filters in ([], ["--process", "onboarding"], ["--process", "onboarding", "--status", "failed"]):
        found = (await baton_cli("runs", *filters, "--json", env=env)).json()
        assert run_id in [r["run_id"] for r in found], filters
    for filters in (["--process", "sales-followup"], ["--status", "completed"], ["--status", "running"]):
        found = (await baton_cli("runs", *filters, "--json", env=env)).json()
        assert run_id not in [r["run_id"] for r in found], filters
    results = {
        name: await baton_cli(*args, env=env)
        for name, args in {
            "status": ("status", run_id, "--json"),
            "status text": ("status", run_id),
            "ledger": ("ledger", run_id),
            "audit": ("audit", run_id, "--json"),
            "approve": ("approve", run_id, "--by", REVIEWERS[0]),
            "report": ("report", "--json"),
        }.items()
    }
    for name, result in results.items():
        assert "Traceback" not in result.err and "not-an-email" not in result.out + result.err, f"{name}: {result}"

    assert results["status"].rc == 0, str(results["status"])
    status = results["status"].json()
    assert (status["process"], status["state"], status["steps"], status["open_requests"]) == ("onboarding", "failed", 0, [])
    assert "email" in status["reason"]
    assert results["status text"].rc == 0 and "failed" in results["status text"].out
    ledger = results["ledger"]
    assert ledger.rc == 0 and ledger.out.count("\n") == 1 and "no steps" in ledger.out and "email" in ledger.out, str(ledger)
    assert results["audit"].rc == 0, str(results["audit"])
    audited = results["audit"].json()
    assert (audited["run"]["state"], audited["run"]["temporal_status"], audited["steps"]) == ("failed", "failed", [])
    assert "email" in audited["run"]["reason"]
    approve = results["approve"]
    assert approve.rc == 2 and len(approve.err_lines) == 1 and "no longer running" in approve.err, str(approve)
    report = results["report"]
    assert report.rc == 0, str(report)
    (onboarding,) = [p for p in report.json()["processes"] if p["process"] == "onboarding"]
    assert onboarding["by_state"].get("failed", 0) >= 1 and report.json()["unreadable"] == []
