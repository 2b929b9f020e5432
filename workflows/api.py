"""Everything a process author imports: the one module a package's processes and tools are written against.

Baton's own examples (examples/baton_examples) import nothing else from Baton,
exactly as a team's package would. What is here is the engine's promise;
anything else in workflows/ or activities/ may change without notice.

    from workflows.api import Process, PlannedStep, RunOutcome, RunState, tool, Effect, Contract, Package

A process's runs stay on the build they started on (pinned, the default) unless
its class says otherwise in Temporal's own decorator, `workflow.defn(name=...,
versioning_behavior=VersioningBehavior.AUTO_UPGRADE)` (README, "Changing a process").
"""

from __future__ import annotations

from temporalio.common import VersioningBehavior

from activities.personal import PERSONAL, SUBJECT
from activities.policy import BudgetOverride
from activities.tools.contracts import Contract, RecordRefused
from activities.tools.registry import Effect, SystemsSettings, ToolSpec, tool
from workflows.agents import Agent, AgentCaps, AgentReport
from workflows.approvals import ApprovalStatus, AskPolicy, AtDeadline, Stage
from workflows.engine import Process
from workflows.facts import Facts, Lookup, Total
from workflows.outcome import RunOutcome, RunState
from workflows.plan import PlannedStep
from workflows.registry import Package
from workflows.spend_cap import OnSpendCap

__all__ = (
    "PERSONAL", "SUBJECT", "Agent", "AgentCaps", "AgentReport", "ApprovalStatus", "AskPolicy", "AtDeadline",
    "BudgetOverride", "Contract", "Effect", "Facts", "Lookup", "OnSpendCap", "Package", "PlannedStep", "Process",
    "RecordRefused", "RunOutcome", "RunState", "Stage", "SystemsSettings", "ToolSpec", "Total",
    "VersioningBehavior", "tool",
)
