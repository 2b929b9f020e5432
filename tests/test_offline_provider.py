"""The offline provider and the model activity that fronts every provider.

The offline provider promises schema-valid answers: whatever pydantic model a
step asks for, the output it builds from that model's JSON schema must validate
against the model. `ModelActivities.call_model` prices the usage from the
catalog, names who answered, and falls over across a tier's candidates.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum, IntEnum
from typing import Literal, Optional

import pytest
from pydantic import BaseModel, EmailStr, Field, ValidationError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.llm.activity import ModelActivities
from activities.llm.catalog import Catalog, ModelSpec, Price
from activities.llm.contracts import LlmRequest
from activities.llm.conversation import Conversation, Message
from activities.llm.output_type import register
from activities.llm.offline import OfflineCannotAnswer, OfflineProvider
from activities.llm.provider import Completion, ProviderUnavailable

SPEC = ModelSpec(provider="offline", name="offline-test", price=Price(input=1.0, output=2.0))


def request_for(
    output: type[BaseModel], prompt: str = "Write the answer\nfor the applicant", **extra
) -> LlmRequest:
    return LlmRequest(
        step="answer", tier=extra.pop("tier", "fast"), prompt=prompt, output_type=register(output, f"{output.__module__}.{output.__qualname__}"), **extra
    )


def conversation_for(
    output: type[BaseModel], prompt: str = "Write the answer\nfor the applicant", system: str = ""
) -> Conversation:
    return Conversation(
        system=system,
        messages=[Message(role="user", content=prompt)],
        output_name=output.__name__,
        output_schema=output.model_json_schema(),
    )


async def offline_output(model: type[BaseModel], prompt: str = "Write the answer\nfor the applicant") -> dict:
    completion = await OfflineProvider().complete(conversation_for(model, prompt), SPEC)
    assert isinstance(completion.output, dict)
    return completion.output


# --------------------------------------------------------------------------- models


class Flat(BaseModel):
    title: str
    count: int
    ratio: float
    done: bool


class Address(BaseModel):
    street: str
    city: str = Field(min_length=2, max_length=40)
    postcode: str = Field(min_length=5, max_length=8)


class Person(BaseModel):
    name: str
    address: Address
    previous: list[Address] = Field(min_length=2)


class Company(BaseModel):
    """Three levels deep, with a nested model behind an Optional and inside a list."""

    legal_name: str
    headquarters: Person
    branches: list[Person] = Field(min_length=1, max_length=3)
    parent: Optional[Person] = None
    auditor: Person | None


class Item(BaseModel):
    sku: str = Field(min_length=3)
    quantity: int = Field(ge=1, le=10)


class Order(BaseModel):
    items: list[Item] = Field(min_length=3)
    tags: list[str] = Field(min_length=2, max_length=2)
    codes: list[int] = Field(min_length=4)
    matrix: list[list[int]] = Field(min_length=2)


class BoundedList(BaseModel):
    at_most_two: list[str] = Field(max_length=2)
    exactly_one: list[int] = Field(min_length=1, max_length=1)


class Optionals(BaseModel):
    note: Optional[str] = None
    required_but_nullable: Optional[str]
    maybe_count: int | None = Field(ge=5, le=9)
    maybe_item: Optional[Item]
    maybe_items: list[Item] | None = Field(default=None, min_length=2)


class Color(Enum):
    RED = "red"
    GREEN = "green"


class Priority(IntEnum):
    LOW = 1
    HIGH = 7


class Choices(BaseModel):
    decision: Literal["approve", "reject", "escalate"]
    constant: Literal["fixed"]
    number_choice: Literal[3, 5, 8]
    color: Color
    priority: Priority
    optional_color: Optional[Color] = None
    colors: list[Color] = Field(min_length=2)


class PositiveBounds(BaseModel):
    at_least: int = Field(ge=10)
    at_most: int = Field(le=3)
    above: int = Field(gt=1000)
    below: int = Field(lt=50)
    between: int = Field(ge=200, le=205)
    open_between: int = Field(gt=5, lt=7)
    pinned: int = Field(ge=42, le=42)
    f_at_least: float = Field(ge=10.5)
    f_at_most: float = Field(le=3.0)
    f_above: float = Field(gt=100.0)
    f_below: float = Field(lt=0.25)
    f_probability: float = Field(ge=0.0, le=1.0)
    f_open_unit: float = Field(gt=0.0, lt=1.0)
    f_narrow: float = Field(gt=0.001, lt=0.002)


class NegativeIntUpperBound(BaseModel):
    temperature_c: int = Field(le=-5)


class NegativeIntStrictUpperBound(BaseModel):
    delta: int = Field(lt=-10)


class NegativeFloatUpperBound(BaseModel):
    loss: float = Field(le=-5.0)


class NegativeFloatStrictUpperBound(BaseModel):
    change: float = Field(lt=0.0)


class NegativeRanges(BaseModel):
    """Both bounds given, both negative."""

    i: int = Field(ge=-100, le=-50)
    f: float = Field(gt=-2.0, lt=-1.0)


class Contact(BaseModel):
    email: EmailStr
    backup: Optional[EmailStr] = None
    cc: list[EmailStr] = Field(min_length=2)


class Dates(BaseModel):
    at: datetime
    on: date
    maybe_at: Optional[datetime]
    history: list[date] = Field(min_length=2)


class Strings(BaseModel):
    tiny: str = Field(max_length=3)
    short: str = Field(min_length=1, max_length=5)
    long: str = Field(min_length=120)
    window: str = Field(min_length=30, max_length=32)
    exact: str = Field(min_length=7, max_length=7)
    free: str


class WithExamples(BaseModel):
    subject: str = Field(min_length=1, max_length=200, examples=["Welcome aboard"])
    score: int = Field(ge=0, le=100, examples=[87])
    label: str = Field(examples=["first", "second"])
    body: str = Field(min_length=1, max_length=4000)


class WithDefaults(BaseModel):
    mode: str = "auto"
    retries: int = Field(default=3, ge=0, le=5)
    verbose: bool = False


class Mixed(BaseModel):
    """Something like a real step's output: everything at once."""

    customer: Contact
    verdict: Literal["clear", "review", "reject"]
    risk: float = Field(ge=0, le=1)
    reasons: list[str] = Field(min_length=1, max_length=5)
    followups: list[Dates] = Field(min_length=1)
    metadata: dict[str, int]
    summary: str = Field(min_length=10, max_length=280, examples=["All checks passed."])


SUPPORTED = [
    Flat,
    Address,
    Person,
    Company,
    Order,
    BoundedList,
    Optionals,
    Choices,
    PositiveBounds,
    NegativeIntUpperBound,
    NegativeIntStrictUpperBound,
    NegativeFloatUpperBound,
    NegativeFloatStrictUpperBound,
    NegativeRanges,
    Contact,
    Dates,
    Strings,
    WithExamples,
    WithDefaults,
    Mixed,
]


@pytest.mark.parametrize("model", SUPPORTED, ids=lambda m: m.__name__)
async def test_output_validates_against_its_model(model: type[BaseModel]) -> None:
    output = await offline_output(model)
    try:
        model.model_validate(output)
    except ValidationError as err:
        pytest.fail(f"offline output {output!r} does not validate against {model.__name__}:\n{err}")


@pytest.mark.parametrize(
    "prompt",
    ["", "   \n\n  ", "x", "A very long first line " * 40, "ünïcødé — prompt ✓\nsecond line"],
    ids=["empty", "blank-lines", "one-char", "long-line", "unicode"],
)
async def test_output_validates_whatever_the_prompt(prompt: str) -> None:
    for model in (Strings, Mixed, Contact):
        model.model_validate(await offline_output(model, prompt))


async def test_examples_are_used_first() -> None:
    output = await offline_output(WithExamples)
    assert output["subject"] == "Welcome aboard"
    assert output["score"] == 87
    assert output["label"] == "first"


async def test_lists_honour_min_length() -> None:
    output = await offline_output(Order)
    assert len(output["items"]) >= 3
    assert len(output["tags"]) == 2
    assert len(output["codes"]) >= 4
    assert len(output["matrix"]) >= 2


async def test_literal_and_enum_values_are_members() -> None:
    output = await offline_output(Choices)
    assert output["decision"] in {"approve", "reject", "escalate"}
    assert output["constant"] == "fixed"
    assert output["number_choice"] in {3, 5, 8}
    assert output["color"] in {c.value for c in Color}
    assert output["priority"] in {p.value for p in Priority}


async def test_string_lengths_respected() -> None:
    output = await offline_output(Strings)
    assert len(output["tiny"]) <= 3
    assert 1 <= len(output["short"]) <= 5
    assert len(output["long"]) >= 120
    assert 30 <= len(output["window"]) <= 32
    assert len(output["exact"]) == 7


# ------------------------------------------------- schema features beyond the brief
# The provider's docstring promises "schema-valid answers" for any output schema.
# These are common in structured-output models; they are kept separate so a failure
# here reads as "unsupported schema keyword", not as a regression of the basics.


class FixedTuple(BaseModel):
    pair: tuple[int, str]


class Patterned(BaseModel):
    country: str = Field(pattern=r"^[A-Z]{2}$", examples=["GB"])


class PatternedWithoutExamples(BaseModel):
    country: str = Field(pattern=r"^[A-Z]{2}$")


class MultipleOf(BaseModel):
    minutes: int = Field(ge=1, multiple_of=15)


class TreeNode(BaseModel):
    label: str
    child: Optional["TreeNode"]


@pytest.mark.parametrize("model", [FixedTuple, Patterned, MultipleOf, TreeNode], ids=lambda m: m.__name__)
async def test_output_validates_for_other_schema_keywords(model: type[BaseModel]) -> None:
    try:
        output = await offline_output(model)
    except RecursionError:
        pytest.fail(f"offline provider recursed without end on the schema of {model.__name__}")
    try:
        model.model_validate(output)
    except ValidationError as err:
        pytest.fail(f"offline output {output!r} does not validate against {model.__name__}:\n{err}")


async def test_a_pattern_without_examples_is_refused_by_name() -> None:
    """The stand-in cannot invent regex matches; it must say so, not answer invalidly."""
    with pytest.raises(OfflineCannotAnswer, match="'country'.*examples"):
        await offline_output(PatternedWithoutExamples)


# ------------------------------------------------------------ determinism and tokens


async def test_same_request_gives_identical_completion() -> None:
    request = conversation_for(Mixed, system="You are careful.")
    first = await OfflineProvider().complete(request, SPEC)
    second = await OfflineProvider().complete(request.model_copy(deep=True), SPEC)
    assert first.output == second.output
    assert (first.usage.input, first.usage.output) == (second.usage.input, second.usage.output)
    assert first.usage.input > 0 and first.usage.output > 0


async def test_tokens_in_grow_with_prompt_length() -> None:
    short = await OfflineProvider().complete(conversation_for(Flat, "Summarise."), SPEC)
    extra = "More context about the applicant. " * 50  # 1700 characters
    longer = await OfflineProvider().complete(conversation_for(Flat, "Summarise.\n" + extra), SPEC)
    grown = longer.usage.input - short.usage.input
    assert grown > 0
    # about four characters per token, as documented
    assert len(extra) / 4 - 2 <= grown <= len(extra) / 4 + 2


async def test_tokens_in_count_the_system_prompt_and_schema() -> None:
    bare = await OfflineProvider().complete(conversation_for(Flat, "Go."), SPEC)
    with_system = await OfflineProvider().complete(conversation_for(Flat, "Go.", system="S" * 400), SPEC)
    assert with_system.usage.input - bare.usage.input >= 99
    bigger_schema = await OfflineProvider().complete(conversation_for(Mixed, "Go."), SPEC)
    assert bigger_schema.usage.input > bare.usage.input


async def test_tokens_out_grow_with_output_size() -> None:
    small = await OfflineProvider().complete(conversation_for(Flat), SPEC)
    large = await OfflineProvider().complete(conversation_for(Strings), SPEC)
    assert large.usage.output > small.usage.output


# ------------------------------------------------------------------ the activity


class Answer(BaseModel):
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1)


# Prices chosen so the expected cost is easy to compute by hand in the test.
CATALOG = Catalog(
    models={
        "cheap": ModelSpec(provider="offline", name="cheap-v1", price=Price(input=2.0, output=10.0)),
        "dear": ModelSpec(provider="offline", name="dear-v1", price=Price(input=30.0, output=60.0)),
    },
    tiers={"fast": ["cheap"], "strong": ["dear"], "both": ["dear", "cheap"]},
)


async def test_call_model_prices_usage_from_catalog() -> None:
    acts = ModelActivities(CATALOG)
    request = request_for(Answer, tier="fast")
    result = await ActivityEnvironment().run(acts.call_model, request)

    assert result.provider == "offline"
    assert result.model == "cheap"
    assert result.tier == "fast"
    assert result.failed == []
    assert result.attempt == 1
    assert result.latency_ms >= 0
    Answer.model_validate(result.output)

    # same usage as calling the provider directly (it is deterministic)
    direct = await OfflineProvider().complete(conversation_for(Answer), CATALOG.models["cheap"])
    assert (result.tokens_in, result.tokens_out) == (direct.usage.input, direct.usage.output)
    assert result.output == direct.output

    by_hand = (result.tokens_in * 2.0 + result.tokens_out * 10.0) / 1_000_000
    assert result.cost_usd == pytest.approx(by_hand, rel=1e-12)
    assert result.cost_usd == pytest.approx(
        CATALOG.models["cheap"].price.cost(result.tokens_in, result.tokens_out)
    )
    assert result.cost_usd > 0


async def test_call_model_tier_picks_its_model_and_price() -> None:
    acts = ModelActivities(CATALOG)
    cheap = await ActivityEnvironment().run(acts.call_model, request_for(Answer, tier="fast"))
    dear = await ActivityEnvironment().run(acts.call_model, request_for(Answer, tier="strong"))
    assert dear.model == "dear"
    assert (dear.tokens_in, dear.tokens_out) == (cheap.tokens_in, cheap.tokens_out)
    assert dear.cost_usd == pytest.approx((dear.tokens_in * 30.0 + dear.tokens_out * 60.0) / 1_000_000)
    assert dear.cost_usd > cheap.cost_usd


async def test_call_model_explicit_model_overrides_tier() -> None:
    acts = ModelActivities(CATALOG)
    result = await ActivityEnvironment().run(acts.call_model, request_for(Answer, tier="fast", model="dear"))
    assert result.model == "dear"
    assert result.tier == "fast"


async def test_call_model_with_default_catalog_reports_offline_labels() -> None:
    acts = ModelActivities(Catalog())
    fast = await ActivityEnvironment().run(acts.call_model, request_for(Answer, tier="fast"))
    strong = await ActivityEnvironment().run(acts.call_model, request_for(Answer, tier="strong"))
    assert (fast.provider, fast.model) == ("offline", "offline-fast")
    assert (strong.provider, strong.model) == ("offline", "offline-strong")
    # offline-fast is priced at 0.15 / 0.60 USD per million tokens
    assert fast.cost_usd == pytest.approx((fast.tokens_in * 0.15 + fast.tokens_out * 0.60) / 1_000_000)


async def test_call_model_unknown_tier_fails_non_retryable() -> None:
    acts = ModelActivities(CATALOG)
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(acts.call_model, request_for(Answer, tier="galaxy-brain"))
    err = caught.value
    assert err.non_retryable
    assert err.type == "UnknownModel"
    assert "galaxy-brain" in err.message
    # names what is configured, so the fix is obvious
    assert "fast" in err.message and "strong" in err.message


async def test_call_model_unknown_model_label_fails_non_retryable() -> None:
    acts = ModelActivities(CATALOG)
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(acts.call_model, request_for(Answer, tier="fast", model="gpt-nope"))
    assert caught.value.non_retryable
    assert "gpt-nope" in caught.value.message


class FlakyOffline:
    """Stands in for the `offline` provider: down for some model names, the real thing for others.

    ModelSpec only accepts known provider names, and every candidate of a tier shares
    the one provider registered under its protocol name, so the outage is keyed on the
    provider's model name (`spec.name`), which is what a real provider outage per model
    looks like too.
    """

    def __init__(self, down: set[str]) -> None:
        self.down = down
        self.calls: list[str] = []
        self._real = OfflineProvider()

    async def complete(self, request: Conversation, model: ModelSpec) -> Completion:
        self.calls.append(model.name)
        if model.name in self.down:
            raise ProviderUnavailable(f"{model.name} is rate limited (429)")
        return await self._real.complete(request, model)


async def test_call_model_falls_over_to_next_candidate() -> None:
    provider = FlakyOffline(down={"dear-v1"})
    acts = ModelActivities(CATALOG, providers={"offline": provider})
    result = await ActivityEnvironment().run(acts.call_model, request_for(Answer, tier="both"))

    assert provider.calls == ["dear-v1", "cheap-v1"]
    assert result.model == "cheap"
    assert result.provider == "offline"
    assert len(result.failed) == 1
    assert result.failed[0].model == "dear"
    assert result.failed[0].provider == "offline"
    assert "rate limited" in result.failed[0].error
    # priced at the model that answered, not the one that failed
    assert result.cost_usd == pytest.approx((result.tokens_in * 2.0 + result.tokens_out * 10.0) / 1_000_000)
    Answer.model_validate(result.output)


async def test_call_model_first_candidate_answers_without_trying_others() -> None:
    provider = FlakyOffline(down=set())
    acts = ModelActivities(CATALOG, providers={"offline": provider})
    result = await ActivityEnvironment().run(acts.call_model, request_for(Answer, tier="both"))
    assert provider.calls == ["dear-v1"]
    assert result.model == "dear"
    assert result.failed == []


async def test_call_model_all_candidates_down_is_retryable_and_names_each() -> None:
    provider = FlakyOffline(down={"dear-v1", "cheap-v1"})
    acts = ModelActivities(CATALOG, providers={"offline": provider})
    with pytest.raises(ApplicationError) as caught:
        await ActivityEnvironment().run(acts.call_model, request_for(Answer, tier="both"))
    err = caught.value
    assert err.type == "AllModelsUnavailable"
    assert not err.non_retryable  # an outage may pass; Temporal's retry policy decides
    assert "both" in err.message
    assert "dear" in err.message and "cheap" in err.message
    assert provider.calls == ["dear-v1", "cheap-v1"]
