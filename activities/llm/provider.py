"""The seam every model provider implements.

A provider speaks one wire protocol. It returns the parsed JSON output and the
token usage it was billed for; pricing, fallbacks and the ledger live above it.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

from activities.llm.catalog import ModelSpec
from activities.llm.contracts import LlmRequest


class Completion(BaseModel):
    output: dict
    tokens_in: int
    tokens_out: int
    cached_tokens: int = 0


class ProviderUnavailable(Exception):
    """The provider could not answer now (outage, rate limit); the next candidate may."""


class Provider(Protocol):
    async def complete(self, request: LlmRequest, model: ModelSpec) -> Completion: ...
