"""The shipped processes by name, with the input model each one takes.

The client validates a run's input against this model before it starts
anything, so bad input is refused at the door with the failing field named.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from workflows.bounded_agent import BoundedAgent
from workflows.onboarding import Applicant, Onboarding
from workflows.sales_followup import FollowUpRequest, SalesFollowUp
from workflows.support_triage import SupportRequest, SupportTriage


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    workflow: type
    input: type[BaseModel]


PROCESSES: dict[str, ProcessSpec] = {
    spec.name: spec
    for spec in (
        ProcessSpec("onboarding", Onboarding, Applicant),
        ProcessSpec("support-triage", SupportTriage, SupportRequest),
        ProcessSpec("sales-followup", SalesFollowUp, FollowUpRequest),
    )
}

# What a worker (and the replayer) registers: the processes, and the agent loop they delegate to.
WORKFLOWS: list[type] = [*(spec.workflow for spec in PROCESSES.values()), BoundedAgent]
