"""What the Web UI shows of a run: search attributes, and the markdown of its summary and current details.

All of that markdown is made here. Every piece of text in it goes through `plain` (or `code`),
so a caller's business key, a model's reason or a tool's answer reads as exactly that text:
the only markup is the layout written in this module.
"""

from __future__ import annotations

import json
import re
import shlex
import unicodedata
from collections.abc import Iterable
from datetime import datetime
from types import MappingProxyType
from typing import Any

from temporalio import workflow
from temporalio.common import (
    SearchAttributeIndexedValueType,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)

from workflows import search_attributes as sa
from workflows.approvals import ApprovalRequest
from workflows.outcome import RunState


class Shown(str):
    """Text the Web UI must show to everyone, not only to who may decode: summaries of runs, steps and timers.

    Payloads are encrypted (worker/codec.py), and Temporal encodes a summary as
    a payload too: sealed, an operator without decoding rights would see
    ciphertext where the UI should tell what a run does. Baton's converter
    (worker/converter.py) marks a `Shown` value's payload (worker/codec.py SHOWN) and the
    codec leaves it in clear, as it leaves a run's current details (its
    metadata query). So a `Shown` is built only from names, business keys and
    redacted text (workflows/personal.py): never from a run's personal data.
    """

    __slots__ = ()


def run_attributes(
    process: str, state: RunState, cost_usd: float, open_requests: Iterable[ApprovalRequest], subject: str | None = None,
) -> list[tuple[SearchAttributeKey, Any]]:
    """A run's search attributes, from what the engine knows of it (`subject`: the keyed digest of whom, once known)."""
    asked = list(open_requests)
    return [
        (sa.PROCESS, process),
        (sa.STATUS, state.value),
        (sa.COST_USD, round(cost_usd, 6)),
        (sa.AWAITING_APPROVAL, bool(asked)),
        (sa.APPROVAL_ROLES, sorted({role for r in asked for role in r.roles})),
        *([(sa.SUBJECT, subject)] if subject else []),
    ]


def at_start(process: str) -> TypedSearchAttributes:
    """What a new run's attributes are before its first step: the client sets them with the start,
    which spares every run an upsert (a command and a history event) in its first workflow task."""
    return TypedSearchAttributes(
        [SearchAttributePair(key, value) for key, value in run_attributes(process, RunState.RUNNING, 0.0, [])]
    )


COST_EVERY = 10  # changes of cost alone per upsert of BatonCostUsd: the last of them is upserted


class SearchAttributeMirror:
    """Upserts search attributes only when their value changed: each upsert is a history event.

    Seeded with the attributes the run was started with, so values the starter
    already set are not upserted again. An unset keyword list reads as empty:
    Temporal keeps no empty list (at a start it is dropped, in an upsert it unsets).

    With `batch_cost` (runs since workflows/patches.py COST_BATCH), a change
    of cost alone waits until COST_EVERY of them have, and the last is upserted:
    back-to-back model steps each changed it, an upsert (a command, a history
    event, a visibility write) per step. Any other change carries the cost with
    it, and so does `settle` (a run about to wait, continue as new or end): a run
    waiting for a person, an agent or the next window, or ended, shows its exact
    cost. Changes are counted, never timed: a rule on `workflow.now()` diverged
    on replay, since a first execution can run a task's code on the clock of the
    task before it (README Performance).
    """

    def __init__(self, given: TypedSearchAttributes) -> None:
        self._published: dict[str, Any] = {
            **{key.name: [] for key in sa.ALL if key.indexed_value_type is SearchAttributeIndexedValueType.KEYWORD_LIST},
            **{pair.key.name: pair.value for pair in given},
        }
        self.batch_cost = False
        self._held = 0  # how many costs changed alone since the last upsert, not upserted yet
        self._last_held: float | None = None  # the newest of them

    def publish(self, values: Iterable[tuple[SearchAttributeKey, Any]], *, settle: bool = False) -> None:
        changed = [(key, v) for key, v in values if self._published.get(key.name, object()) != v]
        if not changed or (self.batch_cost and not settle and self._cost_waits(changed)):
            return
        workflow.upsert_search_attributes([key.value_set(v) for key, v in changed])
        self._published.update({key.name: v for key, v in changed})
        self._held, self._last_held = 0, None

    def _cost_waits(self, changed: list[tuple[SearchAttributeKey, Any]]) -> bool:
        """Whether this change of cost alone waits: each new cost counts once, however often it is published."""
        (key, cost), *others = changed
        if others or key.name != sa.COST_USD.name:
            return False
        if self._last_held != cost:
            self._held, self._last_held = self._held + 1, cost
        return self._held < COST_EVERY


def current_details(
    process: str, state: RunState, spent: str, *, step: str | None, reason: str | None, run_id: str,
    asked: Iterable[ApprovalRequest],
) -> str:
    """What the run does now, what its caps have used (`spent`), and what it asks or why it ended."""
    head = f"**{plain(process)}** · {plain(state.value)} · {plain(spent)}"
    requests = list(asked)
    if state.is_final:
        return f"{head}\n\n{plain(reason)}"
    if not requests:
        return f"{head}\n\nRunning step {code(step)}"
    return "\n\n".join([head, *(approval_markdown(run_id, r) for r in requests)])


def utc_text(moment: datetime, *, seconds: bool = True) -> str:
    """`2026-11-30 03:04:05` (or to the minute), as `%Y-%m-%d %H:%M:%S` gives it, formatted by hand.

    datetime's strftime imports `time` at every call, and in the workflow
    sandbox every import goes through the sandbox's import hooks: a quarter of
    the CPU of the current details (rendered after each step then; now only when asked).
    """
    day = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d} {moment.hour:02d}:{moment.minute:02d}"
    return f"{day}:{moment.second:02d}" if seconds else day


def approval_markdown(run_id: str, r: ApprovalRequest) -> str:
    """What is asked, of whom, by when, what happens then, and the exact commands to answer."""
    who = "/".join(r.roles) + (f" ({', '.join(r.people)})" if r.people else "")
    then = (
        f"the run stops ({r.stops_run})" if r.stops_run
        else f"escalates to {'/'.join(r.escalates_to)}" if r.escalates_to
        else "the request is rejected" if r.at_deadline == "reject" else "the run ends"
    )
    stage = " " + plain(f"(escalated, stage {r.stage + 1})") if r.stage else ""
    lines = [
        f"### Waiting for approval {code(r.id)}{stage}",
        plain(r.ask),
        *([f"Proposed: {plain(r.proposed)}"] if r.proposed else []),
        plain(f"Who: {who} · deadline {utc_text(r.deadline, seconds=False)} UTC, then {then}"),
        "  \n".join(f"{label}: {code(shlex.join(argv))}" for label, argv in _answers(run_id, r.id)),
    ]
    return "\n\n".join(lines)


def _answers(run_id: str, request_id: str) -> list[tuple[str, list[str]]]:
    """The commands that answer a request, as argument lists (quoted for the shell when shown)."""
    payload = json.dumps({"request_id": request_id, "token": "TOKEN"})
    return [  # the decider is whoever the token proves (BATON_TOKEN, or `baton login NAME`): no name to type
        ("Approve", ["baton", "approve", run_id, "--request", request_id]),
        ("Reject", ["baton", "reject", run_id, "--request", request_id, "--comment", "WHY"]),
        ("Or", ["temporal", "workflow", "signal", "--workflow-id", run_id, "--name", "approve", "--input", payload]),
    ]


def run_summary(process: str, key: str) -> Shown:
    """A run's static summary (markdown): the process and its business key, which the caller chose."""
    return Shown(plain(f"{process} · {key}" if key else process))


# ----- text into markdown: what a caller, a model or a system sent must read as exactly that ---------

# Markdown reads these as markup somewhere (this Web UI also reads `$` as math and `(c)`, `--`, `...` as
# typography); a backslash makes each a literal character, in CommonMark and in the UI's renderer.
_MARKUP = re.compile(r"[\\`*_{}\[\]()#+\-.!:|<>~$^&]")
# ... except where it cannot be markup: inside a word (A-1002, compliance_review) or a number (0.05, 10:30).
_SAFE_BETWEEN = MappingProxyType({"-": str.isalnum, "_": str.isalnum, ".": str.isdigit, ":": str.isdigit})
_FRACTION = re.compile(r"(?<=\d)/(?=\d)")  # the UI would typeset 1/2 as a fraction


def plain(text: object) -> str:
    """Text from anywhere as markdown that shows exactly that text, on one line, with no markup in it.

    Whitespace runs (line breaks too) become one space, so no heading, list, quote or table can
    start inside; control and invisible format characters (bidi overrides, zero-width) are
    dropped, so what a reader sees is in the order it was sent. Straight quotes may be shown
    curled by the UI's typographer: no escape prevents it, and it changes no meaning.
    """
    return _FRACTION.sub("&#47;", _MARKUP.sub(_escape, _one_line(text)))


def _escape(found: re.Match) -> str:
    c, i, text = found[0], found.start(), found.string
    safe = _SAFE_BETWEEN.get(c)
    inside = safe is not None and 0 < i < len(text) - 1 and safe(text[i - 1]) and safe(text[i + 1])
    return c if inside else "\\" + c


def code(text: object) -> str:
    """Text as an inline code span, shown exactly and copied as one piece, whatever backticks it holds."""
    text = _one_line(text)
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"


def _one_line(text: object) -> str:
    """The text's printable characters, each whitespace run made one space."""
    text = str(text)
    if not text.isprintable():
        text = "".join(c for c in text if c.isspace() or unicodedata.category(c) not in ("Cc", "Cf"))
    return " ".join(text.split())
