"""Bad input, generated: refused at the door with one clear line, or handled; never a crashed workflow task.

Property-based (hypothesis, derandomized, no example database) over what people and
scripts hand Baton: process inputs (arbitrary JSON and near-valid mutations of the
shipped examples) through the SDK and the CLI, and whatever the SDK accepts run for
real; decisions and signals with arbitrary payloads; unknown signals, queries and
updates. "No crash" is checked in the run's history: no WORKFLOW_TASK_FAILED event,
and the same worker still completes a run afterwards. baton.toml: tests/test_bad_config.py.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.common import RawValue
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError

from client.sdk import Baton, InputError, Refused, read_input, validate_input
from tests.conftest import LEADS, REVIEWERS, ROOT, running_worker
from tests.test_onboarding_routes import CLEAR, PEP, wait_for_state
from workflows.catalog import PROCESSES
from workflows.outcome import RunOutcome, RunState

# Reproducible in CI, nothing written into the repository, and fast enough for two cores.
FUZZ = settings(derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=examples)

EXAMPLES = {
    "onboarding": sorted((ROOT / "examples" / "onboarding").glob("*.json")),
    "support-triage": sorted((ROOT / "examples" / "support-triage").glob("*.json")),
    "sales-followup": sorted((ROOT / "examples" / "sales-followup").glob("*.json")),
}
CAPS = ("max_cost_usd", "max_steps", "max_llm_calls", "max_tool_calls", "max_wall_clock", "max_approval_idle")

# ----- strategies ---------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
odd_strings = st.sampled_from([
    "", " ", "\x00", "\n", "é", "例え", "\u202e", "🙂", "\ud800", "x" * 100_000, "a@b", "a@b.c", "@example.com",
    "ada@example.com", "ada@@example.com", "ada@example.com\n", "ada@例え.jp", "Robert'); DROP TABLE crm;--",
    "P3D", "PT-1H", "-P1D", "1e400", "NaN", "null",
])
odd_numbers = st.sampled_from([0, -1, 1, 0.0, -0.0, 1e-300, 1e308, 2**63, -(2**63), 10**30, math.inf, -math.inf, math.nan])
odd_values = st.one_of(odd_strings, odd_numbers, json_values)
cap_values = st.one_of(
    odd_numbers, st.integers(min_value=-3, max_value=10**6), st.floats(),
    st.sampled_from(["PT1H", "P2D", "P999999999D", "PT0S", "-PT1H", "PT0.000001S", "P", "3 days", 3600.5]),
    odd_values,
)
budget_overrides = st.one_of(
    st.dictionaries(st.sampled_from(CAPS), cap_values, max_size=2),
    st.dictionaries(st.sampled_from([*CAPS, "max_everything", "maximum"]), odd_values, max_size=4),
    odd_values,
)


@st.composite
def near_valid(draw, process: str | None = None) -> tuple[str, object]:
    """A shipped example of a process, mutated a little: a field dropped, added, retyped, or a budget override."""
    process = process or draw(st.sampled_from(sorted(EXAMPLES)))
    data = json.loads(draw(st.sampled_from(EXAMPLES[process])).read_text())
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        how = draw(st.sampled_from(["drop", "set", "add", "budget", "budget"]))
        if how == "drop" and data:
            data.pop(draw(st.sampled_from(sorted(data))))
        elif how == "set" and data:
            data[draw(st.sampled_from(sorted(data)))] = draw(odd_values)
        elif how == "add":
            data[draw(st.text(max_size=12))] = draw(odd_values)
        else:
            data["budget"] = draw(budget_overrides)
    return process, data


def one_line(message: str) -> bool:
    return bool(message) and "\n" not in message and "Traceback" not in message


def check_validation(process: str, data: object) -> object | None:
    """validate_input refuses with one InputError line, or accepts a value the workflow will read back the same."""
    try:
        value = validate_input(process, data)
    except InputError as err:
        assert one_line(str(err)), repr(str(err))
        return None
    converter = pydantic_data_converter.payload_converter
    back = converter.from_payloads(converter.to_payloads([value]), [PROCESSES[process].input])[0]
    assert back == value, f"{value!r} does not reach the workflow as it was accepted: {back!r}"
    return value


# ----- 1. process inputs through the SDK ------------------------------------------------------


@fuzz(300)
@given(process=st.sampled_from([*PROCESSES, "no-such-process", ""]), data=json_values)
def test_any_json_is_refused_in_one_line_or_accepted_unchanged(process, data):
    check_validation(process, data)


@fuzz(400)
@given(case=near_valid())
def test_near_valid_inputs_are_refused_in_one_line_or_accepted_unchanged(case):
    check_validation(*case)


EDGE_CAPS = [
    None, True, 0, -1, 1, 2, 0.0, -0.0, 0.5, 1e-300, 1e308, 2**63, 10**30, math.inf, -math.inf, math.nan, "", "1",
    "PT1H", "P2D", "P999999999D", "PT0S", "-PT1H", "PT0.000001S", "P", "3 days", 3600.5, [], {}, {"max": 1},
]


@pytest.mark.parametrize("cap", [*CAPS, "max_everything"])
def test_every_budget_cap_with_every_edge_value(cap):
    """Exhaustive where hypothesis would rarely look: each cap, each edge value, each process."""
    for process, files in EXAMPLES.items():
        data = json.loads(files[0].read_text())
        for value in EDGE_CAPS:
            check_validation(process, {**data, "budget": {cap: value}})


@fuzz(150)
@given(content=st.one_of(
    st.binary(max_size=60),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"", b"\xff\xfe{}", b"[" * 100_000, b"{" * 5_000, b'{"a": NaN}', b"\xef\xbb\xbf{}", b"{}" * 3]),
))
def test_any_input_file_is_read_or_refused_in_one_line(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("input") / "input.json"
    path.write_bytes(content)
    try:
        data = read_input(path)
    except InputError as err:
        assert one_line(str(err)) and str(path) in str(err), repr(str(err))
    else:
        assert isinstance(data, dict)


def test_an_input_file_that_cannot_be_read_is_refused(tmp_path):
    for path in (tmp_path / "missing.json", tmp_path):
        with pytest.raises(InputError, match="cannot read"):
            read_input(path)
