"""The inventory `baton tools` prints: every process's steps, models, tools, people and limits.

A governance review asks first what the processes may do: which models each
step may reach, which tools each process and agent holds and within which
bounds, what is irreversible and who approves it, and what a run may spend.
All of it is already declared, in code (each process's `plan`, `roles` and
`agents`; the tool catalog) and in baton.toml (tiers, grants, roles, budgets),
so the inventory is built from those two alone, without Temporal. A tool a
step uses that the process's grant leaves out is flagged: the run would be
refused at that step.
"""

from __future__ import annotations

from pydantic import BaseModel

from activities.policy import Budget
from activities.tools.registry import TOOLS, Effect, ToolSpec
from activities.tools.grants import Bound, Grant
from worker.config import BatonConfig
from workflows.agents import Agent, AgentCaps
from workflows.approvals import AskPolicy
from workflows.registry import REGISTRY, ProcessSpec
from workflows.plan import PlannedStep


class ApprovalView(BaseModel):
    """How an agent's irreversible tool is approved: who is asked, and the rule that may spare them."""

    roles: list[str]
    escalate: list[str] = []
    auto_approve: str | None = None


class HeldTool(BaseModel):
    """A tool a grantee holds, with its bounds and, for agents, its approval policy."""

    tool: str
    effect: Effect
    bounds: dict[str, Bound] = {}
    requires: str | None = None  # agents: the rule over facts its calls must meet (workflows/facts.py)
    approval: ApprovalView | None = None


class StepView(BaseModel):
    """One planned step with what baton.toml makes of it."""

    step: str
    kind: str
    note: str = ""
    tier: str | None = None
    models: list[str] = []  # llm and agent steps: the tier's candidates, in fallback order
    tool: str | None = None
    effect: Effect | None = None
    needs_approval: bool = False  # an irreversible tool: the engine asks first
    granted: bool | None = None  # tool steps: does the process's grant hold it
    agent: str | None = None
    roles: list[str] = []


class RoleView(BaseModel):
    role: str
    people: list[str]  # empty: nobody could answer


class AgentView(BaseModel):
    grantee: str  # process/agent, as [grants] names it
    tier: str
    models: list[str]
    supervisor_tier: str | None
    supervisor_models: list[str]
    caps: AgentCaps
    tools: list[HeldTool]


class ProcessView(BaseModel):
    name: str
    budget: Budget
    budget_from: str  # the baton.toml table it comes from
    budget_extension: list[str] | None = None  # roles asked to extend a reached cap; None: a breach ends the run
    steps: list[StepView]
    roles: list[RoleView]
    grant: list[HeldTool]
    not_granted: list[str]  # "step: tool" for each tool step the grant leaves out
    agents: list[AgentView]


class CatalogTool(BaseModel):
    name: str
    effect: Effect
    idempotency: str
    description: str
    granted_to: list[str]  # grantees; empty: nobody holds it


class Inventory(BaseModel):
    processes: list[ProcessView]
    tools: list[CatalogTool]


def build(config: BatonConfig, process: str | None = None) -> Inventory:
    """The inventory of every shipped process (or only `process`), and the whole tool catalog."""
    specs = [s for name, s in REGISTRY.known().items() if process in (None, name)]
    return Inventory(
        processes=[_process(config, s) for s in specs],
        tools=[_catalog_tool(config, t) for t in TOOLS.values()],
    )


def _process(config: BatonConfig, spec: ProcessSpec) -> ProcessView:
    workflow = spec.workflow
    grant = config.grants.get(spec.name, Grant())
    agents = {a.name: a for a in workflow.agents}
    steps = [_step(config, grant, agents, s) for s in workflow.plan]
    budget_key = spec.name if spec.name in config.budgets else "default"
    return ProcessView(
        name=spec.name,
        budget=config.budgets.get(spec.name, config.default_budget()),
        budget_from=f"budgets.{budget_key}",
        budget_extension=workflow.budget_extension.roles if workflow.budget_extension else None,
        steps=steps,
        roles=[RoleView(role=r, people=config.members().get(r, [])) for r in workflow.roles],
        grant=_held(grant),
        not_granted=[f"{s.step}: {s.tool}" for s in steps if s.granted is False],
        agents=[_agent(config, spec.name, a) for a in workflow.agents],
    )


def _step(config: BatonConfig, grant: Grant, agents: dict[str, Agent], s: PlannedStep) -> StepView:
    view = StepView(step=s.step, kind=s.kind, note=s.note, roles=list(s.roles), agent=s.agent)
    if s.kind == "llm":
        view.tier, view.models = s.tier, config.tiers.get(s.tier, [])
    elif s.kind == "agent" and s.agent in agents:
        view.tier = agents[s.agent].tier
        view.models = config.tiers.get(view.tier, [])
    elif s.kind == "tool":
        spec = TOOLS.get(s.tool)
        view.tool, view.granted = s.tool, s.tool in grant.tools
        if spec is not None:
            view.effect, view.needs_approval = spec.effect, spec.effect is Effect.IRREVERSIBLE
    return view


def _agent(config: BatonConfig, process: str, agent: Agent) -> AgentView:
    grant = config.grants.get(f"{process}/{agent.name}", Grant())
    return AgentView(
        grantee=f"{process}/{agent.name}",
        tier=agent.tier,
        models=config.tiers.get(agent.tier, []),
        supervisor_tier=agent.supervisor_tier,
        supervisor_models=config.tiers.get(agent.supervisor_tier, []) if agent.supervisor_tier else [],
        caps=agent.caps,
        tools=_held(grant, agent.approvals, agent.facts.require),
    )


def _held(grant: Grant, approvals: dict[str, AskPolicy] | None = None, requires: dict[str, str] | None = None) -> list[HeldTool]:
    return [
        HeldTool(
            tool=name,
            effect=TOOLS[name].effect,
            bounds=grant.bounds.get(name, {}),
            requires=(requires or {}).get(name),
            approval=_approval((approvals or {}).get(name)),
        )
        for name in grant.tools
        if name in TOOLS  # load() refuses unknown tools; a hand-made config may still carry one
    ]


def _approval(policy: AskPolicy | None) -> ApprovalView | None:
    if policy is None:
        return None
    return ApprovalView(
        roles=policy.roles,
        escalate=[r for stage in policy.escalate for r in stage.roles],
        auto_approve=policy.auto_approve,
    )


def _catalog_tool(config: BatonConfig, spec: ToolSpec) -> CatalogTool:
    return CatalogTool(
        name=spec.name,
        effect=spec.effect,
        idempotency=idempotency(spec),
        description=spec.description,
        granted_to=[grantee for grantee, g in config.grants.items() if spec.name in g.tools],
    )


def idempotency(spec: ToolSpec) -> str:
    """How a retried call is kept from acting twice: nothing to keep for a read."""
    if not spec.needs_idempotency_key:
        return "none (read)"
    if spec.at_most_once:
        return "at most once (an unknown outcome asks a person)"
    return "per step"
