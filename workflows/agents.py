"""Bounded agents: how a process declares one, what it is handed, and what it reports.

An agent is one ambiguous step handed to a tool-using model loop, inside
walls: only the tools `baton.toml` grants it, caps on turns, tool calls, cost
and time to live, a supervisor and an approval before anything irreversible,
and a typed end: `done` with its answer, or `escalated` with the trail of every
proposal, check and observation, for the person who takes over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, Literal, Self, TypeVar

from pydantic import BaseModel, Field
from temporalio import workflow

from workflows.approvals import AskPolicy
from workflows.facts import FactBook, Facts
from workflows.ledger import LedgerEntry

with workflow.unsafe.imports_passed_through():
    from activities.llm.conversation import Message
    from activities.identity import Verified
    from activities.llm.output_type import type_name
    from activities.policy import Budget, RunPolicy

O = TypeVar("O", bound=BaseModel)  # an agent's declared output model
Answer = TypeVar("Answer")  # unbound, so a report read untyped keeps its answer as the JSON it is


class AgentCaps(BaseModel):
    """The walls of one agent step; the first one reached ends it `escalated`, naming the cap."""

    max_turns: int = Field(default=8, gt=0, description="model turns (each proposes tools or answers)")
    max_tool_calls: int = Field(default=6, ge=0, description="tool calls that ran (refused ones do not count)")
    max_cost_usd: float = Field(default=0.10, gt=0, description="also never more than the run has left")
    ttl: timedelta = Field(default=timedelta(minutes=5), description="its own working time; waits for people excluded")
    turns_per_run: int = Field(
        default=20, gt=0, description="continue-as-new past this many turns, so history stays small"
    )
    max_proposals_per_turn: int = Field(
        default=8, gt=0, description="tool calls one model answer may propose; more ends the agent before any is checked"
    )
    max_refusals: int = Field(default=10, gt=0, description="proposals refused (not granted, invalid, repeated) per agent")


@dataclass(frozen=True)
class Agent(Generic[O]):
    """An agent as a process declares it. Its tools are whatever `baton.toml` grants `process/name`.

    Typed by its `output`: the `agent` step's report answers with that model.
    """

    name: str
    instructions: str
    output: type[O]
    tier: str = "fast"
    caps: AgentCaps = field(default_factory=AgentCaps)
    approvals: dict[str, AskPolicy] = field(default_factory=dict)  # irreversible tool -> how it is approved
    facts: Facts = field(default_factory=Facts)  # what its rules see beyond the arguments (workflows/facts.py)
    supervisor_tier: str | None = "strong"  # a reviewer that must pass irreversible proposals; None: none


class TrailEntry(BaseModel):
    """One thing that happened in the loop, in the order it happened: what an auditor reads."""

    turn: int
    kind: Literal["proposed", "refused", "invalid", "reviewed", "approved", "not_approved", "observed", "answered", "stopped", "unknown"]
    tool: str | None = None
    detail: str = ""
    data: dict | None = None


class AgentProgress(BaseModel):
    """What an agent carries across continue-as-new: its counters, conversation, trail and ledger."""

    started_at: datetime
    paused_s: float = 0.0
    turns: int = 0
    tool_calls: int = 0
    llm_calls: int = 0
    cost_usd: float = 0.0
    refused: int | None = Field(default=None, description="proposals refused so far; None in runs recorded before the count")
    messages: list[Message] = []
    trail: list[TrailEntry] = []
    ledger: list[LedgerEntry] = []
    done_keys: dict[str, str] = Field(default={}, description="irreversible calls already made: key -> observation")
    facts: FactBook = FactBook()
    wall_clock_out: bool = Field(default=False, description="its max_wall_clock's timer has fired (runs that keep it by timer)")
    ttl_out: bool = Field(default=False, description="its ttl's timer has fired (runs that keep the ttl by timer)")


class AgentDeclaration(BaseModel):
    """An agent as its process declares it (`Agent`), as the worker hands it to the agent's own run."""

    instructions: str
    output_type: str = Field(description="stable name of the declared output model, for the model activity")
    output_name: str
    tier: str
    caps: AgentCaps
    approvals: dict[str, AskPolicy] = {}
    facts: Facts = Facts()
    supervisor_tier: str | None = None

    @classmethod
    def of(cls, agent: Agent, process: str) -> Self:
        return cls(
            instructions=agent.instructions, output_type=type_name(agent.output, process), output_name=agent.output.__name__,
            tier=agent.tier, caps=agent.caps, approvals=agent.approvals, facts=agent.facts,
            supervisor_tier=agent.supervisor_tier,
        )


class Allowance(BaseModel):
    """What the parent run has left of its caps when it delegates: it can only tighten the agent's declared caps."""

    max_cost_usd: float = Field(gt=0, allow_inf_nan=False)
    max_llm_calls: int | None = Field(default=None, ge=0)
    max_tool_calls: int | None = Field(default=None, ge=0)
    max_wall_clock: timedelta | None = Field(default=None, gt=timedelta(0))
    max_approval_idle: timedelta | None = Field(default=None, gt=timedelta(0))

    def budget(self, caps: AgentCaps, process: Budget) -> Budget:
        """The agent's budget: its declared caps, within what its parent has left and its process's approval idle."""
        return Budget(
            max_cost_usd=min(caps.max_cost_usd, self.max_cost_usd),
            max_steps=STEPS_PER_TURN * caps.max_turns + 1,
            max_llm_calls=self.max_llm_calls,
            max_tool_calls=self.max_tool_calls,
            max_wall_clock=self.max_wall_clock,
            max_approval_idle=_least(self.max_approval_idle, process.max_approval_idle),
        )


STEPS_PER_TURN = 4  # a turn, a tool call, a review, an approval: a safety net under the named caps


def _least(a: timedelta | None, b: timedelta | None) -> timedelta | None:
    return b if a is None else a if b is None else min(a, b)


class AgentTask(BaseModel):
    """What the parent hands its agent child workflow: names, the goal and what it has left, never a policy.

    The child takes its declaration and policy from the worker (`AgentPolicy`).
    The fields after `progress` are read only when a run recorded before that
    replays; a new run ignores them, whatever a caller puts there.
    """

    process: str
    agent: str
    goal: str
    context: dict
    allowance: Allowance | None = Field(default=None, description="None only in runs recorded before allowances")
    progress: AgentProgress | None = None
    started_by: Verified | None = None  # who started the parent run: they may not decide the agent's requests either
    instructions: str | None = None
    output_type: str | None = None
    tier: str | None = None
    caps: AgentCaps | None = None
    approvals: dict[str, AskPolicy] = {}
    facts: Facts = Facts()
    supervisor_tier: str | None = None
    policy: RunPolicy | None = None

    @property
    def grantee(self) -> str:
        return f"{self.process}/{self.agent}"

    def recorded(self) -> tuple[AgentDeclaration, RunPolicy]:
        """The declaration and policy a run recorded before the worker handed them out carried in its task."""
        name = (self.output_type or "").rpartition(":")[2].rpartition(".")[2]
        declaration = AgentDeclaration(
            instructions=self.instructions or "", output_type=self.output_type or "", output_name=name,
            tier=self.tier or "fast", caps=self.caps or AgentCaps(), approvals=self.approvals, facts=self.facts,
            supervisor_tier=self.supervisor_tier,
        )
        return declaration, self.policy


class AgentPolicyRequest(BaseModel):
    """What an agent run asks the worker for: its process, its name, and the run that started it."""

    process: str
    agent: str
    parent_id: str | None
    parent_run_id: str | None


class AgentPolicy(BaseModel):
    """The worker's answer: the agent's declaration, and its process's policy holding only the agent's grant."""

    declaration: AgentDeclaration
    policy: RunPolicy


class AgentReport(BaseModel, Generic[Answer]):
    """How an agent step ended, and everything it did on the way.

    The `agent` step returns it as `AgentReport[Output]`, its answer validated as
    the agent's declared output; the child run and the ledger carry it as JSON.
    """

    agent: str
    status: Literal["done", "escalated"]
    answer: Answer | None = None
    cap: str | None = Field(default=None, description="the cap that stopped it, if one did")
    reason: str
    turns: int
    tool_calls: int
    llm_calls: int = 0
    refused: int
    cost_usd: float
    tokens_in: int = 0
    tokens_out: int = 0
    trail: list[TrailEntry]

    def answering(self, output: type[O]) -> AgentReport[O]:
        """This report with its answer validated as `output`, the agent's declared model."""
        return AgentReport[output].model_validate(self.model_dump())  # type: ignore[valid-type]


class SupervisorVerdict(BaseModel):
    """A strong-tier reviewer's word on one irreversible proposal, before it runs."""

    passed: bool = Field(description="true only if the action is justified by the facts in the trail")
    reason: str = Field(min_length=1, max_length=500, examples=["The order was delivered damaged; the amount matches."])
