"""The one activity through which every model call passes.

It resolves the step's tier to candidate models (the worker's config), asks
each in order until one answers, prices the usage, and reports which model
answered and which failed. Temporal's retry policy owns retries of the whole
call; this loop only moves across candidates.
"""

from __future__ import annotations

import time

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.llm.catalog import Catalog
from activities.llm.contracts import FailedAttempt, LlmRequest, LlmResult
from activities.llm.offline import OfflineCannotAnswer, OfflineProvider
from activities.llm.provider import Provider, ProviderUnavailable


class ModelActivities:
    def __init__(self, catalog: Catalog, providers: dict[str, Provider] | None = None) -> None:
        self._catalog = catalog
        self._providers: dict[str, Provider] = (
            {"offline": OfflineProvider()} if providers is None else providers
        )

    @activity.defn(name="call_model")
    async def call_model(self, request: LlmRequest) -> LlmResult:
        try:
            candidates = self._catalog.candidates(request.tier, request.model)
        except KeyError as err:
            raise ApplicationError(str(err.args[0]), type="UnknownModel", non_retryable=True)
        failed: list[FailedAttempt] = []
        for label, spec in candidates:
            provider = self._providers.get(spec.provider)
            if provider is None:
                raise ApplicationError(
                    f"model {label!r} needs provider {spec.provider!r}, which this worker lacks",
                    type="UnknownProvider",
                    non_retryable=True,
                )
            started = time.perf_counter()
            try:
                done = await provider.complete(request, spec)
            except ProviderUnavailable as err:
                failed.append(FailedAttempt(model=label, provider=spec.provider, error=str(err)))
                continue
            except OfflineCannotAnswer as err:
                raise ApplicationError(str(err), type="OfflineCannotAnswer", non_retryable=True)
            return LlmResult(
                output=done.output,
                tier=request.tier,
                model=label,
                provider=spec.provider,
                tokens_in=done.tokens_in,
                tokens_out=done.tokens_out,
                cached_tokens=done.cached_tokens,
                cost_usd=spec.price.cost(done.tokens_in, done.tokens_out, done.cached_tokens),
                latency_ms=(time.perf_counter() - started) * 1000,
                attempt=activity.info().attempt,
                failed=failed,
            )
        raise ApplicationError(
            f"no model of tier {request.tier!r} answered: "
            + "; ".join(f"{f.model}: {f.error}" for f in failed),
            type="AllModelsUnavailable",
        )
