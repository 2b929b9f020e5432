"""A run reconstructed from its workflow history alone: no worker, no live query.

An auditor must be able to read a run after every worker is gone, and a
report must not depend on workers answering queries for hundreds of runs. The
history is the record Temporal keeps anyway, so we replay it locally on the
shipped workflow classes and ask the replayed instance the same `ledger` and
`status` queries a worker would answer.

How the state is read. The replayer evicts the instance once the history is
used up, and eviction cancels the run's pending tasks: code that catches the
cancellation (a bounded agent records its interrupted step) would change the
state we read. So a wrapped runner sends the instance one query-only
activation per query just before the eviction: the workflow's own query
handlers answer, inside its event loop, through the data converter, exactly
as for `baton status`; the answers are decoded outside into today's models.
Replay runs unsandboxed: it only reads, and nondeterminism is still caught by
the core's command matching.

The rest comes from history events: workflow type, Temporal run id, start and
close times, how Temporal closed it, the static summary, the input (and its
business key) and its RunOutcome: a completed run's result, or the details of
the failure a failed, over-budget or timed-out end closes the run with. A run
Temporal failed on its input (worker/converter.py) never ran: it answers no
query, and is recorded as failed, with no step, from that failure.
"""

from __future__ import annotations

import copy
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio.api.enums.v1 import EventType
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, WorkflowRunner

from client.sdk import InputError, UnknownRun, never_ran, outcome_of_failure
from worker.codec import DecryptionError
from worker.undecodable import forgiving
from worker.connection import header_behavior
from worker.converter import DATA_CONVERTER, INVALID_INPUT, OpenedPayloads
from worker.payload_store import StoredPayloadMissing
from worker.run_input import RunInputCheck
from workflows.registry import REGISTRY
from workflows.ledger import LedgerEntry
from workflows.outcome import RunOutcome
from workflows.status import RunStatus

CLOSING_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: "completed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: "failed",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: "timed_out",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: "terminated",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: "canceled",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "continued_as_new",
}
QUERIES = {"ledger": list[LedgerEntry], "status": RunStatus}


class ReplayFailed(Exception):
    """The history does not replay on this code; nothing can be read from it."""


class RunRecord(BaseModel):
    """Everything known about one run, from its history."""

    run_id: str  # the workflow id: what every `baton` command calls the run
    temporal_run_id: str
    workflow_type: str
    process: str  # the engine's name: `support-triage`, or `support-triage/returns_agent` for an agent
    business_key: str | None
    summary: str | None
    input: Any = None
    started_at: datetime
    closed_at: datetime | None
    close_status: str | None  # how Temporal closed it (completed, terminated, ...); None while open
    audit_values: str = "digests"  # the run's policy: may an export show inputs ("full"), or only digests
    outcome: RunOutcome[dict] | None
    status: RunStatus
    ledger: list[LedgerEntry]

    @property
    def is_open(self) -> bool:
        return self.close_status is None

    @property
    def state(self) -> str:
        """The engine's state; for a run Temporal closed under it (terminated, say), how it was closed."""
        if self.status.state.is_final or self.is_open:
            return self.status.state.value
        return self.close_status

    @property
    def is_agent(self) -> bool:
        return "/" in self.process


async def run_record(client: Client, run_id: str, temporal_run_id: str | None = None) -> RunRecord:
    """Fetch a run's history from Temporal (its latest run, or the one named) and reconstruct it locally."""
    try:
        history = await client.get_workflow_handle(run_id, run_id=temporal_run_id).fetch_history()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise UnknownRun(f"no run {run_id!r} in namespace {client.namespace!r}") from err
        raise
    return await run_record_from_history(history, client.data_converter)


def history_from_file(run_id: str, path: Path) -> WorkflowHistory:
    """A history saved as JSON (`fetch_history().to_json()`, `temporal workflow show --output json`).

    Such a file does not hold the workflow id, so the caller names the run.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from err
    try:
        history = WorkflowHistory.from_json(run_id, text)
    except Exception as err:  # json and protobuf parse errors alike: the file is not a history
        raise InputError(f"{path} is not a workflow history: {str(err).splitlines()[0][:200]}") from err
    if not history.events:
        raise InputError(f"{path} is not a workflow history: it holds no events")
    return history


async def run_record_from_history(history: WorkflowHistory, converter: DataConverter = DATA_CONVERTER) -> RunRecord:
    """Reconstruct a run from a history (fetched, or read with `WorkflowHistory.from_json`).

    `converter` is the one the run was written with: its codec decrypts the
    payloads (worker/codec.py); a payload it cannot open fails the reconstruction.
    """
    if not history.events or not history.events[0].HasField("workflow_execution_started_event_attributes"):
        raise ReplayFailed(f"{history.workflow_id}: not a workflow history (no start event)")
    try:
        answers = await _replay(history, converter)
    except ReplayFailed:
        await _readable(history, converter)  # a payload no key opens is named, rather than a failed replay
        raise
    history = await _readable(history, converter)
    started = history.events[0]
    attrs = started.workflow_execution_started_event_attributes
    last = history.events[-1]
    close_status = CLOSING_EVENTS.get(last.event_type)
    outcome = _decode_outcome(last, attrs.workflow_type.name)
    if outcome is not None and _refused_input(last) and not _answered(answers):
        status, ledger = never_ran(outcome), []
    else:
        status, ledger = _checked(history, answers)
    data, key = _decode_input(status.process, attrs.input.payloads)
    return RunRecord(
        run_id=history.workflow_id,
        temporal_run_id=attrs.original_execution_run_id,
        workflow_type=attrs.workflow_type.name,
        process=status.process,
        business_key=key,
        summary=_decode(started.user_metadata.summary, str) if started.user_metadata.HasField("summary") else None,
        input=data,
        started_at=started.event_time.ToDatetime().replace(tzinfo=timezone.utc),
        closed_at=last.event_time.ToDatetime().replace(tzinfo=timezone.utc) if close_status else None,
        close_status=close_status,
        audit_values=_audit_values(history, data),
        outcome=outcome,
        status=status,
        ledger=ledger,
    )


def _answered(answers: dict[str, Any]) -> bool:
    return all(q in answers and not isinstance(answers[q], str) for q in QUERIES)


def _checked(history: WorkflowHistory, answers: dict[str, Any]) -> tuple[RunStatus, list[LedgerEntry]]:
    """The replayed run's status and ledger; ReplayFailed when it did not answer both."""
    missing = [q for q in QUERIES if q not in answers]
    if missing:
        raise ReplayFailed(f"{history.workflow_id}: the replayed run answered no {missing[0]} query")
    for name, answer in answers.items():
        if isinstance(answer, str):
            raise ReplayFailed(f"{history.workflow_id}: the replayed run refused the {name} query: {answer}")
    return answers["status"], answers["ledger"]


# ----- replay --------------------------------------------------------------------------

_shared: dict[str, Any] = {}
_shared_lock = threading.Lock()


def _quiet() -> tuple[Runtime, ThreadPoolExecutor]:
    """One runtime that logs nothing (a failed replay is reported as one line, not core's warnings)
    and one bounded thread pool, shared by every replay in the process."""
    with _shared_lock:
        if not _shared:
            _shared["runtime"] = Runtime(telemetry=TelemetryConfig(logging=None, metrics=None))
            _shared["executor"] = ThreadPoolExecutor(max_workers=8, thread_name_prefix="baton-replay")
        return _shared["runtime"], _shared["executor"]


async def _readable(history: WorkflowHistory, converter: DataConverter) -> WorkflowHistory:
    """`_opened` with `converter`; ReplayFailed naming what cannot be read (a missing key, a missing stored payload)."""
    try:
        return await _opened(history, OpenedPayloads(converter) if converter.external_storage else converter.payload_codec)
    except (DecryptionError, StoredPayloadMissing) as err:
        raise ReplayFailed(f"cannot read {history.workflow_id}: {err}") from None


async def _opened(history: WorkflowHistory, codec: PayloadCodec | None) -> WorkflowHistory:
    """A copy of `history` whose payloads read outside the replay (input, summary, end, policy) are decoded."""
    if codec is None:
        return history
    events = [copy.deepcopy(e) for e in history.events]
    started = events[0]
    await codec.decode_wrapper(started.workflow_execution_started_event_attributes.input)
    if started.user_metadata.HasField("summary"):
        started.user_metadata.summary.CopyFrom((await codec.decode([started.user_metadata.summary]))[0])
    last = events[-1]
    if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
        await codec.decode_wrapper(last.workflow_execution_completed_event_attributes.result)
    elif last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        await codec.decode_failure(last.workflow_execution_failed_event_attributes.failure)
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            for payloads in event.marker_recorded_event_attributes.details.values():
                await codec.decode_wrapper(payloads)
    return WorkflowHistory(history.workflow_id, events)


async def _replay(history: WorkflowHistory, converter: DataConverter) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    runner = _QueryBeforeEviction(UnsandboxedWorkflowRunner(), answers)
    runtime, executor = _quiet()
    replayer = Replayer(
        workflows=REGISTRY.workflows(),
        data_converter=forgiving(converter),  # as the worker decodes: a forged signal is dropped, not a failed replay
        header_codec_behavior=header_behavior(converter),  # the starter's token, sealed as the client sealed it
        interceptors=[RunInputCheck()],  # replays as the worker ran it (worker/run_input.py)
        workflow_runner=runner,
        unsandboxed_workflow_runner=runner,
        workflow_task_executor=executor,
        runtime=runtime,
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is not None:
        raise ReplayFailed(_failure_line(history, result.replay_failure))
    return answers  # each a decoded answer, or the query's failure message


def _failure_line(history: WorkflowHistory, failure: Exception) -> str:
    """One line: what broke (the core's message, without its Rust debug wrapping) and what it means."""
    text = str(getattr(failure, "message", None) or failure)
    found = re.search(r'message: "((?:[^"\\]|\\.)*)"', text)
    message = (found[1] if found else text).strip().splitlines()[0][:300] if text.strip() else type(failure).__name__
    nondeterministic = "nondetermin" in text.lower()
    workflow_type = history.events[0].workflow_execution_started_event_attributes.workflow_type.name
    return (
        f"cannot reconstruct {history.workflow_id}: its history does not replay on this code "
        f"({'nondeterminism: ' if nondeterministic and 'nondetermin' not in message.lower() else ''}{message}); "
        f"it was recorded by code that ran {workflow_type!r} differently: read it with the Baton version that ran it"
    )


class _QueryBeforeEviction(WorkflowRunner):
    """Wraps a runner so each instance answers QUERIES right before it is evicted."""

    def __init__(self, inner: WorkflowRunner, answers: dict[str, Any]) -> None:
        self._inner = inner
        self._answers = answers

    def prepare_workflow(self, defn) -> None:
        self._inner.prepare_workflow(defn)

    def create_instance(self, det):
        return _Instance(self._inner.create_instance(det), self._answers)

    def set_worker_level_failure_exception_types(self, types) -> None:
        self._inner.set_worker_level_failure_exception_types(types)


class _Instance:
    """A workflow instance that, before eviction, is asked QUERIES as a worker would ask them."""

    def __init__(self, inner, answers: dict[str, Any]) -> None:
        self._inner = inner
        self._answers = answers
        self._last: WorkflowActivation | None = None

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def activate(self, act: WorkflowActivation):
        if any(job.HasField("remove_from_cache") for job in act.jobs):
            if self._last is not None:
                self._ask(self._last)
        elif not any(job.HasField("query_workflow") for job in act.jobs):
            self._last = act
        return self._inner.activate(act)

    def _ask(self, last: WorkflowActivation) -> None:
        for name, result_type in QUERIES.items():
            query = WorkflowActivation()
            query.CopyFrom(last)  # same run id and clock as the last task: what a live query sees
            del query.jobs[:]
            job = query.jobs.add().query_workflow
            job.query_id, job.query_type = f"baton-record-{name}", name
            completion = self._inner.activate(query)
            responses = [c.respond_to_query for c in completion.successful.commands if c.HasField("respond_to_query")]
            if not responses:
                self._answers[name] = completion.failed.failure.message or "no answer"
            elif responses[0].HasField("failed"):
                self._answers[name] = responses[0].failed.message
            else:
                self._answers[name] = _decode(responses[0].succeeded.response, result_type)


# ----- events --------------------------------------------------------------------------


def _decode(payload, type_hint):
    return DATA_CONVERTER.payload_converter.from_payload(payload, type_hint)


def _decode_input(process: str, payloads) -> tuple[Any, str | None]:
    """The run's input as plain data, and its business key when the process's input model still takes it.

    Agents (`process/agent`) have no business key of their own: their parent's run carries it.
    """
    if not payloads:
        return None, None
    try:
        data = _decode(payloads[0], Any)
    except (ValidationError, ValueError):  # not JSON a run could read (nested too deep, say): no value to show
        return None, None
    spec = REGISTRY.known().get(process)
    if spec is None or not hasattr(spec.input, "business_key"):
        return data, None
    try:
        return data, spec.input.model_validate(data).business_key()
    except ValidationError:
        return data, None


def _audit_values(history: WorkflowHistory, data: Any) -> str:
    """What the run's policy lets an audit show of inputs; "digests" unless it provably says "full".

    A run loads its policy in a local activity, whose result is in the history's
    marker: `run_policy` for a process, `agent_policy` for an agent. An agent
    recorded before it loaded its own was handed its parent's in its task.
    """
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
            continue
        details = event.marker_recorded_event_attributes.details
        try:
            kind = _decode(details["data"].payloads[0], dict).get("activity_type")
            if kind not in ("run_policy", "agent_policy"):
                continue
            policy = _decode(details["result"].payloads[0], dict)
            policy = (policy.get("policy") or {}) if kind == "agent_policy" else policy
            return policy.get("audit_values") or "digests"
        except (KeyError, IndexError, ValueError, TypeError):
            continue
    if isinstance(data, dict) and isinstance(data.get("policy"), dict):
        return data["policy"].get("audit_values") or "digests"
    return "digests"


def _decode_outcome(last, workflow_type: str) -> RunOutcome[dict] | None:
    """The RunOutcome a closed run returned, or failed with (client/sdk.py `outcome_of_failure`)."""
    try:
        if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
            failure = DATA_CONVERTER.failure_converter.from_failure(
                last.workflow_execution_failed_event_attributes.failure, DATA_CONVERTER.payload_converter)
            return outcome_of_failure(failure, workflow_type)
        if last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            return None
        payloads = last.workflow_execution_completed_event_attributes.result.payloads
        return _decode(payloads[0], RunOutcome[dict]) if payloads else None
    except (ValidationError, ValueError, TypeError):
        return None


def _refused_input(last) -> bool:
    """Whether Temporal closed the run as Failed on its input (worker/converter.py)."""
    return (last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
            and last.workflow_execution_failed_event_attributes.failure.application_failure_info.type == INVALID_INPUT)
