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
from typing import Literal, TypeVar

from pydantic import BaseModel, Field
from temporalio import workflow

from workflows.approvals import AskPolicy
from workflows.facts import FactBook, Facts
from workflows.ledger import LedgerEntry

with workflow.unsafe.imports_passed_through():
    from activities.llm.conversation import Message
    from activities.policy import RunPolicy

M = TypeVar("M", bound=BaseModel)


class AgentCaps(BaseModel):
    """The walls of one agent step; the first one reached ends it `escalated`, naming the cap."""

    max_turns: int = Field(default=8, gt=0, description="model turns (each proposes tools or answers)")
    max_tool_calls: int = Field(default=6, ge=0, description="tool calls that ran (refused ones do not count)")
    max_cost_usd: float = Field(default=0.10, gt=0, description="also never more than the run has left")
    ttl: timedelta = Field(default=timedelta(minutes=5), description="its own working time; waits for people excluded")
    turns_per_run: int = Field(
        default=20, gt=0, description="continue-as-new past this many turns, so history stays small"
    )


@dataclass(frozen=True)
class Agent:
    """An agent as a process declares it. Its tools are whatever `baton.toml` grants `process/name`."""

    name: str
    instructions: str
    output: type[BaseModel]
    tier: str = "fast"
    caps: AgentCaps = field(default_factory=AgentCaps)
    approvals: dict[str, AskPolicy] = field(default_factory=dict)  # irreversible tool -> how it is approved
    facts: Facts = field(default_factory=Facts)  # what its rules see beyond the arguments (workflows/facts.py)
    supervisor_tier: str | None = "strong"  # a reviewer that must pass irreversible proposals; None: none


class TrailEntry(BaseModel):
    """One thing that happened in the loop, in the order it happened: what an auditor reads."""

    turn: int
    kind: Literal["proposed", "refused", "invalid", "reviewed", "approved", "not_approved", "observed", "answered", "stopped"]
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
    messages: list[Message] = []
    trail: list[TrailEntry] = []
    ledger: list[LedgerEntry] = []
    done_keys: dict[str, str] = Field(default={}, description="irreversible calls already made: key -> observation")
    facts: FactBook = FactBook()


class AgentTask(BaseModel):
    """What the parent hands its agent child workflow."""

    process: str
    agent: str
    goal: str
    context: dict
    instructions: str
    output_type: str
    tier: str
    caps: AgentCaps
    approvals: dict[str, AskPolicy] = {}
    facts: Facts = Facts()
    supervisor_tier: str | None = None
    policy: RunPolicy
    progress: AgentProgress | None = None

    @property
    def grantee(self) -> str:
        return f"{self.process}/{self.agent}"


class AgentReport(BaseModel):
    """How an agent step ended, and everything it did on the way."""

    agent: str
    status: Literal["done", "escalated"]
    answer: dict | None = None
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

    def answer_as(self, output: type[M]) -> M | None:
        return None if self.answer is None else output.model_validate(self.answer)


class SupervisorVerdict(BaseModel):
    """A strong-tier reviewer's word on one irreversible proposal, before it runs."""

    passed: bool = Field(description="true only if the action is justified by the facts in the trail")
    reason: str = Field(min_length=1, max_length=500, examples=["The order was delivered damaged; the amount matches."])
