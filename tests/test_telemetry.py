"""OpenTelemetry: one trace per run down to each model request, step metrics, exporters from OTEL_*.

Runs go through Temporal (time-skipping server) with in-memory providers handed
to the client and the worker (tests/conftest.py), never OpenTelemetry's globals.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from temporalio.contrib.opentelemetry import TracingInterceptor

from activities.llm.catalog import ModelSpec
from activities.llm.conversation import Conversation
from activities.llm.provider import Completion, ProviderRejected
from activities.llm.telemetry import CAPTURE_CONTENT
from activities.tools.activity import ToolActivities
from activities.tools.contracts import RecordRefused
from client.sdk import Baton
from tests.conftest import ROOT, SEED, running_worker, traced_worker
from tests.test_onboarding_routes import CLEAR
from worker import telemetry
from worker.config import ConfigError
from worker.connection import is_traced, traced, tracing_on
from workflows.ledger import StepKind
from workflows.outcome import RunState

OTEL_VARIABLES = [v for v in os.environ if v.startswith("OTEL_")]


@pytest.fixture(autouse=True)
def no_otel_environment(monkeypatch) -> None:
    """Each test starts from an environment that asks for nothing."""
    for variable in OTEL_VARIABLES:
        monkeypatch.delenv(variable)


async def onboard(time_env, config, otel, applicant=CLEAR, **extra):
    async with traced_worker(time_env.client, config, otel.tracer_provider, otel.meter_provider, **extra) as (c, w):
        baton = Baton(c, w.task_queue)
        run_id = await baton.start("onboarding", applicant)
        outcome = await baton.result(run_id)
        ledger = await baton.ledger(run_id)
    return outcome, ledger


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def points(otel, metric: str) -> list:
    data = otel.metrics.get_metrics_data()
    return [
        p
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for m in scope.metrics
        if m.name == metric
        for p in m.data.data_points
    ]


# ----- traces -----------------------------------------------------------------------------


async def test_a_run_is_one_trace_from_the_start_down_to_the_model_request(time_env, config, otel):
    outcome, _ = await onboard(time_env, config, otel)
    assert outcome.state is RunState.COMPLETED, outcome.reason

    spans = otel.spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    [chat] = named(spans, "chat offline-fast")
    chain = [chat]
    while chain[-1].parent is not None:
        chain.append(by_id[chain[-1].parent.span_id])
    assert [s.name for s in chain] == [
        "chat offline-fast", "RunActivity:call_model", "StartActivity:call_model", "StartWorkflow:onboarding",
    ]
    # Temporal's TracingInterceptor hangs the workflow's own (zero-length) spans beside its
    # steps, all under the span of the client call that started the run
    [run] = named(spans, "RunWorkflow:onboarding")
    assert run.parent.span_id == chain[-1].context.span_id
    elsewhere = {s.name for s in spans if s.context.trace_id != run.context.trace_id}
    assert elsewhere == {"QueryWorkflow:ledger", "HandleQuery:ledger"}  # a later client call, its own trace
    # the client's interceptor reaches the worker once: one RunActivity span per activity run
    assert len(named(spans, "RunActivity:call_model")) == 1
    assert len(named(spans, "RunActivity:run_tool")) == 4

    a = chat.attributes
    assert chat.kind is trace.SpanKind.CLIENT
    assert (a["gen_ai.operation.name"], a["gen_ai.system"]) == ("chat", "offline")
    assert (a["gen_ai.request.model"], a["gen_ai.response.model"]) == ("offline-fast", "offline-fast")
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert (a["baton.step"], a["baton.tier"], a["baton.process"]) == ("welcome_email", "fast", "onboarding")
    assert a["baton.cost_usd"] > 0
    assert chat.status.status_code is not StatusCode.ERROR


def everything_said(spans) -> str:
    """Every name, attribute, event and status a backend would receive, as one text."""
    parts = []
    for s in spans:
        parts += [s.name, json.dumps(dict(s.attributes or {})), str(s.status.description)]
        parts += [e.name + json.dumps(dict(e.attributes or {})) for e in s.events]
    return "\n".join(parts)


async def test_spans_carry_no_prompt_answer_or_personal_data_by_default(time_env, config, otel):
    await onboard(time_env, config, otel)
    said = everything_said(otel.spans.get_finished_spans())

    assert "chat offline-fast" in said  # the text holds the spans at all
    for private in ("Ada", "Lovelace", "ada@example.com", "P1234567", "warm welcome", "gen_ai.input.messages"):
        assert private not in said


async def test_content_capture_puts_prompt_and_answer_on_the_model_span(time_env, config, otel, monkeypatch):
    monkeypatch.setenv(CAPTURE_CONTENT, "true")
    await onboard(time_env, config, otel)
    [chat] = named(otel.spans.get_finished_spans(), "chat offline-fast")

    [asked] = json.loads(chat.attributes["gen_ai.input.messages"])
    assert asked["role"] == "user"
    assert "warm welcome e-mail" in asked["parts"][0]["content"] and "Ada Lovelace" in asked["parts"][0]["content"]
    [answer] = json.loads(chat.attributes["gen_ai.output.messages"])
    assert answer["role"] == "assistant" and answer["finish_reason"] == "stop" and answer["parts"]


class RejectsRequests:
    """A provider whose API refuses the request (a 400 quoting the prompt back)."""

    async def complete(self, conversation: Conversation, model: ModelSpec) -> Completion:
        raise ProviderRejected(f"bad request: {conversation.messages[0].content}", status=400)


async def test_a_refused_model_request_is_an_error_span_without_its_message(time_env, config, otel):
    outcome, _ = await onboard(time_env, config, otel, providers={"offline": RejectsRequests()})
    assert outcome.state is RunState.FAILED

    [chat] = named(otel.spans.get_finished_spans(), "chat offline-fast")
    assert chat.status.status_code is StatusCode.ERROR
    assert chat.attributes["error.type"] == "ProviderRejected"
    assert chat.attributes["http.response.status_code"] == 400
    assert "Ada" not in everything_said([chat])
    [error] = points(otel, "baton.step.errors")
    assert (error.attributes["baton.step"], error.attributes["error.type"], error.value) == (
        "welcome_email", "ModelRejected", 1,
    )


async def test_a_client_is_traced_once(time_env):
    assert not is_traced(time_env.client)
    once = traced(time_env.client)
    assert is_traced(once) and traced(once) is once


def tracing_interceptors(worker) -> list:
    return [i for i in worker.config()["interceptors"] if isinstance(i, TracingInterceptor)]


async def test_with_tracing_off_a_worker_carries_no_tracing_interceptor(time_env, config, otel):
    """Its no-op spans cost a sixth of a run's worker CPU: off means absent, on means exactly one."""
    assert not tracing_on() and not is_traced(time_env.client)
    async with running_worker(time_env.client, config) as w:
        assert tracing_interceptors(w) == []
    async with running_worker(time_env.client, config, tracer_provider=otel.tracer_provider) as w:
        assert len(tracing_interceptors(w)) == 1
    async with traced_worker(time_env.client, config, otel.tracer_provider, otel.meter_provider) as (_, w):
        assert tracing_interceptors(w) == []  # the traced client's interceptor is the one


# ----- metrics ----------------------------------------------------------------------------


async def test_cost_counter_adds_up_to_the_ledger_and_every_step_is_timed(time_env, config, otel):
    outcome, ledger = await onboard(time_env, config, otel)
    assert outcome.state is RunState.COMPLETED, outcome.reason

    cost = points(otel, "baton.step.cost")
    assert sum(p.value for p in cost) == pytest.approx(sum(e.cost_usd for e in ledger)) != 0
    assert {p.attributes["baton.model"] for p in cost} == {"offline-fast"}

    steps = {e.step: e for e in ledger if e.kind in (StepKind.LLM, StepKind.TOOL)}
    timed = {p.attributes["baton.step"]: p for p in points(otel, "baton.step.duration")}
    assert set(timed) == set(steps) == {
        "validate_identity", "pull_credit", "welcome_email", "create_crm_record", "send_confirmation",
    }
    for step, point in timed.items():
        assert point.count == steps[step].attempts and point.sum > 0
        assert point.attributes["baton.process"] == "onboarding"
    assert timed["welcome_email"].attributes["baton.model"] == "offline-fast"
    assert "baton.tool" not in timed["welcome_email"].attributes
    assert timed["send_confirmation"].attributes["baton.tool"] == "send_email"
    assert "baton.model" not in timed["send_confirmation"].attributes
    assert points(otel, "baton.step.errors") == []

    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in points(otel, "gen_ai.client.token.usage")}
    assert tokens == {"input": steps["welcome_email"].tokens_in, "output": steps["welcome_email"].tokens_out}


class NoMail:
    """The systems of record, except that the mail system refuses every message."""

    def __init__(self, systems) -> None:
        self._systems = systems

    def __getattr__(self, name: str):
        return getattr(self._systems, name)

    def send_email(self, email, key):
        raise RecordRefused("mailbox does not exist")


class MailDown(ToolActivities):
    def __init__(self, systems, *args, **kwargs) -> None:
        super().__init__(NoMail(systems), *args, **kwargs)


async def test_a_failing_tool_counts_one_error_for_its_step(time_env, config, otel):
    outcome, _ = await onboard(time_env, config, otel, tools_class=MailDown)
    assert outcome.state is RunState.FAILED

    [error] = points(otel, "baton.step.errors")
    assert error.value == 1
    assert dict(error.attributes) == {
        "baton.process": "onboarding", "baton.step": "send_confirmation", "baton.tool": "send_email",
        "error.type": "RecordRefused",
    }
    timed = {p.attributes["baton.step"] for p in points(otel, "baton.step.duration")}
    assert "send_confirmation" in timed  # a failed attempt is timed too


# ----- exporters from the environment ---------------------------------------------------------


def test_nothing_is_set_up_or_printed_when_no_variable_asks(monkeypatch, capfd):
    monkeypatch.setattr(telemetry, "_installed", None)
    assert telemetry.from_env("baton-worker") == telemetry.Telemetry()
    assert telemetry.install("baton-worker") == telemetry.Telemetry()
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert capfd.readouterr() == ("", "")


def test_console_prints_spans_and_metrics_to_stdout(monkeypatch, capsys):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "console")
    otel = telemetry.from_env("baton-worker")
    try:
        otel.tracer_provider.get_tracer("t").start_span("hello-console").end()
        otel.meter_provider.get_meter("baton").create_counter("baton.test.count").add(1)
        otel.flush()
    finally:
        otel.tracer_provider.shutdown()
        otel.meter_provider.shutdown()
    out = capsys.readouterr().out
    assert '"name": "hello-console"' in out
    assert '"service.name": "baton-worker"' in out
    assert '"name": "baton.test.count"' in out


def test_a_client_exports_each_span_as_it_ends_and_records_no_metrics(monkeypatch, capsys):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "console")
    otel = telemetry.from_env("baton-client", client=True)
    try:
        otel.tracer_provider.get_tracer("t").start_span("hello-client").end()
        out = capsys.readouterr().out  # no flush: the CLI leaves through os._exit
    finally:
        otel.tracer_provider.shutdown()
    assert '"name": "hello-client"' in out and '"service.name": "baton-client"' in out
    assert otel.meter_provider is None


def test_service_name_comes_from_otel_service_name(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "kyc-workers")
    otel = telemetry.from_env("baton-worker")
    assert otel.meter_provider is None
    assert otel.tracer_provider.resource.attributes["service.name"] == "kyc-workers"
    otel.tracer_provider.shutdown()


@pytest.mark.parametrize("variable", ["OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"])
def test_an_unknown_exporter_is_one_config_error_naming_the_variable(monkeypatch, variable):
    monkeypatch.setenv(variable, "zipkin")
    with pytest.raises(ConfigError, match=f"^{variable}=zipkin: unknown exporter 'zipkin'"):
        telemetry.from_env("baton-worker")


def test_otlp_without_the_extra_says_what_to_install(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ConfigError, match=r"^OTEL_TRACES_EXPORTER=otlp needs `pip install baton\[otlp\]`$"):
        telemetry.from_env("baton-worker")


def test_worker_refuses_a_bad_exporter_with_one_line(tmp_path):
    config = tmp_path / "baton.toml"
    config.write_text("")
    env = {**os.environ, "BATON_CONFIG": str(config), "OTEL_TRACES_EXPORTER": "jaeger"}
    done = subprocess.run(
        [sys.executable, "-m", "worker", "--demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "worker: OTEL_TRACES_EXPORTER=jaeger: unknown exporter 'jaeger' (use one of: none, console, otlp)"
    ]


class Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver: keeps every POST body by path."""

    received: dict[str, list[bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.setdefault(self.path, []).append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, dict[str, list[bytes]]]]:
    received: dict[str, list[bytes]] = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (Collector,), {"received": received}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


async def test_otlp_posts_a_runs_spans_and_metrics_to_the_collector(time_env, config, collector, monkeypatch):
    endpoint, received = collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    otel = telemetry.from_env("baton-worker")
    try:
        async with traced_worker(time_env.client, config, otel.tracer_provider, otel.meter_provider) as (c, w):
            baton = Baton(c, w.task_queue)
            await baton.result(await baton.start("onboarding", CLEAR))
        otel.flush()
    finally:
        otel.tracer_provider.shutdown()
        otel.meter_provider.shutdown()

    assert received.get("/v1/traces") and received.get("/v1/metrics")
    exported = [ExportTraceServiceRequest.FromString(body) for body in received["/v1/traces"]]
    names = {s.name for r in exported for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans}
    services = {
        a.value.string_value for r in exported for rs in r.resource_spans for a in rs.resource.attributes
        if a.key == "service.name"
    }
    assert {"chat offline-fast", "RunWorkflow:onboarding"} <= names
    assert services == {"baton-worker"}


# ----- the worker process, as a user runs it ------------------------------------------------


def console_objects(text: str) -> list[dict]:
    """The JSON documents the console exporters print (indented, one `{` … `}` block each)."""
    found, block = [], None
    for line in text.splitlines():
        if line == "{":
            block = [line]
        elif block is not None:
            block.append(line)
            if line == "}":
                found.append(json.loads("\n".join(block)))
                block = None
    return found


@pytest.mark.integration
async def test_worker_process_continues_the_callers_trace_and_flushes_on_exit(dev_env, tmp_path, otel):
    """`python -m worker` with console exporters, a run started by a traced client in this process."""
    from tests.fake_provider import FakeProvider, openai_answer
    from tests.test_worker_process import LOCAL_FAST, worker_env

    email = {"subject": "Welcome", "body": "Dear Ada, welcome.\nThe onboarding team"}
    with FakeProvider() as fake:
        fake.script(openai_answer(email, model="llama-test", prompt_tokens=300, completion_tokens=40))
        config = tmp_path / "baton.toml"
        config.write_text(LOCAL_FAST.format(db=tmp_path / "systems.db", seed=SEED, url=fake.url))
        queue = f"baton-worker-{uuid.uuid4().hex[:8]}"
        env = {
            **worker_env(dev_env, queue, config), "LOCAL_LLM_KEY": "local-key",
            "OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "console",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", "--demo", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            baton = Baton(traced(dev_env.client, otel.tracer_provider), queue)
            outcome = await asyncio.wait_for(baton.result(await baton.start("onboarding", CLEAR)), 60)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert outcome.state is RunState.COMPLETED, outcome.reason
    assert proc.returncode == 0, err.decode()

    printed = console_objects(out.decode())
    [chat] = [o for o in printed if o.get("name") == "chat llama-test"]
    assert chat["resource"]["attributes"]["service.name"] == "baton-worker"
    assert chat["attributes"]["gen_ai.system"] == "openai"  # the provider's protocol, not its name
    assert (chat["attributes"]["baton.model"], chat["attributes"]["gen_ai.usage.input_tokens"]) == ("local-fast", 300)
    [started] = named(otel.spans.get_finished_spans(), "StartWorkflow:onboarding")
    assert int(chat["context"]["trace_id"], 16) == started.context.trace_id  # one trace across processes
    assert len([o for o in printed if o.get("name") == "RunActivity:call_model"]) == 1
    metrics = {m["name"] for o in printed for r in o.get("resource_metrics", []) for s in r["scope_metrics"]
               for m in s["metrics"]}
    assert {"baton.step.duration", "baton.step.cost", "gen_ai.client.token.usage"} <= metrics
