"""Which decisions a run takes: the rules behind the `decide` validator and the signals."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from workflows.approval_desk import MAX_SETTLING, ApprovalDesk
from workflows.approvals import ApprovalRequest, Verdict

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def desk_with(*ids: str) -> ApprovalDesk:
    desk = ApprovalDesk()
    for i in ids:
        desk.open[i] = ApprovalRequest(
            id=i, step=i, ask="?", roles=["compliance"], context={}, cost_so_far_usd=0,
            requested_at=NOW, deadline=NOW,
        )
    return desk


def verdict(by: str = "ann", request_id: str | None = None, approved: bool = True) -> Verdict:
    return Verdict(by=by, request_id=request_id, approved=approved)


def test_the_only_open_request_needs_no_id():
    assert desk_with("review").take(verdict()).request_id == "review"


@pytest.mark.parametrize("ids", [(), ("a", "b")])
def test_without_an_id_zero_or_several_open_requests_are_refused(ids):
    with pytest.raises(ValueError, match=f"{len(ids)} requests are open"):
        desk_with(*ids).take(verdict())


def test_an_unknown_request_is_refused_and_nothing_recorded():
    desk = desk_with("review")
    with pytest.raises(ValueError, match="no open approval request 'nope'"):
        desk.take(verdict(request_id="nope"))
    assert desk.verdicts == {}


def test_the_same_decision_twice_is_idempotent_and_the_first_stands():
    desk = desk_with("review")
    first = desk.take(Verdict(by="ann", request_id="review", approved=True, comment="ok"))
    again = desk.take(Verdict(by="ann", request_id="review", approved=True, comment="ok, again"))
    assert again == first and again.comment == "ok"


@pytest.mark.parametrize("other", [verdict(by="bob"), verdict(approved=False)])
def test_a_different_decision_on_a_decided_request_is_refused(other):
    desk = desk_with("review")
    desk.take(verdict())
    with pytest.raises(ValueError, match="already decided by ann"):
        desk.take(other.model_copy(update={"request_id": "review"}))
    assert desk.verdicts["review"].by == "ann" and desk.verdicts["review"].approved


# ----- the validator's screen: only what can never apply, whatever the task brings ----


def test_the_screen_lets_through_a_request_the_run_may_reach_in_this_task():
    desk = desk_with()
    desk.screen(verdict(request_id="review"))  # not open yet: the handler judges it after the task
    desk.screen(verdict())  # nothing open yet, no id: the same
    assert not desk.can_judge("review") and not desk.can_judge(None)


def test_the_screen_refuses_a_request_that_closed_undecided():
    desk = desk_with("review")
    desk.close("review")
    assert desk.can_judge("review")
    with pytest.raises(ValueError, match="'review' is closed"):
        desk.screen(verdict(request_id="review"))


def test_the_screen_refuses_a_person_no_stage_asks_and_lets_a_later_stage_through():
    desk = ApprovalDesk()
    request = desk_with("review").open["review"].model_copy(update={"people": ["ann"]})
    desk.ask(request, eligible={"ann", "lead"}, roles={"compliance", "compliance-lead"})
    desk.screen(verdict(by="lead", request_id="review"))  # an escalation in this same task may ask them
    with pytest.raises(ValueError, match="'mallory' may not decide 'review'"):
        desk.screen(verdict(by="mallory", request_id="review"))
    with pytest.raises(ValueError, match="'lead' may not decide"):
        desk.take(verdict(by="lead", request_id="review"))  # judged as the run stands: the first stage asks ann


def test_the_screen_refuses_a_different_decision_and_passes_the_same_one_again():
    desk = desk_with("review")
    desk.take(verdict(request_id="review"))
    desk.close("review")
    desk.screen(verdict(request_id="review"))
    assert desk.take(verdict(request_id="review")).by == "ann"
    with pytest.raises(ValueError, match="already decided by ann"):
        desk.screen(verdict(request_id="review", approved=False))


def test_the_screen_bounds_how_many_decisions_wait_for_a_request():
    desk = desk_with()
    desk.settling = MAX_SETTLING
    with pytest.raises(ValueError, match="decisions wait already"):
        desk.screen(verdict(request_id="review"))
