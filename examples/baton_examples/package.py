"""The examples as a Baton package: their processes, their systems of record, and their models' old names."""

from __future__ import annotations

from baton_examples.onboarding.contracts import WelcomeEmail
from baton_examples.onboarding.workflow import Onboarding
from baton_examples.sales_followup.contracts import BuyerSignals, FollowUpDraft
from baton_examples.sales_followup.workflow import SalesFollowUp
from baton_examples.support_triage.contracts import Resolution, TriageDecision
from baton_examples.support_triage.workflow import SupportTriage
from baton_examples.systems import open_systems
from workflows.api import Package


# Model steps recorded before this package existed name their output models by import path.
RECORDED_AT = {
    "workflows.onboarding": (WelcomeEmail,),
    "workflows.contracts.onboarding": (WelcomeEmail,),
    "workflows.support_triage": (TriageDecision, Resolution),
    "workflows.contracts.support_triage": (TriageDecision, Resolution),
    "workflows.sales_followup": (BuyerSignals, FollowUpDraft),
    "workflows.contracts.sales_followup": (BuyerSignals, FollowUpDraft),
}

package = Package(
    name="baton-examples",
    processes=(Onboarding, SupportTriage, SalesFollowUp),
    systems=open_systems,
    legacy_outputs={f"{module}:{m.__name__}": m for module, models in RECORDED_AT.items() for m in models},
)
