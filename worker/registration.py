"""What a Baton worker runs: every installed package's processes and tools, and every activity, wired to config."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import timedelta

from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider
import temporalio.workflow
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.worker import Worker, WorkerDeploymentConfig
from temporalio.worker.workflow_sandbox import SandboxRestrictions

from activities.llm.activity import ModelActivities
from activities.llm.provider import Provider
from activities.llm.providers import build_providers
from activities.llm.telemetry import StepTelemetry
from activities.oidc import IssuerKeys, IssuerUnreachable
from activities.payloads import LegacyPayloads
from activities.personal import NoAuditKey, audit_key
from activities.policy import PolicyActivities
from activities.spend import SpendCaps
from activities.subject import subject_digest
from activities.token_times import judge_token
from activities.tools.activity import Implementations, ToolActivities
from worker.agent_policy import AgentPolicies
from worker.config import BatonConfig, ConfigError, install_mcp_tools
from worker.undecodable import forgiving_client
from worker.connection import is_traced, sealing_headers, storing_payloads, task_queue, tracing_interceptor, tracing_on
from worker.passthrough import process_modules
from worker.current_details import DetailsWhenAsked
from worker.run_input import RunInputCheck
from worker.sandbox import BatonSandbox
from workflows.engine import Process
from workflows.registry import REGISTRY, name_outputs
from workflows.spend_window import SpendWindowWorkflow

# Pure data libraries: loading them once outside the sandbox keeps every
# workflow run from re-importing them. OpenTelemetry keeps the current span in
# module state: passed through, workflow code and Temporal's tracing interceptor
# share that one copy instead of each run getting an empty one of its own.
# The engine too (workflows/*, with the registry the worker fills before it
# starts; a package's processes import their contracts and tools passed through,
# and the modules that define workflows are passed through by `workflow_runner`
# when worker/passthrough.py's check clears them): re-imported per run
# they cost ~1 MB of worker memory per cached run and most of a run's CPU
# (benchmarks/parked.py, benchmarks/throughput.py). They hold no mutable module
# state; tests/test_engine_determinism.py checks them for what the sandbox would catch.
ENGINE = (
    "api", "engine", "agent_steps", "agents", "approval_desk", "approvals", "budget", "decisions", "facts", "human_steps",
    "ledger", "model_steps", "outcome", "plan", "registry", "retry_policies", "search_attributes", "spend_cap",
    "status", "thresholds", "unknown_outcomes", "visibility",
)
PASSTHROUGH = (
    "pydantic", "pydantic_core", "annotated_types", "email_validator", "activities", "opentelemetry", "joserfc",
    "cryptography",
    *(f"workflows.{m}" for m in ENGINE),
)


# What a process that declares nothing gets under Worker Versioning: its runs finish on the build
# they started on. Baton's runs are bounded (every run has a wall-clock budget, 7 days by default),
# so the old build drains in a known time; meanwhile any change ships without patching, and no
# parked run can fail on a command sequence its code no longer makes. A process that must take
# new code while parked (a run longer than a deploy cycle) declares auto-upgrade, and patches.
DEFAULT_VERSIONING = VersioningBehavior.PINNED


def deployment_config(version: WorkerDeploymentVersion | None) -> WorkerDeploymentConfig | None:
    """Worker Versioning for `version` ([worker] deployment and build_id), processes pinned unless they say otherwise."""
    if version is None:
        return None
    return WorkerDeploymentConfig(
        version=version, use_worker_versioning=True, default_versioning_behavior=DEFAULT_VERSIONING
    )


def declared_versioning(workflows: list[type], version: WorkerDeploymentVersion | None) -> None:
    """A process that declares its versioning behavior needs a versioned worker: ConfigError, at start, if not.

    The SDK sends a declared behavior with every workflow task, and the server
    refuses the task from an unversioned worker, so each run of that process
    would retry its first task forever. Said once, at start, instead.
    """
    if version is not None:
        return
    for cls in workflows:
        defn = temporalio.workflow._Definition.from_class(cls)
        behavior = defn.versioning_behavior if defn else None
        if behavior not in (None, VersioningBehavior.UNSPECIFIED):
            raise ConfigError(
                f"process {defn.name} declares versioning_behavior={behavior.name}, which needs a versioned worker: "
                "set [worker] deployment and build_id (or BATON_BUILD_ID)"
            )


def workflow_runner(workflows: tuple[type, ...] | list[type] = ()) -> BatonSandbox:
    """The sandbox every Baton worker (and the replayer) runs workflows in.

    The modules defining `workflows` are passed through too when the check of
    worker/passthrough.py finds nothing the sandbox would have caught: loaded
    once per worker, not once per run.
    """
    modules = process_modules(workflows, PASSTHROUGH)
    return BatonSandbox(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH, *modules)
    )


async def issuer_keys(config: BatonConfig, http) -> IssuerKeys | None:
    """The identity provider's keys, fetched once now: an issuer the worker cannot use stops it at start."""
    if config.identity is None:
        return None
    keys = IssuerKeys(config.identity, http)
    try:
        await keys.trusted()
    except IssuerUnreachable as err:
        raise ConfigError(f"identity.issuer: {err}") from None
    return keys


@asynccontextmanager
async def baton_worker(
    client: Client,
    config: BatonConfig,
    *,
    queue: str | None = None,
    tools_class: type[ToolActivities] = ToolActivities,
    providers: dict[str, Provider] | None = None,
    extra_workflows: tuple[type, ...] = (),
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> AsyncIterator[Worker]:
    """A running worker and its one pooled HTTP client, both closed on the way out.

    `tools_class` and `providers` let fault-injection tests wrap the real seams;
    `extra_workflows` lets tests run processes of their own on the same engine.
    Spans and metrics go to OpenTelemetry's global providers unless the caller
    passes its own (tests do). The tracing interceptor comes from `client` when
    it has one (Temporal hands a client's interceptors to its workers; a second
    copy would make every span twice), else the worker adds its own, when
    tracing is on at all (worker/connection.py `tracing_on`).
    """
    client = sealing_headers(client)  # the worker decodes a start's header as its client says (worker/connection.py)
    client = storing_payloads(client, config.payloads)  # large payloads in the store every worker shares
    client = forgiving_client(client)  # a payload it cannot open is a marker, not a run stuck (worker/undecodable.py)
    own_tracing = tracing_on(tracer_provider) and not is_traced(client)
    try:
        audit_key()  # runs about a person get its keyed digest (activities/subject.py): no key, no start
    except NoAuditKey as err:
        raise ConfigError(str(err)) from None
    if client.data_converter.payload_codec is None:
        logging.getLogger("baton").warning("payloads are NOT encrypted (BATON_ENCRYPTION=off): "
                                           "inputs, prompts and answers go to Temporal in clear")
    REGISTRY.load(config.plugins.packages)
    for extra in extra_workflows:
        if isinstance(extra, type) and issubclass(extra, Process):
            name_outputs(extra)  # a test's own process: its output models get their names too
    mcp = await install_mcp_tools(config)  # every server listed now: one unreachable stops the worker at start
    systems = Implementations(REGISTRY.systems(config.systems), mcp.implementations())
    legacy = LegacyPayloads(config.payloads.db)  # refs in runs from before External Storage
    catalog = config.catalog()
    observed = StepTelemetry(tracer_provider, meter_provider)
    async with config.http.client() as http:
        built = build_providers(catalog, http, config.offline_scripts())
        models = ModelActivities(
            catalog, {**built, **(providers or {})}, config.llm, legacy, observed, SpendCaps(config.spend_caps())
        )
        tools = tools_class(systems, config.payloads.inline_max_bytes, telemetry=observed, grants=config.grants)
        policy = PolicyActivities(
            catalog,
            {k: v for k, v in config.budgets.items() if k != "default"},
            config.default_budget(),
            config.llm_timeout_s(),
            config.members(),
            config.grants,
            config.audit.values,
            await issuer_keys(config, http),
        )
        workflows = [*REGISTRY.workflows(), SpendWindowWorkflow, *extra_workflows]
        declared_versioning(workflows, config.worker.version())
        agents = AgentPolicies(policy, workflows)
        worker = Worker(
            client,
            task_queue=queue or task_queue(),
            workflows=workflows,
            activities=[models.call_model, tools.run_tool, policy.run_policy, agents.agent_policy, subject_digest,
                        judge_token],
            activity_executor=ThreadPoolExecutor(max_workers=16),
            workflow_runner=workflow_runner(workflows),
            max_cached_workflows=config.worker.max_cached_runs,
            deployment_config=deployment_config(config.worker.version()),
            graceful_shutdown_timeout=timedelta(seconds=10),
            # A model step heartbeats the calls it made, each request in flight billed at its worst case,
            # so a timeout or a crash still bills it: the server must have the latest within a second.
            default_heartbeat_throttle_interval=timedelta(seconds=1),
            interceptors=[RunInputCheck(), DetailsWhenAsked(), *([tracing_interceptor(tracer_provider)] if own_tracing else [])],
        )
        async with worker:
            yield worker
