"""`baton.toml`: models, prices, tiers, budgets and the systems of record.

Read by the worker only, validated at start-up; a bad file stops the worker
with one line naming the key at fault. Without a file, the built-in defaults
(offline models, modest budgets) apply. It fails closed: nothing is granted and
nobody may approve unless the file says so, and a role a process asks that no
[roles] table defines stops the worker. The demo's people and grants are
installed only when asked (`baton demo`, `--demo`), where the file names none.
"""

from __future__ import annotations

import os
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from temporalio.common import WorkerDeploymentVersion

from activities.llm.activity import LlmSettings
from activities.llm.catalog import Catalog, ModelSpec, ProviderSpec
from activities.llm.offline_scripts import OfflineScripts
from activities.llm.transport import HttpSettings
from activities.oidc import IdentitySettings
from activities.payloads import PayloadSettings
from activities.policy import Budget
from activities.spend import AcrossRuns
from activities.plugins import PluginError
from activities.tools.grants import Bound, Grant
from activities.tools.mcp_servers import McpServerError, McpSettings, McpTools
from activities.tools.registry import TOOLS, Effect, SystemsSettings
from workflows.registry import REGISTRY


class ConfigError(Exception):
    pass


DEMO_HELP = "the demo's approvers and grants, where baton.toml names none (never the default)"


# Every cap set, as seed 004 asks; baton.toml's [budgets.default] may change any of them.
DEFAULT_BUDGET = Budget(
    max_cost_usd=0.50, max_steps=25, max_llm_calls=20, max_tool_calls=20,
    max_wall_clock=timedelta(days=7), max_approval_idle=timedelta(days=3),
)


def _as_dict(value: object) -> dict:
    if isinstance(value, Budget):
        return value.model_dump(exclude_unset=True)
    return dict(value) if isinstance(value, dict) else {}


SystemsConfig = SystemsSettings  # `[systems]`: handed to each package's systems factory


class PluginSettings(BaseModel):
    """`[plugins]`: the packages whose processes and tools this worker runs, and only those.

    Each is a module with a `package = Package(...)` (or `module:attribute`).
    Named, they replace discovery: the worker, the CLI and the checks of
    [roles] and [grants] know these packages' processes alone (add
    "baton_examples.package" to run the examples beside a team's own). Not
    named, every installed distribution advertising one in the
    `baton.processes` entry point group runs (Baton's own examples come in so).
    """

    model_config = ConfigDict(extra="forbid")
    packages: list[str] = []


class Role(BaseModel):
    """A role that may decide approvals, and the people in it (by the name they give when deciding)."""

    model_config = ConfigDict(extra="forbid")
    people: list[str] = Field(min_length=1)


def demo_roles() -> dict[str, Role]:
    """The demo's approvers (`baton demo`, `--demo`): placeholder names, never a default."""
    return {
        "compliance": Role(people=["compliance-officer"]),
        "compliance-lead": Role(people=["head-of-compliance"]),
        "support-lead": Role(people=["support-lead"]),
        "sales-manager": Role(people=["sales-manager"]),
    }


def shipped_grants() -> dict[str, Grant]:
    """What the shipped processes and agents need, and no more (the same as the shipped baton.toml)."""
    return {
        "onboarding": Grant(tools=["verify_identity", "pull_credit", "create_crm_record", "send_email"]),
        "support-triage/returns": Grant(
            tools=["lookup_order", "issue_refund"], bounds={"issue_refund": {"amount_usd": Bound(max=500)}}
        ),
        "support-triage/technical": Grant(tools=["search_kb", "open_ticket"]),
        "support-triage/billing": Grant(tools=["lookup_invoices", "open_ticket"]),
        "sales-followup": Grant(
            tools=["read_crm_notes", "send_email", "update_crm_deal"],
            bounds={"send_email": {"to": Bound(domains=["northwind.example", "globex.example"])}},
        ),
    }


class OfflineSettings(BaseModel):
    """`[offline]`: scripted answers for the offline stand-in (activities/llm/offline_scripts.py)."""

    model_config = ConfigDict(extra="forbid")
    scripts: Path | None = None


class Slo(BaseModel):
    """`[slo.PROCESS]`: targets the report measures runs against (not kill switches: see budgets)."""

    model_config = ConfigDict(extra="forbid")
    latency_s: float = Field(gt=0, description="working time of a run, waits for people excluded")


class AuditSettings(BaseModel):
    """`[audit]`: what `baton audit` exports of a run's values (README, "Personal data")."""

    model_config = ConfigDict(extra="forbid")
    values: Literal["digests", "full", "all-digests"] = Field(
        default="digests",
        description="inputs as keyed digests, outputs in full (digests); everything in full (full); "
        "inputs, outputs and the result as keyed digests (all-digests)",
    )


BUILD_ID_ENV = "BATON_BUILD_ID"  # set at deploy time, it wins over [worker] build_id


class WorkerSettings(BaseModel):
    """`[worker]`: the runs one worker process keeps in memory, and which deployed build it is.

    A cached run's next step starts from memory; one evicted (the least
    recently used, past this many) is rebuilt by replaying its history when it
    is next woken, by an approval say. Runs parked for people are most of a
    busy worker's cache: fewer cached runs, less memory, a replay per wake-up
    (benchmarks/parked.py measures both). 0 caches none.

    `deployment` and `build_id` turn on Temporal's Worker Versioning: the worker
    is version `build_id` of the Worker Deployment `deployment`, and a run stays
    on the build it started on, or moves to the current one, as its process
    declares (README, "Changing a process"). Neither set: an unversioned worker.
    """

    model_config = ConfigDict(extra="forbid")
    max_cached_runs: int = Field(default=1000, ge=0, le=1_000_000)
    deployment: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$",
                                   description="the Worker Deployment's name: letters, digits, - and _ (no dot)")
    build_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$",
                                 description=f"this build's id (or ${BUILD_ID_ENV}): a commit, a release tag")

    @model_validator(mode="after")
    def _both_or_neither(self) -> WorkerSettings:
        if self.deployment and not self.build_id:
            raise ValueError(f"deployment {self.deployment!r} needs a build_id (or ${BUILD_ID_ENV})")
        if self.build_id and not self.deployment:
            raise ValueError(f"build_id {self.build_id!r} needs a deployment name")
        return self

    def version(self) -> WorkerDeploymentVersion | None:
        """The Worker Deployment Version this worker is, or None when versioning is off."""
        if self.deployment is None or self.build_id is None:
            return None
        return WorkerDeploymentVersion(deployment_name=self.deployment, build_id=self.build_id)


class BatonConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    systems: SystemsConfig = SystemsConfig()
    plugins: PluginSettings = PluginSettings()
    http: HttpSettings = HttpSettings()
    llm: LlmSettings = LlmSettings()
    providers: dict[str, ProviderSpec] = {}
    models: dict[str, ModelSpec] = Field(default_factory=lambda: Catalog().models)
    tiers: dict[str, list[str]] = Field(default_factory=lambda: Catalog().tiers)
    budgets: dict[str, Budget] = Field(default_factory=lambda: {"default": DEFAULT_BUDGET})
    roles: dict[str, Role] = {}  # nobody approves unless the file names them
    grants: dict[str, Grant] = {}  # nothing granted unless the file grants it
    payloads: PayloadSettings = PayloadSettings()
    offline: OfflineSettings = OfflineSettings()
    slo: dict[str, Slo] = {}
    audit: AuditSettings = AuditSettings()
    worker: WorkerSettings = WorkerSettings()
    identity: IdentitySettings | None = None
    mcp: McpSettings = McpSettings()

    @field_validator("budgets")
    @classmethod
    def _caps_name_a_process(cls, budgets: dict[str, Budget]) -> dict[str, Budget]:
        if budgets.get("default") and budgets["default"].across_runs is not None:
            raise ValueError("budgets.default.across_runs: a cap across runs is one process's; "
                             "set it in [budgets.<process>.across_runs]")
        return budgets

    @field_validator("budgets", mode="before")
    @classmethod
    def _inherit_default(cls, raw: object) -> object:
        """A process's [budgets.X] sets what it changes; every other cap comes from [budgets.default]."""
        if not isinstance(raw, dict):
            return raw
        base = {**DEFAULT_BUDGET.model_dump(exclude={"maximum"}), **_as_dict(raw.get("default"))}
        base.pop("maximum", None)
        base.pop("across_runs", None)  # a process's own: never inherited
        # Anything but a table stays as it is, to be refused by name (not read as "no changes").
        return {name: {**base, **_as_dict(b)} if isinstance(b, (dict, Budget)) else b for name, b in raw.items()}

    def catalog(self) -> Catalog:
        return Catalog(providers=self.providers, models=self.models, tiers=self.tiers)

    def llm_timeout_s(self) -> float:
        """Long enough for every candidate of the widest tier, each with all its repair turns."""
        widest = max((len(labels) for labels in self.tiers.values()), default=1)
        per_request = self.http.timeout_s + self.http.connect_timeout_s
        return widest * (self.llm.repair_turns + 1) * per_request + 10

    def members(self) -> dict[str, list[str]]:
        return {name: role.people for name, role in self.roles.items()}

    def missing_roles(self) -> list[str]:
        """Roles an installed process asks that no [roles] table defines (nobody could answer them)."""
        return [
            f"roles.{role}: process {name!r} asks this role, which has no [roles.{role}] table"
            for name, spec in REGISTRY.known().items()
            for role in getattr(spec.workflow, "roles", ())
            if role not in self.roles
        ]

    def offline_scripts(self) -> OfflineScripts | None:
        """The offline stand-in's scripts; a bad file raises ConfigError naming it."""
        if self.offline.scripts is None:
            return None
        try:
            return OfflineScripts.load(self.offline.scripts)
        except ValueError as err:
            raise ConfigError(f"offline.scripts: {err}") from None

    def bad_grants(self) -> list[str]:
        """Grants naming a process, agent, tool or argument that does not exist, an unapprovable tool, or an unfit bound.

        A tool of an [mcp.servers] server is known only once its server is listed
        (at worker start): until then its grant is left to `bad_mcp_grants`.
        """
        problems = []
        processes = REGISTRY.known()
        for grantee, grant in self.grants.items():
            process, _, agent_name = grantee.partition("/")
            spec = processes.get(process)
            agents = {a.name: a for a in getattr(spec.workflow, "agents", ())} if spec else {}
            if spec is None or (agent_name and agent_name not in agents):
                known = sorted([*processes, *(f"{p}/{a.name}" for p, s in processes.items() for a in s.workflow.agents)])
                problems.append(f"grants.{grantee}: no such process or agent (known: {', '.join(known)})")
                continue
            for tool in grant.tools:
                if tool not in TOOLS and self.mcp.serves(tool):
                    continue
                if tool not in TOOLS:
                    problems.append(f"grants.{grantee}.tools: no tool {tool!r} (known: {', '.join(sorted(TOOLS))})")
                elif agent_name and TOOLS[tool].effect is Effect.IRREVERSIBLE and tool not in agents[agent_name].approvals:
                    problems.append(f"grants.{grantee}.tools: {tool} is irreversible and the agent declares no approval for it")
            for tool, fields in grant.bounds.items():
                if tool not in grant.tools:
                    problems.append(f"grants.{grantee}.bounds.{tool}: bounds a tool that is not granted")
                    continue
                if tool not in TOOLS and self.mcp.serves(tool):
                    continue
                problems += [
                    problem for f, bound in fields.items()
                    if (problem := _bad_bound(f"grants.{grantee}.bounds.{tool}.{f}", tool, f, bound))
                ]
        return problems

    def bad_mcp_grants(self) -> list[str]:
        """Grants of [mcp.servers] tools, judged once the servers are listed: the tool is listed, its bounds fit it.

        An agent granted an irreversible or at-most-once MCP tool with no approval policy for it is refused
        that call when it proposes it (workflows/bounded_agent.py), as for a package's tools.
        """
        problems = []
        for grantee, grant in self.grants.items():
            for tool in grant.tools:
                if self.mcp.serves(tool) and tool not in TOOLS:
                    server = tool.partition(".")[0]
                    listed = sorted(t for t in TOOLS if t.startswith(f"{server}."))
                    problems.append(f"grants.{grantee}.tools: no tool {tool!r} (the server lists: {', '.join(listed)})")
            for tool, fields in grant.bounds.items():
                if self.mcp.serves(tool) and tool in TOOLS:
                    problems += [
                        problem for f, bound in fields.items()
                        if (problem := _bad_bound(f"grants.{grantee}.bounds.{tool}.{f}", tool, f, bound))
                    ]
        return problems

    def spend_caps(self) -> dict[str, AcrossRuns]:
        """process -> its cap across runs (`[budgets.NAME.across_runs]`)."""
        return {name: b.across_runs for name, b in self.budgets.items() if name != "default" and b.across_runs}

    def latency_targets(self) -> dict[str, float]:
        """process -> its [slo] working-latency target in seconds, for the report."""
        return {name: slo.latency_s for name, slo in self.slo.items()}

    def default_budget(self) -> Budget:
        return self.budgets.get("default", DEFAULT_BUDGET)


def _bad_bound(where: str, tool: str, field: str, bound: Bound) -> str | None:
    """A bound on an argument the tool lacks, or of a type the bound cannot constrain (it would refuse all or nothing)."""
    args = TOOLS[tool].args.model_fields
    if field not in args:
        return f"{where}: {tool} has no argument {field!r}"
    unfit = bound.unfit(field, args[field].annotation)
    return f"{where}: {unfit}" if unfit else None


async def install_mcp_tools(config: BatonConfig) -> McpTools:
    """List the [mcp.servers]' tools and register them, then judge the grants that name them; ConfigError in one line."""
    servers = McpTools(config.mcp)
    try:
        await servers.install()
    except McpServerError as err:
        raise ConfigError(str(err)) from None
    problems = config.bad_mcp_grants()
    if problems:
        raise ConfigError(problems[0])
    return servers


def install_plugins(path: Path, packages: list[str]) -> None:
    """Choose the packages `[plugins]` names (else the advertised ones), before anything is checked against them."""
    try:
        REGISTRY.load(packages)
    except (PluginError, TypeError) as err:
        raise ConfigError(f"{path}: plugins.packages: {err}") from None


def plugin_packages(path: Path | None = None) -> list[str]:
    """Only `[plugins] packages` of baton.toml (none without a file): what a client must install to know a team's processes."""
    path = path or config_path()
    if not path.exists():
        return []
    try:
        return PluginSettings.model_validate(_read(path).get("plugins", {})).packages
    except ValidationError as err:
        raise ConfigError(f"{path}: plugins: {err.errors()[0]['msg']}") from None


def payload_settings(path: Path | None = None) -> PayloadSettings:
    """Only `[payloads]` of baton.toml (defaults without a file): where a client finds the payloads workers stored."""
    path = path or config_path()
    if not path.exists():
        return PayloadSettings()
    try:
        return PayloadSettings.model_validate(_read(path).get("payloads", {}))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: payloads{'.' + where if where else ''}: {first['msg'].removeprefix('Value error, ')}") from None


def config_path() -> Path:
    return Path(os.environ.get("BATON_CONFIG", "baton.toml"))


def load(path: Path | None = None, *, demo: bool = False) -> BatonConfig:
    """The validated config; ConfigError says what is wrong in one line, naming the file and the key.

    `demo` installs the demo's roles and grants where the file has no [roles] or [grants].
    """
    try:
        return _load(path, demo)
    except ConfigError as err:
        text = str(err)  # keys and paths come from the file: a newline in one must not break the line
        raise ConfigError("".join(repr(c)[1:-1] if ord(c) < 0x20 or c == "\x7f" else c for c in text)) from err.__cause__


def _load(path: Path | None, demo: bool) -> BatonConfig:
    explicit = path is not None or "BATON_CONFIG" in os.environ
    path = path or config_path()
    if path.exists():
        raw = _read(path)
    elif explicit:
        raise ConfigError(f"{path}: no such file")
    else:
        raw = {}
    if demo:
        raw = {"roles": demo_roles(), "grants": shipped_grants(), **raw}  # the file's own tables win
    raw = _with_build_id(raw)
    try:
        config = BatonConfig.model_validate(raw)
        missing = config.catalog().missing_keys()
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])  # empty for the catalog's cross-checks
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{path}: {where + ': ' if where else ''}{message}") from err
    install_plugins(path, config.plugins.packages)
    if config.bad_grants():
        raise ConfigError(f"{path}: {config.bad_grants()[0]}")
    if config.missing_roles():
        found = "" if path.exists() else "no such file, so nobody may approve: "
        hint = "; or run with --demo for the demo's people and grants" if "roles" not in raw else ""
        raise ConfigError(f"{path}: {found}{config.missing_roles()[0]}{hint}")
    try:
        config.offline_scripts()
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    if missing:
        raise ConfigError(f"{path}: {missing[0]} (export it, or point api_key_env at the variable that holds the key)")
    return config


def _with_build_id(raw: dict) -> dict:
    """`raw` with $BATON_BUILD_ID as its [worker] build_id, when the deploy sets it (a table that is not one stays, to be refused)."""
    build_id = os.environ.get(BUILD_ID_ENV)
    worker = raw.get("worker", {})
    if build_id is None or not isinstance(worker, dict):
        return raw
    return {**raw, "worker": {**worker, "build_id": build_id}}


def _read(path: Path) -> dict:
    """The file's TOML; ConfigError in one line when it cannot be read or is not TOML."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    except RecursionError as err:  # tomllib recurses once per nested array or table
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from err
