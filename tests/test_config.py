"""worker.config.load on real files, Budget.tightened, and the client's input checks.

A bad `baton.toml` must stop the worker with one ConfigError line naming the
file and the key at fault; bad run input must be refused with an InputError
naming the field, before anything starts.
"""

from __future__ import annotations

import json
import re
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from activities.policy import CAPS, Budget, BudgetOverride
from activities.tools.grants import Grant
from client.sdk import InputError, read_input, validate_input
from worker.config import DEFAULT_BUDGET, BatonConfig, ConfigError, demo_roles, load, shipped_grants

ROOT = Path(__file__).resolve().parent.parent
REPO_CONFIG = ROOT / "baton.toml"
EXAMPLES = ROOT / "examples" / "onboarding"

GOOD_MODEL = """
[models.house]
provider = "offline"
name = "house-v1"
price = { input = 1.0, output = 4.0 }
"""


@pytest.fixture(autouse=True)
def no_env_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATON_CONFIG", raising=False)


ALL_ROLES = (
    '[roles.compliance]\npeople = ["ana"]\n\n[roles.compliance-lead]\npeople = ["kim"]\n'
    '[roles.support-lead]\npeople = ["sol"]\n\n[roles.sales-manager]\npeople = ["max"]\n'
)


def write(tmp_path: Path, text: str, name: str = "baton.toml") -> Path:
    """`text` as a baton.toml, with a [roles] table for every role unless it sets its own (none is refused)."""
    path = tmp_path / name
    path.write_text(text if "[roles" in text else text + "\n" + ALL_ROLES)
    return path


# ------------------------------------------------------------------ loading


def test_missing_explicit_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load(missing)
    assert str(missing) in str(caught.value)


def test_a_directory_or_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="latin.toml"):
        load(latin)


def test_missing_file_named_by_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "from-env.toml"
    monkeypatch.setenv("BATON_CONFIG", str(missing))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="from-env.toml"):
        load()


def test_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, GOOD_MODEL + '[tiers]\nfast = ["house"]\n', "custom.toml")
    monkeypatch.setenv("BATON_CONFIG", str(path))
    monkeypatch.chdir(tmp_path)
    config = load()
    assert set(config.models) == {"house"}
    assert config.tiers == {"fast": ["house"]}


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[models.x\nprovider = offline\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    message = str(caught.value)
    assert str(path) in message
    assert "TOML" in message


def test_unknown_provider_names_the_key_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD_MODEL + """
[models.cloud]
provider = "nimbus"
name = "gpt-x"
price = { input = 1.0, output = 2.0 }
""",
    )
    with pytest.raises(ConfigError) as caught:
        load(path)
    message = str(caught.value)
    assert str(path) in message
    assert "models.cloud" in message
    assert "nimbus" in message
    assert "\n" not in message  # one line


def test_bad_price_names_the_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, '[models.cheap]\nprovider = "offline"\nname = "c"\nprice = { input = -1, output = 2 }\n')
    with pytest.raises(ConfigError, match=r"models\.cheap\.price\.input"):
        load(path)


def test_bad_budget_names_the_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, "[budgets.onboarding]\nmax_steps = 0\n")
    with pytest.raises(ConfigError, match=r"budgets\.onboarding\.max_steps"):
        load(path)


def test_tier_naming_unknown_model(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_MODEL + '[tiers]\nfast = ["house", "ghost"]\n')
    with pytest.raises(ConfigError) as caught:
        load(path)
    message = str(caught.value)
    assert str(path) in message
    assert "tiers" in message
    assert "fast" in message
    assert "ghost" in message


def test_tier_naming_a_default_model_that_was_replaced(tmp_path: Path) -> None:
    """Declaring [models] replaces the built-in ones, so the default tiers no longer resolve."""
    path = write(tmp_path, GOOD_MODEL)
    with pytest.raises(ConfigError, match="offline-fast|offline-strong"):
        load(path)


def test_tier_with_no_candidates(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_MODEL + '[tiers]\nfast = ["house"]\nstrong = []\n')
    with pytest.raises(ConfigError) as caught:
        load(path)
    message = str(caught.value)
    assert "strong" in message
    assert "no candidate" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[systems]\ndb = "x.db"\n\n[modles.typo]\nprovider = "offline"\n')
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert "modles" in str(caught.value)


def test_unknown_key_in_systems(tmp_path: Path) -> None:
    path = write(tmp_path, '[systems]\ndatabase = "x.db"\n')
    with pytest.raises(ConfigError, match=r"systems\.database"):
        load(path)


def test_repo_baton_toml_loads() -> None:
    config = load(REPO_CONFIG)
    raw = tomllib.loads(REPO_CONFIG.read_text())

    assert set(config.models) == set(raw["models"])
    assert config.tiers == raw["tiers"]
    for label, model in raw["models"].items():
        spec = config.models[label]
        assert spec.provider == model["provider"]
        assert spec.name == model["name"]
        assert spec.price.input == model["price"]["input"]
        assert spec.price.output == model["price"]["output"]
    for name, budget in raw["budgets"].items():
        assert config.budgets[name].max_cost_usd == budget["max_cost_usd"]
        assert config.budgets[name].max_steps == budget["max_steps"]
    assert config.systems.db == Path(raw["systems"]["db"])
    assert config.systems.seed == Path(raw["systems"]["seed"])

    catalog = config.catalog()
    for tier in config.tiers:
        assert catalog.candidates(tier)
    assert config.default_budget() == config.budgets["default"]


def test_no_file_with_demo_gives_the_built_ins_and_the_demos_people_and_grants(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert not (tmp_path / "baton.toml").exists()
    config = load(demo=True)
    assert config == BatonConfig(roles=demo_roles(), grants=shipped_grants())
    # the documented built-ins: two offline models, fast/strong tiers, every kill switch set
    assert config.tiers == {"fast": ["offline-fast"], "strong": ["offline-strong"]}
    assert {m.provider for m in config.models.values()} == {"offline"}
    assert config.models["offline-fast"].price.input == 0.15
    assert config.models["offline-strong"].price.output == 15.00
    assert config.default_budget() == DEFAULT_BUDGET
    assert all(getattr(DEFAULT_BUDGET, cap) is not None for cap in CAPS)
    assert config.systems.db == Path(".baton/systems.db")


def test_cwd_baton_toml_is_picked_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "[budgets.default]\nmax_cost_usd = 0.01\nmax_steps = 3\n")
    monkeypatch.chdir(tmp_path)
    config = load()
    assert config.default_budget() == DEFAULT_BUDGET.model_copy(update={"max_cost_usd": 0.01, "max_steps": 3})


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, '[systems]\ndb = "elsewhere.db"\n')
    config = load(path)
    assert config.systems.db == Path("elsewhere.db")
    assert config.tiers == {"fast": ["offline-fast"], "strong": ["offline-strong"]}


def test_default_budget_when_file_has_none(tmp_path: Path) -> None:
    path = write(tmp_path, "[budgets.onboarding]\nmax_cost_usd = 0.02\nmax_steps = 4\n")
    config = load(path)
    assert config.default_budget() == DEFAULT_BUDGET
    assert config.budgets["onboarding"] == DEFAULT_BUDGET.model_copy(update={"max_cost_usd": 0.02, "max_steps": 4})


def test_a_process_budget_inherits_every_cap_it_does_not_name(tmp_path: Path) -> None:
    path = write(tmp_path, (
        '[budgets.default]\nmax_llm_calls = 7\nmax_wall_clock = "PT2H"\n'
        '[budgets.onboarding]\nmax_tool_calls = 3\n[budgets.onboarding.maximum]\nmax_cost_usd = 1.0\n'
    ))
    onboarding = load(path).budgets["onboarding"]
    assert (onboarding.max_llm_calls, onboarding.max_wall_clock, onboarding.max_tool_calls) == (7, timedelta(hours=2), 3)
    assert onboarding.max_cost_usd == DEFAULT_BUDGET.max_cost_usd
    assert onboarding.maximum == BudgetOverride(max_cost_usd=1.0)
    assert load(path).default_budget().maximum is None


@pytest.mark.parametrize("body,where", [
    ("[budgets.default]\nmax_stepz = 3\n", "budgets.default.max_stepz"),
    ('[budgets.onboarding]\nmax_wall_clock = "soon"\n', "budgets.onboarding.max_wall_clock"),
    ("[budgets.onboarding]\nmax_llm_calls = -1\n", "budgets.onboarding.max_llm_calls"),
    ("[budgets.onboarding.maximum]\nmax_steps = 0\n", "budgets.onboarding.maximum.max_steps"),
])
def test_a_bad_budget_names_the_key(tmp_path: Path, body: str, where: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(where)):
        load(write(tmp_path, body))


def test_the_shipped_budgets_set_every_cap() -> None:
    for name, budget in load(ROOT / "baton.toml").budgets.items():
        assert all(getattr(budget, cap) is not None for cap in CAPS), name


# --------------------------------------------------------------- budgets


BASE = DEFAULT_BUDGET


def test_tightened_none_keeps_budget() -> None:
    assert BASE.tightened(None) == (BASE, [])


def test_tightened_lowers_every_cap() -> None:
    lower = dict(max_cost_usd=0.10, max_steps=5, max_llm_calls=2, max_tool_calls=1,
                 max_wall_clock=timedelta(minutes=5), max_approval_idle=timedelta(minutes=1))
    assert BASE.tightened(BudgetOverride(**lower)) == (BASE.model_copy(update=lower), [])


def test_tightened_cannot_raise_and_says_so() -> None:
    budget, clamped = BASE.tightened(BudgetOverride(max_cost_usd=99.0, max_steps=1000, max_wall_clock="P30D"))
    assert budget == BASE
    assert [c.split(":")[0] for c in clamped] == ["max_cost_usd", "max_steps", "max_wall_clock"]
    assert "asked 99.0, allowed up to 0.5" in clamped[0]


def test_a_policy_maximum_lets_a_run_ask_for_more_up_to_it() -> None:
    base = BASE.model_copy(update={"maximum": BudgetOverride(max_cost_usd=2.0, max_llm_calls=40)})
    budget, clamped = base.tightened(BudgetOverride(max_cost_usd=1.5, max_llm_calls=100, max_steps=1000))
    assert (budget.max_cost_usd, budget.max_llm_calls, budget.max_steps) == (1.5, 40, BASE.max_steps)
    assert [c.split(":")[0] for c in clamped] == ["max_steps", "max_llm_calls"]


def test_an_unset_cap_is_tightened_from_unlimited() -> None:
    legacy = Budget(max_cost_usd=0.50, max_steps=25)  # a run recorded before the newer caps
    assert legacy.tightened(BudgetOverride(max_tool_calls=3))[0].max_tool_calls == 3
    assert legacy.tightened(None)[0].max_wall_clock is None


def test_tightened_does_not_change_the_original() -> None:
    base = BASE.model_copy()
    base.tightened(BudgetOverride(max_cost_usd=0.01, max_steps=1))
    assert base == BASE


@pytest.mark.parametrize("field", [
    {"max_cost_usd": 0}, {"max_cost_usd": -1}, {"max_steps": 0}, {"max_steps": -3},
    {"max_llm_calls": 0}, {"max_tool_calls": -1}, {"max_wall_clock": 0}, {"max_approval_idle": "-PT1M"},
    {"max_stepz": 3},
])
def test_override_must_be_positive_and_known(field: dict) -> None:
    # zero or negative would otherwise be read as "no override" or an instant stop; a typo is not ignored
    with pytest.raises(ValueError):
        BudgetOverride(**field)


# ------------------------------------------------------------- run input


def test_read_input_reads_an_object(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text(json.dumps({"applicant_id": "A-1001", "n": 1}))
    assert read_input(path) == {"applicant_id": "A-1001", "n": 1}


def test_read_input_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(InputError) as caught:
        read_input(missing)
    assert str(missing) in str(caught.value)
    assert "cannot read" in str(caught.value)


def test_read_input_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        read_input(tmp_path)


def test_read_input_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "applicant_id": "A-1001",\n  "name": "Ada" "Lovelace"\n}\n')
    with pytest.raises(InputError) as caught:
        read_input(path)
    message = str(caught.value)
    assert str(path) in message
    assert "not valid JSON" in message
    assert "line 3" in message  # points at where it broke


@pytest.mark.parametrize(("text", "kind"), [("[1, 2]", "list"), ('"hello"', "str"), ("42", "int"), ("null", "NoneType")])
def test_read_input_not_an_object(tmp_path: Path, text: str, kind: str) -> None:
    path = tmp_path / "wrong.json"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        read_input(path)
    assert "JSON object" in str(caught.value)
    assert kind in str(caught.value)


def test_input_error_is_a_value_error() -> None:
    assert issubclass(InputError, ValueError)


def valid_applicant() -> dict:
    return json.loads((EXAMPLES / "clear.json").read_text())


def test_validate_input_accepts_the_example() -> None:
    value = validate_input("onboarding", valid_applicant())
    assert value.applicant_id == "A-1001"
    assert str(value.email) == "ada@example.com"


def test_validate_input_missing_field() -> None:
    data = valid_applicant()
    del data["document_number"]
    with pytest.raises(InputError) as caught:
        validate_input("onboarding", data)
    message = str(caught.value)
    assert "'document_number'" in message
    assert "onboarding" in message
    assert "more" not in message  # only one thing wrong


def test_validate_input_bad_email_example_file() -> None:
    data = read_input(EXAMPLES / "invalid-email.json")
    with pytest.raises(InputError) as caught:
        validate_input("onboarding", data)
    assert "'email'" in str(caught.value)


def test_validate_input_empty_string_field() -> None:
    data = valid_applicant() | {"applicant_id": ""}
    with pytest.raises(InputError, match="'applicant_id'"):
        validate_input("onboarding", data)


def test_validate_input_nested_field_is_dotted() -> None:
    data = valid_applicant() | {"budget": {"max_steps": 0}}
    with pytest.raises(InputError, match=r"'budget\.max_steps'"):
        validate_input("onboarding", data)


def test_validate_input_counts_further_errors() -> None:
    with pytest.raises(InputError) as caught:
        validate_input("onboarding", {"applicant_id": "A-1"})
    assert "(and 2 more)" in str(caught.value)


def test_validate_input_unknown_process() -> None:
    with pytest.raises(InputError) as caught:
        validate_input("payroll", valid_applicant())
    assert "payroll" in str(caught.value)
    assert "onboarding" in str(caught.value)


# ------------------------------------------------------------------ providers

OPENAI_MODEL = """
[models.mini]
provider = "openai"
name = "gpt-4o-mini"
price = { input = 0.15, output = 0.60, cached_input = 0.075 }

[tiers]
fast = ["mini"]
"""


def test_a_missing_key_env_var_stops_the_worker_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, OPENAI_MODEL))
    message = str(caught.value)
    assert "providers.openai.api_key_env" in message and "OPENAI_API_KEY" in message
    assert "\n" not in message


def test_the_built_in_openai_provider_needs_only_its_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    config = load(write(tmp_path, OPENAI_MODEL))
    provider = config.catalog().providers["openai"]
    assert (provider.protocol, provider.base_url) == ("openai", "https://api.openai.com/v1")
    assert config.models["mini"].price.cached_input == 0.075
    assert "sk-secret-value" not in repr(config)  # the config holds the variable's name, not the key


def test_a_key_env_var_of_an_unused_provider_is_not_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    load(write(tmp_path, GOOD_MODEL + '[tiers]\nfast = ["house"]\n'))


def test_a_provider_without_a_base_url(tmp_path: Path) -> None:
    text = '[providers.vllm]\nprotocol = "openai"\n\n' + GOOD_MODEL.replace('"offline"', '"vllm"')
    with pytest.raises(ConfigError, match=r"providers\.vllm\.base_url"):
        load(write(tmp_path, text + '[tiers]\nfast = ["house"]\n'))


def test_an_unknown_protocol_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, '[providers.x]\nprotocol = "grpc"\nbase_url = "http://x"\n'))
    assert "providers.x.protocol" in str(caught.value) and "openai" in str(caught.value)


def test_a_model_without_a_price(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"models\.cheap\.price"):
        load(write(tmp_path, '[models.cheap]\nprovider = "offline"\nname = "c"\n'))


LOCAL_MODEL = """
[providers.local]
protocol = "{protocol}"
base_url = "http://localhost:8000/v1"

[models.m]
provider = "local"
name = "some-model"
price = {{ input = 0.0, output = 0.0 }}
{mode}
[tiers]
fast = ["m"]
"""


@pytest.mark.parametrize(("protocol", "mode", "used"), [
    ("openai", None, "json_schema"), ("anthropic", None, "tool"),
    ("openai", "json_schema", "json_schema"), ("openai", "tool", "tool"), ("openai", "json_object", "json_object"),
    ("openai", "prompt", "prompt"), ("anthropic", "json_schema", "json_schema"), ("anthropic", "prompt", "prompt"),
])
def test_each_model_has_a_structured_output_mode_with_a_default_per_protocol(
    tmp_path: Path, protocol: str, mode: str | None, used: str
) -> None:
    line = f'structured_output = "{mode}"\n' if mode else ""
    config = load(write(tmp_path, LOCAL_MODEL.format(protocol=protocol, mode=line)))
    assert config.models["m"].structured_output == mode
    assert config.models["m"].output_mode(protocol) == used


@pytest.mark.parametrize(("protocol", "mode", "expected"), [
    ("openai", "json", "models.m.structured_output: Input should be 'json_schema', 'tool', 'json_object' or 'prompt'"),
    ("anthropic", "json_object", "models.m.structured_output: 'json_object' is not available on protocol "
                                 "'anthropic' (choose tool, json_schema, prompt)"),
])
def test_a_bad_structured_output_mode_is_refused_in_one_line(
    tmp_path: Path, protocol: str, mode: str, expected: str
) -> None:
    path = write(tmp_path, LOCAL_MODEL.format(protocol=protocol, mode=f'structured_output = "{mode}"\n'))
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value).startswith(f"{path}: {expected}")
    assert "\n" not in str(caught.value)


def test_http_and_llm_settings(tmp_path: Path) -> None:
    config = load(write(tmp_path, "[http]\ntimeout_s = 20\nmax_connections = 5\n\n[llm]\nrepair_turns = 1\n"))
    assert (config.http.timeout_s, config.http.max_connections, config.llm.repair_turns) == (20, 5, 1)
    # a model step may take every candidate and every repair turn, each up to the request timeout
    assert config.llm_timeout_s() >= 2 * (20 + config.http.connect_timeout_s)
    with pytest.raises(ConfigError, match=r"llm\.repair_turn"):
        load(write(tmp_path, "[llm]\nrepair_turn = 1\n"))


def readme_configs() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Models and providers", 1)[1].split("\n## ", 1)[0]
    return section.split("```toml\n")[1:]


@pytest.mark.parametrize("index", range(5))
def test_the_readme_examples_load(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = readme_configs()
    assert len(blocks) == 5
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "VLLM_API_KEY", "AZURE_OPENAI_API_KEY"):
        monkeypatch.setenv(var, "k")
    config = load(write(tmp_path, blocks[index].split("```", 1)[0]))
    catalog = config.catalog()
    for tier in config.tiers:
        assert catalog.candidates(tier)
    assert {"fast", "strong"} <= set(config.tiers)


# ------------------------------------------------------------------ roles


def test_roles_name_their_people(tmp_path: Path) -> None:
    config = load(write(tmp_path, ALL_ROLES))
    assert config.members() == {"compliance": ["ana"], "compliance-lead": ["kim"], "support-lead": ["sol"], "sales-manager": ["max"]}


def test_a_role_a_process_asks_must_be_defined(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, '[roles.compliance]\npeople = ["ana"]\n'))
    assert "roles.compliance-lead" in str(caught.value) and "onboarding" in str(caught.value)


def test_without_a_file_nobody_may_approve_and_the_worker_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert BatonConfig().roles == {} and BatonConfig().grants == {}  # nothing granted, no approvers
    with pytest.raises(ConfigError) as caught:
        load()
    message = str(caught.value)
    assert message.startswith("baton.toml: ") and "\n" not in message, message
    assert "roles.compliance" in message and "--demo" in message, message


def test_a_file_without_roles_is_refused_pointing_at_demo(tmp_path: Path) -> None:
    path = tmp_path / "baton.toml"
    path.write_text(GOOD_MODEL + '[tiers]\nfast = ["house"]\nstrong = ["house"]\n')
    with pytest.raises(ConfigError) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: roles.") and "--demo" in message and "\n" not in message, message


def test_a_file_without_grants_grants_nothing(tmp_path: Path) -> None:
    assert load(write(tmp_path, "")).grants == {}
    assert load(write(tmp_path, '[grants.onboarding]\ntools = ["verify_identity"]\n')).grants == {
        "onboarding": Grant(tools=["verify_identity"]),
    }


def test_demo_fills_in_only_what_the_file_leaves_out(tmp_path: Path) -> None:
    config = load(write(tmp_path, ""), demo=True)
    assert config.members() == {"compliance": ["ana"], "compliance-lead": ["kim"], "support-lead": ["sol"],
                                "sales-manager": ["max"]}  # the file's people, not the demo's
    assert config.grants == shipped_grants()
    granted = load(write(tmp_path, '[grants.onboarding]\ntools = ["verify_identity"]\n'), demo=True)
    assert granted.grants == {"onboarding": Grant(tools=["verify_identity"])}


def test_a_role_without_people_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"roles\.compliance\.people"):
        load(write(tmp_path, "[roles.compliance]\npeople = []\n"))


# ------------------------------------------------------------------ secrets stay out of the file

KEYED_PROVIDER = """
[providers.p]
protocol = "openai"
base_url = "{url}"
api_key_env = "P_KEY"
{extra}
[models.m]
provider = "p"
name = "m"
price = {{ input = 1, output = 1 }}

[tiers]
fast = ["m"]
strong = ["m"]
"""


def keyed(url: str = "https://llm.example/v1", extra: str = "") -> str:
    return KEYED_PROVIDER.format(url=url, extra=extra)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ('headers = { Authorization = "Bearer sk-1" }', "providers.p.headers.Authorization: "),
        ('headers = { "X-API-Key" = "sk-1" }', "providers.p.headers.X-API-Key: "),
        ('headers = { "api_key" = "sk-1" }', "providers.p.headers.api_key: "),
        ('headers = { "X-Auth-Token" = "t" }', "providers.p.headers.X-Auth-Token: "),
        ('headers = { "Cookie" = "session=1" }', "providers.p.headers.Cookie: "),
        ('query = { key = "AIza-1" }', "providers.p.query.key: "),
        ('query = { access_token = "t" }', "providers.p.query.access_token: "),
        ('query = { client_secret = "s" }', "providers.p.query.client_secret: "),
        ('query = { Password = "p" }', "providers.p.query.Password: "),
        ('query = { sig = "s" }', "providers.p.query.sig: "),
    ],
)
def test_a_credential_in_headers_or_query_is_refused_pointing_at_api_key_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str, named: str
) -> None:
    monkeypatch.setenv("P_KEY", "sk-from-env")
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, keyed(extra=extra)))
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'baton.toml'}: {named}") and "api_key_env" in message, message
    assert "\n" not in message and "sk-1" not in message


def test_headers_and_query_that_carry_no_credential_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P_KEY", "sk-from-env")
    extra = 'headers = { "OpenAI-Organization" = "org-1", "HTTP-Referer" = "https://a.example" }\n' \
            'query = { api-version = "2024-10-21" }\napi_key_header = "api-key"'
    provider = load(write(tmp_path, keyed(extra=extra))).catalog().providers["p"]
    assert provider.query == {"api-version": "2024-10-21"} and provider.api_key_header == "api-key"


@pytest.mark.parametrize(
    "url", ["http://llm.example/v1", "http://10.0.0.5:8000/v1", "HTTP://LLM.EXAMPLE", "http://localhost.evil.example/v1"]
)
def test_a_key_over_plain_http_to_another_host_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("P_KEY", "sk-from-env")
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, keyed(url)))
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'baton.toml'}: providers.p.base_url: "), message
    assert "https" in message and "\n" not in message


@pytest.mark.parametrize(
    "url", ["http://localhost:8000/v1", "http://127.0.0.1:1", "http://127.8.9.10/v1", "http://[::1]:8000/v1",
            "https://llm.example/v1"]
)
def test_a_key_over_loopback_http_or_https_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("P_KEY", "sk-from-env")
    assert load(write(tmp_path, keyed(url))).catalog().providers["p"].base_url == url


def test_plain_http_without_a_key_loads(tmp_path: Path) -> None:
    text = keyed("http://llm.example/v1").replace('api_key_env = "P_KEY"\n', "")
    assert load(write(tmp_path, text)).catalog().providers["p"].api_key_env is None
