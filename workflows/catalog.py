"""The shipped processes by name, with the input model each one takes.

The client validates a run's input against this model before it starts
anything, so bad input is refused at the door with the failing field named.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from workflows.onboarding import Applicant, Onboarding


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    workflow: type
    input: type[BaseModel]


PROCESSES: dict[str, ProcessSpec] = {
    spec.name: spec for spec in (ProcessSpec("onboarding", Onboarding, Applicant),)
}
