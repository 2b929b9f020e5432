"""Which providers and models exist, what they cost, and which ones serve each tier.

This is the `[providers]` / `[models]` / `[tiers]` part of `baton.toml`. It is
read by the worker only; a workflow sees tier names and model labels, never
keys, URLs or prices.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

Protocol = Literal["openai", "anthropic", "offline"]
StructuredOutput = Literal["json_schema", "tool", "json_object", "prompt"]

# How each protocol can ask for a typed answer, the default first and the rest
# from the most to the least held to the schema. `offline` answers schema-valid
# output whatever it is asked.
OUTPUT_MODES: dict[str, tuple[StructuredOutput, ...]] = {
    "openai": ("json_schema", "tool", "json_object", "prompt"),
    "anthropic": ("tool", "json_schema", "prompt"),
    "offline": ("json_schema", "tool", "json_object", "prompt"),
}


class ProviderSpec(BaseModel):
    """An endpoint speaking one protocol: where it is and which env var holds its key."""

    model_config = ConfigDict(extra="forbid")

    protocol: Protocol
    base_url: str = ""
    api_key_env: str | None = Field(default=None, description="env var holding the key; never the key")
    api_key_header: str | None = Field(
        default=None, description="send the raw key in this header (Azure: api-key) instead of the default"
    )
    headers: dict[str, str] = {}
    query: dict[str, str] = Field(default={}, description="added to every URL (Azure: api-version)")
    anthropic_version: str = "2023-06-01"
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    strict: bool = Field(default=True, description="OpenAI protocol: strict JSON-schema output")

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def in_the_clear(self) -> str | None:
        """The host this provider reaches over plain http on another machine, or None (https, loopback, offline)."""
        try:
            url = urlsplit(self.base_url)
            host = url.hostname
        except ValueError:
            return None  # refused as no URL by `unsafe`
        return host if url.scheme == "http" and not _loopback(host) else None

    def unsafe(self, name: str) -> str | None:
        """Why this provider would leak a secret (one in the file, or a key sent in the clear), or None.

        baton.toml is read by people and kept in repositories, and httpx puts
        query strings in its request log: a key belongs in the environment
        variable `api_key_env` names, sent in a header. A key sent over plain
        http to another machine can be read on the way; loopback stays allowed
        for local model servers.
        """
        for part, names in (("headers", self.headers), ("query", self.query)):
            for key in names:
                if CREDENTIAL_NAME.search(re.sub(r"[^a-z0-9]", "", key.lower())) or key.lower() in CREDENTIAL_EXACT:
                    return (
                        f"providers.{name}.{part}.{key}: looks like a credential, which baton.toml must not hold; "
                        "put it in an environment variable named by api_key_env (api_key_header picks the header)"
                    )
        try:
            url = urlsplit(self.base_url)
            host = url.hostname
        except ValueError as err:
            return f"providers.{name}.base_url: not a URL: {err}"
        if self.api_key_env and url.scheme == "http" and not _loopback(host):
            return (
                f"providers.{name}.base_url: plain http to {host} would send the key in {self.api_key_env} "
                "in the clear; use https (plain http is for localhost only)"
            )
        return None


# Header and query names that carry a credential, compared lower-case without separators.
CREDENTIAL_NAME = re.compile(r"auth|key|token|secret|passw|pwd|credential|cookie|signature|session")
CREDENTIAL_EXACT = {"sig", "code"}  # Azure SAS and Functions keys travel in `?sig=` and `?code=`


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


BUILT_IN_PROVIDERS = {
    "offline": ProviderSpec(protocol="offline"),
    "openai": ProviderSpec(
        protocol="openai", base_url="https://api.openai.com/v1", api_key_env="OPENAI_API_KEY"
    ),
    "anthropic": ProviderSpec(
        protocol="anthropic", base_url="https://api.anthropic.com", api_key_env="ANTHROPIC_API_KEY"
    ),
}


class Price(BaseModel):
    """USD per million tokens. Cached input has its own rate; unset, it is billed as input."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)

    def cost(self, tokens_in: int, tokens_out: int, cached: int = 0, cache_write: int = 0) -> float:
        """`tokens_in` counts every input token, cached and cache-written ones included."""
        cached_rate = self.input if self.cached_input is None else self.cached_input
        write_rate = self.input if self.cache_write is None else self.cache_write
        fresh = max(tokens_in - cached - cache_write, 0)
        return (
            fresh * self.input + cached * cached_rate + cache_write * write_rate + tokens_out * self.output
        ) / 1_000_000

    def worst_case(self, tokens_in: int, max_tokens_out: int) -> float:
        """The most a call can cost: every input token fresh, every output token used."""
        return (tokens_in * max(self.input, self.cache_write or 0) + max_tokens_out * self.output) / 1_000_000


class ModelSpec(BaseModel):
    """One callable model: which provider serves it, the provider's model name, its price.

    `personal_data` is off unless the file turns it on: a prompt a process marks
    as carrying personal data is sent only to models that say they may receive it
    (the offline stand-in, a model on this machine, a provider the organisation
    has an agreement with).
    """

    model_config = ConfigDict(extra="forbid")

    provider: str
    name: str
    price: Price
    structured_output: StructuredOutput | None = Field(
        default=None,
        description="how a typed answer is asked for: json_schema (native), tool (a forced tool call), "
        "json_object (JSON mode, the schema in the prompt) or prompt (the schema in the prompt only); "
        "unset, the protocol's default: json_schema for openai, tool for anthropic",
    )
    personal_data: StrictBool = Field(
        default=False, description="prompts carrying personal data may be sent to this model (never over plain http)"
    )

    def output_mode(self, protocol: str) -> StructuredOutput:
        return self.structured_output or OUTPUT_MODES[protocol][0]

    def other_modes(self, protocol: str) -> list[StructuredOutput]:
        """The modes to try when a server refuses this one, in the protocol's order."""
        return [m for m in OUTPUT_MODES[protocol] if m != self.output_mode(protocol)]


def _offline(name: str, price_in: float, price_out: float) -> ModelSpec:
    """A built-in offline model: it sends nothing anywhere, so it may receive personal data."""
    return ModelSpec(provider="offline", name=name, price=Price(input=price_in, output=price_out), personal_data=True)


class Catalog(BaseModel):
    """Providers, models by label, and the ordered candidates of each tier."""

    providers: dict[str, ProviderSpec] = Field(default_factory=dict)
    models: dict[str, ModelSpec] = Field(
        default_factory=lambda: {
            "offline-fast": _offline("offline-fast", 0.15, 0.60),
            "offline-strong": _offline("offline-strong", 3.00, 15.00),
        }
    )
    tiers: dict[str, list[str]] = Field(
        default_factory=lambda: {"fast": ["offline-fast"], "strong": ["offline-strong"]}
    )

    @model_validator(mode="after")
    def _resolves(self) -> Self:
        self.providers = {**BUILT_IN_PROVIDERS, **self.providers}
        for label, spec in self.models.items():
            if spec.provider not in self.providers:
                raise ValueError(
                    f"models.{label}.provider: unknown provider {spec.provider!r} "
                    f"(known: {', '.join(sorted(self.providers))}; add a [providers.{spec.provider}] table)"
                )
            protocol = self.providers[spec.provider].protocol
            if spec.output_mode(protocol) not in OUTPUT_MODES[protocol]:
                raise ValueError(
                    f"models.{label}.structured_output: {spec.structured_output!r} is not available on protocol "
                    f"{protocol!r} (choose {', '.join(OUTPUT_MODES[protocol])})"
                )
            if spec.personal_data and (host := self.providers[spec.provider].in_the_clear()):
                raise ValueError(
                    f"models.{label}.personal_data: provider {spec.provider!r} speaks plain http to {host}, "
                    "so personal data would travel in the clear; use https (plain http is for localhost only)"
                )
        for name, spec in self.providers.items():
            if spec.protocol != "offline" and not spec.base_url:
                raise ValueError(f"providers.{name}.base_url: required for protocol {spec.protocol!r}")
            if problem := spec.unsafe(name):
                raise ValueError(problem)
        for tier, labels in self.tiers.items():
            if not labels:
                raise ValueError(f"tiers.{tier}: tier {tier!r} has no candidate models")
            for label in labels:
                if label not in self.models:
                    raise ValueError(f"tiers.{tier}: tier {tier!r} names unknown model {label!r}")
        return self

    def missing_keys(self) -> list[str]:
        """Env vars that models in use need but the environment lacks (checked at worker start)."""
        used = {spec.provider for spec in self.models.values()}
        return sorted(
            f"providers.{name}.api_key_env: {spec.api_key_env} is not set"
            for name, spec in self.providers.items()
            if name in used and spec.api_key_env and not os.environ.get(spec.api_key_env)
        )

    def candidates(self, tier: str, model: str | None = None) -> list[tuple[str, ModelSpec]]:
        """The models to try, in order, for a step asking for `tier` (or one `model`)."""
        if model is not None:
            if model not in self.models:
                raise KeyError(f"unknown model {model!r}")
            return [(model, self.models[model])]
        if tier not in self.tiers:
            raise KeyError(f"unknown tier {tier!r} (configured: {', '.join(sorted(self.tiers))})")
        return [(label, self.models[label]) for label in self.tiers[tier]]
