"""A bad baton.toml, generated: `load` returns a config or raises ConfigError in one line naming the file.

Property-based (hypothesis, derandomized, no example database): the shipped file with
its values replaced, removed or joined by unknown ones, whole documents of the wrong
shape, and bytes that are not TOML at all. Never another exception, never a traceback;
and `python -m worker --config FILE` says so in one line and exits 1.
"""

from __future__ import annotations

import base64
import json
import math
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import ROOT
from tests.test_bad_input import fuzz
from worker.config import BatonConfig, ConfigError, demo_roles, load, payload_settings

SHIPPED = tomllib.loads((ROOT / "baton.toml").read_text())
SHIPPED["offline"]["scripts"] = str(ROOT / "examples" / "offline-scripts.json")  # wherever the tests run from


def toml_value(value: object) -> str:
    """One TOML value on one line (inline tables and arrays), for documents built from Python data."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return '"' + "".join(
            f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else "\\" + c if c in '"\\' else c for c in value
        ) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def toml_document(data: dict) -> str:
    return "".join(f"{toml_value(str(k))} = {toml_value(v)}\n" for k, v in data.items())


def paths(data: dict, prefix: tuple = ()) -> list[tuple]:
    found = []
    for key, value in data.items():
        found.append((*prefix, key))
        if isinstance(value, dict):
            found += paths(value, (*prefix, key))
    return found


KEYS = paths(SHIPPED)
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
toml_scalars = st.one_of(
    st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.floats(), texts,
    st.sampled_from(["P", "PT-1H", "-P1D", "P999999999D", "3 days", "PT0S", "", "offline", "fast", "no-such-model",
                     "/nonexistent/scripts.json", "send_email", "issue_refund", "support-triage/nobody", "full"]),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.one_of(texts, st.sampled_from(
        ["max_cost_usd", "max_steps", "max_wall_clock", "people", "tools", "bounds", "maximum", "price", "provider",
         "name", "input", "output", "max", "min", "domains", "one_of", "scripts", "db", "latency_s", "values"])),
        inner, max_size=3),
    max_leaves=8,
)


@st.composite
def mutated_config(draw) -> str:
    """The shipped baton.toml with one to three keys set to other values, removed, or added."""
    data = json.loads(json.dumps(SHIPPED))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(KEYS))
        parent = data
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        how = draw(st.sampled_from(["set", "set", "drop", "add"]))
        if how == "set":
            parent[path[-1]] = draw(toml_values)
        elif how == "drop":
            parent.pop(path[-1], None)
        else:
            parent[draw(texts)] = draw(toml_values)
    return toml_document(data)


def check_load(path: Path) -> None:
    try:
        config = load(path)
    except ConfigError as err:
        message = str(err)
        assert message.startswith(f"{path}: ") and "\n" not in message and "Traceback" not in message, message
    else:
        assert isinstance(config, BatonConfig)


@pytest.fixture(autouse=True)
def no_keys(monkeypatch):
    for name in [n for n in os.environ if n.startswith(("BATON_", "OPENAI_", "ANTHROPIC_"))]:
        monkeypatch.delenv(name)


def test_the_shipped_file_with_absolute_scripts_loads(tmp_path):
    path = tmp_path / "baton.toml"
    path.write_text(toml_document(SHIPPED))
    assert isinstance(load(path), BatonConfig)


@fuzz(300)
@given(text=mutated_config())
def test_a_mutated_baton_toml_loads_or_is_refused_in_one_line(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("config") / "baton.toml"
    path.write_text(text, encoding="utf-8")
    check_load(path)


@fuzz(200)
@given(data=st.dictionaries(st.one_of(texts, st.sampled_from(sorted(SHIPPED))), toml_values, max_size=4))
def test_any_toml_document_loads_or_is_refused_in_one_line(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("config") / "baton.toml"
    path.write_text(toml_document(data), encoding="utf-8")
    check_load(path)


@fuzz(100)
@given(content=st.one_of(st.binary(max_size=80), st.sampled_from([
    b"[budgets.default\n", b"\xff\xfe[x]", b"a = 1\na = 2", b"[tiers]\nfast = [\"a\"\n", b"x = " + b"[" * 5000,
])))
def test_bytes_that_are_not_toml_are_refused_in_one_line(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("config") / "baton.toml"
    path.write_bytes(content)
    check_load(path)


@pytest.mark.parametrize("text", [
    "[budgets.default]\nmax_cost_usd = -1\n",
    '[roles.compliance]\npeople = []\n',
    '[providers.c]\nprotocol = "anthropic"\nbase_url = "http://127.0.0.1:1"\n\n'
    '[models.c]\nprovider = "c"\nname = "c"\nprice = { input = 1, output = 1 }\nstructured_output = "json_object"\n',
])
def test_python_m_worker_refuses_a_bad_file_in_one_line_and_exits_1(tmp_path, text):
    path = tmp_path / "baton.toml"
    path.write_text(text)
    env = {"PATH": "/usr/bin:/bin", "TEMPORAL_ADDRESS": "127.0.0.1:1", "OTEL_SDK_DISABLED": "true"}
    done = subprocess.run([sys.executable, "-m", "worker", "--config", str(path)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env=env)
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"worker: {path}: "), done.stderr
    assert text.split("\n")[-2].split(" = ")[0] in done.stderr  # the key at fault


@pytest.mark.parametrize(("text", "expected"), [
    ("[budgets]\nonboarding = 5\n", "budgets.onboarding: Input should be a valid dictionary"),  # was read as "no change"
    ("x = " + "[" * 2000 + "]" * 2000 + "\n", "not valid TOML: nested too deeply"),  # was a RecursionError
    ('[grants."a\\nb"]\ntools = []\n', 'grants.a\\nb: no such process'),  # was a message over two lines
    ('"\\n" = 1\n', '\\n: Extra inputs are not permitted'),
])
def test_regression_bad_files_found_by_the_properties(tmp_path, text, expected):
    path = tmp_path / "baton.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load(path)
    assert str(refused.value) == f"{path}: {str(refused.value).split(': ', 1)[1]}" and expected in str(refused.value)
    assert "\n" not in str(refused.value)


def test_without_a_baton_toml_the_worker_refuses_to_start_unless_asked_for_the_demo(tmp_path):
    """Fails closed: no file means nobody may approve, so the worker stops in one line; --demo is asked, not assumed."""
    env = {"PATH": "/usr/bin:/bin", "TEMPORAL_ADDRESS": "127.0.0.1:1", "OTEL_SDK_DISABLED": "true"}

    def worker(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "worker", *args], capture_output=True, text=True, timeout=60,
                              cwd=tmp_path, env=env)

    refused = worker()
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith("worker: baton.toml: ") and "roles.compliance" in refused.stderr, refused.stderr
    assert "--demo" in refused.stderr, refused.stderr
    keyless = worker("--demo")  # past the config: no encryption key here, so no connection is even tried
    assert keyless.returncode == 1 and keyless.stderr.count("\n") == 1, keyless.stderr
    assert keyless.stderr.startswith("worker: no encryption key: set BATON_KEYS"), keyless.stderr
    env["BATON_KEYS"] = "k:" + base64.b64encode(bytes(32)).decode()
    asked = worker("--demo")  # past the key, to the connection (no server listens there)
    assert asked.returncode == 1 and asked.stderr.startswith("worker: cannot reach Temporal"), asked.stderr


def test_baton_tools_shows_the_demos_people_only_when_asked(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "OTEL_SDK_DISABLED": "true"}
    baton = str(Path(sys.executable).parent / "baton")
    refused = subprocess.run([baton, "tools"], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "--demo" in refused.stderr, refused.stderr
    shown = subprocess.run([baton, "tools", "--demo", "--json"], capture_output=True, text=True, timeout=60,
                           cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    people = {r["role"]: r["people"] for p in json.loads(shown.stdout)["processes"] for r in p["roles"]}
    assert people == BatonConfig(roles=demo_roles()).members()


async def test_a_worker_without_an_audit_key_refuses_to_start_in_one_line(time_env, config, monkeypatch, tmp_path):
    """Runs about a person carry a keyed digest of whom (activities/subject.py): with no key there is none to key it."""
    from activities.personal import AUDIT_KEY_ENV
    from tests.conftest import running_worker
    from worker.config import ConfigError

    monkeypatch.delenv(AUDIT_KEY_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # and no local stack's .baton/audit.key here
    with pytest.raises(ConfigError, match=f"no audit key: set {AUDIT_KEY_ENV}") as refused:
        async with running_worker(time_env.client, config):
            pass
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(("text", "expected"), [
    ('[payloads]\nstore = "s3"\n', 'payloads: store = "s3" needs a [payloads.s3] table with its bucket'),
    ('[payloads]\nstore = "ftp"\n', "payloads.store: Input should be 'directory' or 's3'"),
    ('[payloads]\ninline_max_bytes = 10\n', "payloads.inline_max_bytes: Input should be greater than or equal to 256"),
    ('[payloads.s3]\nbucket = "b"\n', "payloads.s3.bucket: String should have at least 3 characters"),
])
def test_a_bad_payload_store_stops_the_worker_and_the_client_alike_in_one_line(tmp_path, text, expected):
    """Workers (the whole file) and clients (only [payloads], to find stored payloads) refuse the same table."""
    path = tmp_path / "baton.toml"
    path.write_text(text + '[roles.compliance]\npeople = ["p"]\n')
    for read in (load, payload_settings):
        with pytest.raises(ConfigError) as refused:
            read(path)
        assert str(refused.value).startswith(f"{path}: ") and expected in str(refused.value), (read, refused.value)
        assert "\n" not in str(refused.value)
