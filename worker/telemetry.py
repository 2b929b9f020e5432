"""OpenTelemetry providers from the standard OTEL_* variables, set up in one place.

Off unless asked: with OTEL_TRACES_EXPORTER and OTEL_METRICS_EXPORTER unset
(or `none`) nothing is installed, nothing is exported, nothing is printed.
OpenTelemetry's own default is `otlp`; Baton's is `none`, because most workers
(a laptop, CI, the demo) have no collector to send to.

Exporters: `console` (stdout) and `otlp` (OTLP over HTTP, the `baton[otlp]`
extra, configured by the exporter itself through OTEL_EXPORTER_OTLP_*). The
worker batches spans and flushes on the way out. A client (the CLI) only
traces, as it records no metrics, and exports each span as it ends: it leaves
through `os._exit` (worker/exit.py), which skips the SDK's exit hooks.

`install` sets OpenTelemetry's global providers once per process, for the
worker (`python -m worker`, `baton dev`) and the client (`connect`); tests use
`from_env` and pass the providers they build around, never the globals.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from opentelemetry import metrics, trace
from opentelemetry.metrics._internal import _ProxyMeterProvider  # "none set yet" has no public name
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

from worker.config import ConfigError

EXPORTERS = ("none", "console", "otlp")


@dataclass(frozen=True)
class Telemetry:
    """The providers set up, or None for a signal that is off."""

    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None

    def flush(self) -> None:
        """Export what is buffered; the worker calls this before it exits."""
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush()
        if self.meter_provider is not None:
            self.meter_provider.force_flush()


_installed: Telemetry | None = None


def install(default_service: str, *, client: bool = False) -> Telemetry:
    """`from_env`, once per process, as OpenTelemetry's global providers.

    The first caller decides (the worker, before its client connects); a
    provider something else already set globally stays, and ours is dropped.
    """
    global _installed
    if _installed is None:
        wanted = from_env(default_service, client=client)
        tracer_provider, meter_provider = wanted.tracer_provider, wanted.meter_provider
        if tracer_provider is not None and not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            tracer_provider.shutdown()
            tracer_provider = None
        if meter_provider is not None and not isinstance(metrics.get_meter_provider(), _ProxyMeterProvider):
            meter_provider.shutdown()
            meter_provider = None
        if tracer_provider is not None:
            trace.set_tracer_provider(tracer_provider)
        if meter_provider is not None:
            metrics.set_meter_provider(meter_provider)
        _installed = Telemetry(tracer_provider, meter_provider)
    return _installed


def from_env(default_service: str, *, client: bool = False) -> Telemetry:
    """The providers OTEL_TRACES_EXPORTER and OTEL_METRICS_EXPORTER ask for, installed nowhere.

    `client`: spans exported one by one, and no metrics (see the module's docstring).
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return Telemetry()
    traces, meters = exporters("OTEL_TRACES_EXPORTER"), exporters("OTEL_METRICS_EXPORTER")
    meters = [] if client else meters
    if not traces and not meters:
        return Telemetry()
    resource = _resource(default_service)
    tracer_provider = meter_provider = None
    if traces:
        tracer_provider = TracerProvider(resource=resource)
        for name in traces:
            spans = ConsoleSpanExporter(out=sys.stdout) if name == "console" else _otlp("OTEL_TRACES_EXPORTER", "trace")
            tracer_provider.add_span_processor(SimpleSpanProcessor(spans) if client else BatchSpanProcessor(spans))
    if meters:
        readers = [
            PeriodicExportingMetricReader(
                ConsoleMetricExporter(out=sys.stdout) if name == "console" else _otlp("OTEL_METRICS_EXPORTER", "metric")
            )
            for name in meters
        ]
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    return Telemetry(tracer_provider, meter_provider)


def exporters(variable: str) -> list[str]:
    """The exporters a variable names (a comma-separated list, as the spec allows); [] for none."""
    value = os.environ.get(variable, "").strip().lower()
    names = [n.strip() for n in value.split(",") if n.strip()] or ["none"]
    for name in names:
        if name not in EXPORTERS:
            raise ConfigError(f"{variable}={value}: unknown exporter {name!r} (use one of: {', '.join(EXPORTERS)})")
    return [n for n in dict.fromkeys(names) if n != "none"]


def _resource(default_service: str) -> Resource:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES as the SDK reads them, else Baton's default name."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service}))
    return resource


def _otlp(variable: str, signal: str):
    """The OTLP/HTTP exporter for `signal`; it reads OTEL_EXPORTER_OTLP_* itself."""
    for protocol_variable in (f"OTEL_EXPORTER_OTLP_{signal.upper()}S_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = os.environ.get(protocol_variable, "").strip()
        if protocol and protocol != "http/protobuf":
            raise ConfigError(f"{protocol_variable}={protocol}: Baton exports OTLP over http/protobuf only")
        if protocol:
            break
    try:
        if signal == "trace":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter()
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter()
    except ImportError:
        raise ConfigError(f"{variable}=otlp needs `pip install baton[otlp]`") from None
