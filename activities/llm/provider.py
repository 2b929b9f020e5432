"""The seam every model provider implements, and the two ways a call can fail.

A provider speaks one wire protocol. It returns the model's answer in neutral
form and the usage it was billed for; pricing, fallbacks, repairs and the
ledger live above it. It never retries: Temporal's retry policy owns that.
"""

from __future__ import annotations

from typing import Annotated, Protocol

from pydantic import BaseModel, Field, StrictInt, TypeAdapter, ValidationError, model_validator

from activities.llm.catalog import ModelSpec
from activities.llm.conversation import Conversation, Message


# The most tokens one request can be billed for on either side: the largest context window on
# offer (10M tokens) and then some. A count past it is not usage but a lie or a bug, and would
# let one answer bill a run out of its budget (or, negative, into unlimited budget).
MAX_TOKENS = 16_000_000
Count = Annotated[StrictInt, Field(ge=0, le=MAX_TOKENS)]
COUNTS = TypeAdapter(dict[str, Count])


class Usage(BaseModel):
    """Tokens as the provider reported them. `input` includes cached and cache-written tokens.

    The provider is untrusted: only whole, non-negative counts within MAX_TOKENS
    are usage (booleans, floats, NaN, strings and negatives are not).
    """

    input: Count = 0
    output: Count = 0
    cached_input: Count = 0
    cache_write: Count = 0

    @model_validator(mode="after")
    def _parts_within_input(self) -> Usage:
        if self.cached_input + self.cache_write > self.input:
            raise ValueError(f"cached ({self.cached_input}) and cache-written ({self.cache_write}) tokens "
                             f"exceed the input ({self.input})")
        return self


def read_usage(
    input: object, output: object, cached_input: object = 0, cache_write: object = 0, *, input_is_fresh: bool = False,
) -> tuple[Usage | None, str]:
    """The usage a response reported, or None and why it is none (the call is then billed its worst case).

    `input_is_fresh`: the reported input excludes cache reads and writes (Anthropic's `input_tokens`).
    """
    counts = {"input": input, "output": output, "cached_input": cached_input, "cache_write": cache_write}
    try:
        if input_is_fresh:
            counts = COUNTS.validate_python(counts)
            counts["input"] += counts["cached_input"] + counts["cache_write"]
        return Usage.model_validate(counts), ""
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(map(str, first["loc"])) or "usage"
        return None, f"{where}: {first['msg']} (reported {str(first.get('input'))[:40]})"


class Completion(BaseModel):
    """One answer: the assistant message, its typed output if it gave one, its usage, who answered."""

    message: Message
    output: dict | None = None
    usage: Usage | None = Field(description="what the call was billed for; None: unknown, see `unknown_usage`")
    unknown_usage: str = Field(default="", description="why the response reported no valid usage")
    model: str | None = Field(default=None, description="the model the response says answered, if it says")


def reported_model(data: dict) -> str | None:
    """The model a response says answered (`model` in both protocols' bodies), when it says one."""
    model = data.get("model")
    return model[:200] if isinstance(model, str) and model else None  # untrusted: bounded


class ProviderUnavailable(Exception):
    """Worth trying again (429, 5xx, reset, timeout, garbled body); the next candidate may answer."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None, billable: bool = False,
    ):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.billable = billable  # the request reached the model, which may bill it, but what it cost is unknown


class ProviderRejected(Exception):
    """The request itself is wrong (bad key, unknown model, too long): retrying cannot help.

    `malformed`: the server refused the request's shape (400/422, not its
    length), as servers do for a structured-output mode they lack.
    """

    def __init__(self, message: str, *, status: int | None = None, malformed: bool = False):
        super().__init__(message)
        self.status = status
        self.malformed = malformed


class Provider(Protocol):
    async def complete(self, conversation: Conversation, model: ModelSpec) -> Completion: ...
