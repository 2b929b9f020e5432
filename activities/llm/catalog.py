"""Which models exist, what they cost, and which ones serve each tier.

This is the `[models]` / `[tiers]` part of `baton.toml`. It is read by the
worker only; a workflow sees tiers and model labels, never keys or prices.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, Field, model_validator

KNOWN_PROVIDERS = ("offline",)


class Price(BaseModel):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)

    def cost(self, tokens_in: int, tokens_out: int, cached: int = 0) -> float:
        cached_rate = self.input if self.cached_input is None else self.cached_input
        fresh = max(tokens_in - cached, 0)
        return (fresh * self.input + cached * cached_rate + tokens_out * self.output) / 1_000_000


class ModelSpec(BaseModel):
    """One callable model: the provider protocol, the provider's model name, its price."""

    provider: str
    name: str
    price: Price

    @model_validator(mode="after")
    def _known_provider(self) -> Self:
        if self.provider not in KNOWN_PROVIDERS:
            raise ValueError(
                f"unknown provider {self.provider!r} (known: {', '.join(KNOWN_PROVIDERS)})"
            )
        return self


def _offline(name: str, price_in: float, price_out: float) -> ModelSpec:
    return ModelSpec(provider="offline", name=name, price=Price(input=price_in, output=price_out))


class Catalog(BaseModel):
    """Models by label and the ordered candidates of each tier."""

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
    def _tiers_resolve(self) -> Self:
        for tier, labels in self.tiers.items():
            if not labels:
                raise ValueError(f"tier {tier!r} has no candidate models")
            for label in labels:
                if label not in self.models:
                    raise ValueError(f"tier {tier!r} names unknown model {label!r}")
        return self

    def candidates(self, tier: str, model: str | None = None) -> list[tuple[str, ModelSpec]]:
        """The models to try, in order, for a step asking for `tier` (or one `model`)."""
        if model is not None:
            if model not in self.models:
                raise KeyError(f"unknown model {model!r}")
            return [(model, self.models[model])]
        if tier not in self.tiers:
            raise KeyError(f"unknown tier {tier!r} (configured: {', '.join(sorted(self.tiers))})")
        return [(label, self.models[label]) for label in self.tiers[tier]]
