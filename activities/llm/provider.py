"""The seam every model provider implements, and the two ways a call can fail.

A provider speaks one wire protocol. It returns the model's answer in neutral
form and the usage it was billed for; pricing, fallbacks, repairs and the
ledger live above it. It never retries: Temporal's retry policy owns that.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, Field

from activities.llm.catalog import ModelSpec
from activities.llm.conversation import Conversation, Message


class Usage(BaseModel):
    """Tokens as the provider reported them. `input` includes cached and cache-written tokens."""

    input: int = 0
    output: int = 0
    cached_input: int = 0
    cache_write: int = 0


class Completion(BaseModel):
    """One answer: the assistant message, its typed output if it gave one, its usage, who answered."""

    message: Message
    output: dict | None = None
    usage: Usage
    model: str | None = Field(default=None, description="the model the response says answered, if it says")


def reported_model(data: dict) -> str | None:
    """The model a response says answered (`model` in both protocols' bodies), when it says one."""
    model = data.get("model")
    return model[:200] if isinstance(model, str) and model else None  # untrusted: bounded


class ProviderUnavailable(Exception):
    """Worth trying again (429, 5xx, reset, timeout, garbled body); the next candidate may answer."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


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
