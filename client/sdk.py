"""The Baton SDK: start runs, read their status and ledger, decide approvals, list runs.

Everything goes through Temporal: runs are workflows, status and ledger are
queries, decisions are an update (a synchronous, validated answer), lists are
visibility queries over Baton's search attributes.

A run that ends `failed`, `budget_exceeded` or `timed_out` is Failed in
Temporal, its RunOutcome in the failure's details; a run started past
`baton run` with input it cannot take fails before its first step (type
InvalidInput, worker/converter.py). The SDK reads both back as RunOutcomes.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ValidationError
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError, CancelledError, TerminatedError
from temporalio.exceptions import TimeoutError as TimedOut
from temporalio.service import RPCError, RPCStatusCode

from activities.spend import AcrossRuns, SpendWindow, entity_id
from activities.subject import subject_key
from client.credentials import (
    NoCredential,
    TokenProvider,
    claimed_subject,
    cli_token,
    credentials_of,
    required,
    with_credentials,
)
from worker.connection import connect, sealing_headers, task_queue
from worker.converter import INVALID_INPUT, MAX_PAYLOAD_BYTES
from workflows import search_attributes as sa
from workflows import visibility
from workflows.approvals import ApprovalRequest, Verdict
from workflows.registry import REGISTRY, ProcessSpec
from workflows.ledger import LedgerEntry, StepKind
from workflows.outcome import RunOutcome, RunState
from workflows.status import RunStatus

QUERY_TIMEOUT = timedelta(seconds=15)


class InputError(ValueError):
    """Bad input to a run: nothing was started."""


class UnknownRun(LookupError):
    pass


class Refused(Exception):
    """The run refused a decision (unknown request, already decided, ...); nothing changed."""


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    process: str | None
    status: str | None
    cost_usd: float | None
    awaiting_approval: bool | None
    started: datetime | None
    temporal_status: str


@dataclass(frozen=True)
class InboxItem:
    """One open approval request, with the run it belongs to."""

    run_id: str
    process: str
    request: ApprovalRequest


@dataclass(frozen=True)
class Inbox:
    items: list[InboxItem]
    unreadable: list[str]  # runs visibility lists as waiting whose details no worker gave


def read_input(path: Path) -> dict:
    """Read a JSON input file, with one clear line for every way that can fail."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text: byte {err.start} cannot be decoded") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from err
    except RecursionError as err:
        raise InputError(f"{path} is nested too deeply to be an input") from err
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def process_spec(process: str) -> ProcessSpec:
    spec = REGISTRY.known().get(process)
    if spec is None:
        raise InputError(f"unknown process {process!r} (installed: {', '.join(sorted(REGISTRY.known()))})")
    return spec


def validate_input(process: str, data: dict | BaseModel) -> BaseModel:
    spec = process_spec(process)
    if isinstance(data, spec.input):
        return data
    if not isinstance(data, (dict, BaseModel)):
        raise InputError(f"invalid input for {process}: a JSON object is needed, not {type(data).__name__}")
    try:
        value = spec.input.model_validate(data if isinstance(data, dict) else data.model_dump())
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(input)"
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise InputError(f"invalid input for {process}: field {field!r}: {first['msg']}{more}") from err
    size = len(value.model_dump_json().encode())
    if size > MAX_PAYLOAD_BYTES:  # the run would refuse it (worker/converter.py): refuse it here instead
        raise InputError(f"invalid input for {process}: {size:,} bytes, more than the {MAX_PAYLOAD_BYTES:,} a run takes")
    return value


def verdict(**fields) -> Verdict:
    """A decision as the `decide` update takes it; InputError names the field that is not right (`--by ""`)."""
    try:
        return Verdict(**fields)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(decision)"
        raise InputError(f"invalid decision: {field}: {first['msg']}") from err


def outcome_of_failure(failure: BaseException | None, workflow_type: str) -> RunOutcome[dict] | None:
    """The RunOutcome of a run Temporal closed as Failed, if Baton failed it; None for any other failure.

    An end Baton fails in Temporal carries its RunOutcome as the failure's details
    (workflows/engine.py); a run refused for its input never ran a step.
    """
    if not isinstance(failure, ApplicationError):
        return None
    if failure.type == INVALID_INPUT:
        return RunOutcome[dict](process=workflow_type, state=RunState.FAILED, reason=failure.message,
                                cost_usd=0, steps=0)
    if failure.type not in {s.value for s in RunState if s.fails_in_temporal} or not failure.details:
        return None
    try:
        return RunOutcome[dict].model_validate(failure.details[0])
    except ValidationError:
        return None


def never_ran(outcome: RunOutcome[dict]) -> RunStatus:
    """The status of a run Temporal failed on its input: its end, before any step."""
    return RunStatus(process=outcome.process, state=outcome.state, reason=outcome.reason, current_step=None,
                     steps=0, cost_usd=0, budget=None, open_requests=[])


class Baton:
    """Baton's runs on one Temporal client, acting for whoever `tokens` proves.

    `tokens` gives the token a start or a decision carries (client/credentials.py);
    without it, the credentials the client was given, if any. `connect()` takes the
    CLI's: `BATON_TOKEN`, else what `baton login` stored.
    """

    def __init__(self, client: Client, queue: str | None = None, tokens: TokenProvider | None = None) -> None:
        given = credentials_of(client)
        client = sealing_headers(client)  # a start's header carries a bearer token: sealed like any payload
        self.client = with_credentials(client, tokens) if tokens else client
        self.queue = queue or task_queue()
        self._tokens = tokens or (given.tokens if given else None)

    @classmethod
    async def connect(cls, tokens: TokenProvider | None = cli_token) -> Baton:
        return cls(await connect(), tokens=tokens)

    async def start(self, process: str, data: dict | BaseModel, run_id: str | None = None) -> str:
        """Validate the input, then start the run; returns the run id (the workflow id)."""
        value = validate_input(process, data)
        spec = REGISTRY.known()[process]
        key = value.business_key() if hasattr(value, "business_key") else ""
        run_id = run_id or f"{process}-{key}-{uuid.uuid4().hex[:6]}".replace("--", "-")
        await self.client.start_workflow(
            spec.workflow.run,
            value,
            id=run_id,
            task_queue=self.queue,
            static_summary=visibility.run_summary(process, key),
            search_attributes=visibility.at_start(process),
        )
        return run_id

    async def result(self, run_id: str) -> RunOutcome[dict]:
        """Wait for the run to end; the process's own result comes back as plain data.

        Ends Temporal records as Failed come back typed too; a run Temporal ended
        otherwise (terminated, cancelled, timed out) raises WorkflowFailureError.
        """
        handle = self.client.get_workflow_handle(run_id, result_type=RunOutcome[dict])
        try:
            return await handle.result()  # one long poll: the run is described only when it failed or is not there
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise self._unknown(run_id) from err
            raise
        except WorkflowFailureError as err:
            outcome = outcome_of_failure(err.cause, (await handle.describe()).workflow_type)
            if outcome is None:
                raise
            return outcome

    async def spend_window(self, process: str, cap: AcrossRuns) -> SpendWindow | None:
        """The current window of `process`'s cap across runs, as its entity counts it; None before any request."""
        handle = self.client.get_workflow_handle(entity_id(process, cap.window, self.queue))
        try:
            return await handle.query("window", result_type=SpendWindow)
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return None
            raise

    async def status(self, run_id: str) -> RunStatus:
        """The run's live status; for a run that failed on its input (it never ran), that end.

        A run Temporal closed itself (terminated past its history limit, or by a caller;
        cancelled; timed out) still answers the query with the state it was in, say
        awaiting approval: it is reported failed, with Temporal's reason, and nothing open.
        """
        try:
            status = await self._query(run_id, "status", RunStatus)
        except (WorkflowQueryFailedError, RPCError):
            refused = await self._refused_input(run_id)
            if refused is None:
                raise
            return never_ran(refused)
        if status.state.is_final:
            return status
        ended = await self._ended_by_temporal(run_id)
        if ended is None:
            return status
        return status.model_copy(update={"state": RunState.FAILED, "reason": ended, "open_requests": []})

    async def ledger(self, run_id: str) -> list[LedgerEntry]:
        """The run's ledger; empty for a run that failed on its input (it never ran a step)."""
        try:
            return await self._query(run_id, "ledger", list[LedgerEntry])
        except (WorkflowQueryFailedError, RPCError):
            if await self._refused_input(run_id) is None:
                raise
            return []

    async def approve(self, run_id: str, by: str | None = None, request_id: str | None = None, comment: str = "") -> Verdict:
        """Approve as the person the token proves; `by`, when given, must be that person (a cross-check)."""
        return await self._decide(run_id, await self._verdict(by, request_id, comment, approved=True))

    async def reject(self, run_id: str, by: str | None = None, request_id: str | None = None, comment: str = "") -> Verdict:
        return await self._decide(run_id, await self._verdict(by, request_id, comment, approved=False))

    async def _verdict(self, by: str | None, request_id: str | None, comment: str, approved: bool) -> Verdict:
        if self._tokens is None:
            raise NoCredential("no credential: this Baton client was given no token provider")
        token = await required(self._tokens, by)
        return verdict(by=by, token=token, request_id=request_id, comment=comment, approved=approved)

    async def runs(
        self, status: str | None = None, process: str | None = None, limit: int = 50, subject: str | None = None,
    ) -> list[RunSummary]:
        """Baton's runs, newest first: those with its search attributes, and this queue's runs without them.

        A run started past `baton run` (plain `temporal workflow start`) gets the
        attributes in its first task; one refused for its input never has them,
        so its process is its workflow type and its status Temporal's (`failed`).
        `subject` (an e-mail, say) finds the runs about that person by the keyed
        digest they carry (activities/subject.py): the audit key is needed.
        """
        clauses = [runs_clause(self.queue)]
        if status:
            clauses.append(status_clause(status))
        if process:
            clauses.append(process_clause(process))
        if subject:
            clauses.append(f"{sa.SUBJECT.name} = '{quoted(subject_key(subject))}'")
        found = []
        async for wf in self.client.list_workflows(" AND ".join(clauses), limit=limit):
            attrs = wf.typed_search_attributes
            temporal_status = wf.status.name if wf.status else "UNKNOWN"
            baton_status = attrs.get(sa.STATUS)
            if baton_status in OPEN_STATES and wf.status is not WorkflowExecutionStatus.RUNNING:
                baton_status = None  # Temporal ended it (terminated, say) before Baton could: Temporal's word
            found.append(
                RunSummary(
                    run_id=wf.id,
                    process=attrs.get(sa.PROCESS) or wf.workflow_type,
                    status=baton_status or temporal_status.lower(),
                    cost_usd=attrs.get(sa.COST_USD),
                    awaiting_approval=attrs.get(sa.AWAITING_APPROVAL),
                    started=wf.start_time,
                    temporal_status=temporal_status,
                )
            )
        return found

    async def inbox(self, role: str | None = None, process: str | None = None, limit: int = 500) -> Inbox:
        """Every open request across this Baton's runs (its task queue), oldest first.

        Runs are found by visibility search; each one's requests come from its status query.
        """
        clauses = [
            f"{sa.AWAITING_APPROVAL.name} = true",
            "ExecutionStatus = 'Running'",
            f"TaskQueue = '{quoted(self.queue)}'",
        ]
        if role:
            clauses.append(f"{sa.APPROVAL_ROLES.name} = '{quoted(role)}'")
        if process:
            clauses.append(f"{sa.PROCESS.name} = '{quoted(process)}'")
        ids = [wf.id async for wf in self.client.list_workflows(" AND ".join(clauses), limit=limit)]
        statuses = await asyncio.gather(*(self.status(i) for i in ids), return_exceptions=True)
        items, unreadable = [], []
        for run_id, status in zip(ids, statuses):
            if isinstance(status, BaseException):
                unreadable.append(run_id)
                continue
            items += [
                InboxItem(run_id, status.process, r)
                for r in status.open_requests
                if role is None or role in r.roles
            ]
        return Inbox(sorted(items, key=lambda i: (i.request.requested_at, i.run_id)), unreadable)

    async def _decide(self, run_id: str, verdict: Verdict) -> Verdict:
        """One round trip: the run is looked up only when the update says it is not there."""
        try:
            return await self.client.get_workflow_handle(run_id).execute_update("decide", verdict, result_type=Verdict)
        except WorkflowUpdateFailedError as err:
            raise Refused(str(err.cause.message if err.cause else err)) from err
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                await self._handle(run_id)  # UnknownRun when there never was such a run
                earlier = await self._decided_before(run_id, verdict)
                if earlier is not None:
                    return earlier
                raise Refused(f"run {run_id} is no longer running") from err
            raise

    async def _decided_before(self, run_id: str, verdict: Verdict) -> Verdict | None:
        """The decision a closed run took for this request, when it is the one asked again (idempotent)."""
        decided = [
            e for e in await self.ledger(run_id)
            if e.kind is StepKind.APPROVAL and e.outcome in ("approved", "rejected") and e.by not in (None, "rule", "deadline")
            and verdict.request_id in (None, e.step)
        ]
        if len(decided) != 1:
            return None
        (e,) = decided
        if (e.by, e.outcome == "approved") != (verdict.by or claimed_subject(verdict.token), verdict.approved):
            return None
        return Verdict(by=e.by, request_id=e.step, approved=verdict.approved, comment=e.comment or "")

    async def _query(self, run_id: str, name: str, result_type):
        try:
            return await self.client.get_workflow_handle(run_id).query(
                name, result_type=result_type, rpc_timeout=QUERY_TIMEOUT
            )
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                await self._handle(run_id)  # UnknownRun when there never was such a run
            raise

    async def _refused_input(self, run_id: str) -> RunOutcome[dict] | None:
        """The outcome of a run Temporal failed on its input before its first step; None for any other run."""
        handle = self.client.get_workflow_handle(run_id, result_type=RunOutcome[dict])
        described = await handle.describe()
        if described.status is not WorkflowExecutionStatus.FAILED:
            return None
        try:
            await handle.result(follow_runs=False)
        except WorkflowFailureError as err:
            if isinstance(err.cause, ApplicationError) and err.cause.type == INVALID_INPUT:
                return outcome_of_failure(err.cause, described.workflow_type)
        return None

    async def _ended_by_temporal(self, run_id: str) -> str | None:
        """Why Temporal closed a run Baton had not ended (`terminated by Temporal, not by Baton: ...`); None while it runs."""
        handle = self.client.get_workflow_handle(run_id)
        if (await handle.describe()).status is WorkflowExecutionStatus.RUNNING:
            return None
        try:
            await handle.result(follow_runs=False)
        except WorkflowFailureError as err:
            why = (err.cause.message if err.cause else "").splitlines()[:1]  # a caller's text: one line of it
            ended = f"{TEMPORAL_ENDS.get(type(err.cause), 'failed')} by Temporal, not by Baton"
            return ended + (f": {why[0][:300]}" if why else "")
        return "closed by Temporal, not by Baton"

    async def _handle(self, run_id: str, result_type: type | None = None) -> WorkflowHandle:
        handle = self.client.get_workflow_handle(run_id, result_type=result_type)
        try:
            await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise self._unknown(run_id) from err
            raise
        return handle

    def _unknown(self, run_id: str) -> UnknownRun:
        return UnknownRun(f"no run {run_id!r} in namespace {self.client.namespace!r}")


TEMPORAL_ENDS = {TerminatedError: "terminated", CancelledError: "cancelled", TimedOut: "timed out"}
OPEN_STATES = {RunState.RUNNING.value, RunState.AWAITING_APPROVAL.value}

# A run without Baton's attributes stands as Temporal says: its status, lower-cased, as visibility names it.
EXECUTION_STATUS = {s.name.lower(): s.name.title().replace("_", "") for s in WorkflowExecutionStatus}


def runs_clause(queue: str) -> str:
    """Runs with Baton's attributes, or this queue's runs of Baton's processes that never got them."""
    types = ", ".join(f"'{quoted(name)}'" for name in sorted(REGISTRY.known()))
    return f"({sa.PROCESS.name} IS NOT NULL OR (TaskQueue = '{quoted(queue)}' AND WorkflowType IN ({types})))"


def process_clause(process: str) -> str:
    """Runs of `process`, by Baton's attribute or, for runs without it, by workflow type."""
    name = quoted(process)
    return f"({sa.PROCESS.name} = '{name}' OR ({sa.PROCESS.name} IS NULL AND WorkflowType = '{name}'))"


def status_clause(status: str) -> str:
    """Runs in Baton state `status`; for runs without Baton's attributes, in the matching Temporal status."""
    clause = f"{sa.STATUS.name} = '{quoted(status)}'"
    if status in OPEN_STATES:  # only while Temporal runs it too: a terminated run keeps its last attribute
        clause += " AND ExecutionStatus = 'Running'"
    if status in EXECUTION_STATUS:
        clause += f" OR ({sa.STATUS.name} IS NULL AND ExecutionStatus = '{EXECUTION_STATUS[status]}')"
    return f"({clause})"


def quoted(value: str) -> str:
    """A value safe inside a single-quoted visibility-query literal."""
    return value.replace("\\", "\\\\").replace("'", "\\'")
