"""The search attributes that make Baton runs filterable in the Web UI and CLI."""

from temporalio.common import SearchAttributeKey

PROCESS = SearchAttributeKey.for_keyword("BatonProcess")
STATUS = SearchAttributeKey.for_keyword("BatonStatus")
COST_USD = SearchAttributeKey.for_float("BatonCostUsd")
AWAITING_APPROVAL = SearchAttributeKey.for_bool("BatonAwaitingApproval")
APPROVAL_ROLES = SearchAttributeKey.for_keyword_list("BatonApprovalRoles")  # roles asked by open requests
# Whom a run is about, as a keyed digest of its SUBJECT field (activities/subject.py): findable, not readable.
SUBJECT = SearchAttributeKey.for_keyword("BatonSubject")

ALL = (PROCESS, STATUS, COST_USD, AWAITING_APPROVAL, APPROVAL_ROLES, SUBJECT)
