"""What a prior-authorization run takes, what its model step answers, what the clinical reviewer sees and what it returns.

Patient data is personal data: the note, the member id, the patient's name,
the diagnosis and the clinical justification are marked PERSONAL, so they are
sealed in payloads, kept out of what the Web UI shows undecoded, and exported
by `baton audit` as the run's `[audit] values` allow.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from baton_examples.prior_authorization.tools import Coverage
from workflows.api import PERSONAL, BudgetOverride

CPT = r"^[0-9]{4}[0-9A-Z]$"  # a CPT procedure code: 29881, 0042T
ICD10 = r"^[A-TV-Z][0-9][0-9AB](\.[0-9A-Z]{1,4})?$"  # an ICD-10-CM diagnosis code: M23.221
NPI = r"^[0-9]{10}$"  # a provider's National Provider Identifier


class PriorAuthRequest(BaseModel):
    """The input of a run: the request's id and the doctor's note as written."""

    request_id: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9-]+$")
    note: str = Field(min_length=1, max_length=20_000, json_schema_extra=PERSONAL)
    budget: BudgetOverride | None = None

    def business_key(self) -> str:
        return self.request_id


NULL_IF_UNSTATED = "null when the note does not state it; never guessed"


class ExtractedRequest(BaseModel):
    """The typed request the model read in the note: a field the note does not state is null, not invented."""

    member_id: str | None = Field(None, max_length=40, json_schema_extra=PERSONAL,
                                  description=f"the patient's insurance member id; {NULL_IF_UNSTATED}")
    patient_name: str | None = Field(None, max_length=200, json_schema_extra=PERSONAL,
                                     description=f"the patient's name; {NULL_IF_UNSTATED}")
    procedure_code: str | None = Field(None, pattern=CPT, description=f"the CPT code asked for; {NULL_IF_UNSTATED}")
    diagnosis_code: str | None = Field(None, pattern=ICD10, json_schema_extra=PERSONAL,
                                       description=f"the ICD-10 diagnosis code; {NULL_IF_UNSTATED}")
    requested_date: date | None = Field(None, description=f"when the procedure is to be done; {NULL_IF_UNSTATED}")
    provider_npi: str | None = Field(None, pattern=NPI, description=f"the ordering provider's NPI; {NULL_IF_UNSTATED}")
    provider_name: str | None = Field(None, max_length=200, description=f"the ordering provider; {NULL_IF_UNSTATED}")
    clinical_justification: str | None = Field(
        None, max_length=2000, json_schema_extra=PERSONAL,
        description=f"why the procedure is medically necessary, in the note's words; {NULL_IF_UNSTATED}",
    )


class ReviewFile(BaseModel):
    """What the clinical reviewer sees (`baton show`): the request as read, the policy, and why the rules did not pass it."""

    request_id: str
    request: ExtractedRequest
    coverage: Coverage | None
    verdict: str
    missing: list[str]
    reasons: list[str]
    case_id: str


class PriorAuthorized(BaseModel):
    """The process's own result, whatever the end state."""

    request_id: str
    verdict: str | None = None
    missing: list[str] = []
    reasons: list[str] = []
    case_id: str | None = None
    decision: str | None = Field(None, description='"approved" or "denied", as logged in the CRM')
    reviewed_by: str | None = None
