"""What a deposition-research run takes, what its agent answers and what the run returns."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from workflows.api import BudgetOverride

# A transcript citation: page:line, or page:line-line for a passage on one page.
Cite = Annotated[str, Field(pattern=r"^[0-9]{1,4}:[0-9]{1,2}(-[0-9]{1,2})?$", examples=["42:11"])]


class DepositionRequest(BaseModel):
    """The input of a run: which deposition, in which matter, and what the attorney wants to know."""

    deposition_id: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9-]+$")
    matter: str = Field(min_length=1, max_length=200)
    focus: str = Field(min_length=1, max_length=1000)
    budget: BudgetOverride | None = None

    def business_key(self) -> str:
        return self.deposition_id


class Testimony(BaseModel):
    point: str = Field(min_length=1, max_length=500, examples=["The witness saw the shipment arrive."])
    cite: Cite


class Contradiction(BaseModel):
    earlier: Cite
    later: Cite
    explanation: str = Field(min_length=1, max_length=500, examples=["The two answers give different dates."])


class CaseCitation(BaseModel):
    citation: str = Field(min_length=1, max_length=200, examples=["Doe v. Roe, 1 F.4th 1 (2021)"])
    relevance: str = Field(min_length=1, max_length=500, examples=["On acceptance after inspection."])


class DepositionSummary(BaseModel):
    """What the research agent answers: testimony, contradictions and cases, each with its citation."""

    key_testimony: list[Testimony] = Field(min_length=1, max_length=12)
    contradictions: list[Contradiction] = Field(default=[], max_length=12)
    relevant_cases: list[CaseCitation] = Field(default=[], max_length=8)
    open_questions: list[str] = Field(default=[], max_length=8)


class Researched(BaseModel):
    """The process's own result, whatever the end state."""

    deposition_id: str
    agent_status: str | None = None
    summary: DepositionSummary | None = None
    case_law_usd: float = Field(0, description="what the case-law queries charged, as the source reported")
    cap: str | None = None
    trail: list[str] = []
