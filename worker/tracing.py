"""Traces: OpenTelemetry spans over OTLP/HTTP, one trace per delivery, or nothing at all.

On when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set
(Settings.tracing); then each process exports its spans to `<endpoint>/v1/traces` as the
OTLP exporter spec builds per-signal URLs (opentelemetry.io/docs/specs/otel/protocol/
exporter). Off, this module imports nothing of OpenTelemetry and `span()` hands back one
shared no-op, so the receiver and the worker pay nothing for it (tests/test_tracing.py
checks sys.modules).

What our code decides (whether, where, which protocol) is in Settings; the rest of the
standard variables are read by the SDK itself, as its docs and the spec's "General SDK
Configuration" page define them: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
(`Resource.create`), OTEL_TRACES_SAMPLER and _ARG (`TracerProvider`, default
parentbased_always_on), OTEL_EXPORTER_OTLP_HEADERS/_TIMEOUT/_COMPRESSION/_CERTIFICATE
(`OTLPSpanExporter`), OTEL_BSP_* (`BatchSpanProcessor`).

Context crosses process boundaries as the W3C `traceparent` (w3.org/TR/trace-context):
from an HTTP request that carries one, in the Celery message's headers (worker/envelope.py),
and on every stream entry (tasks/publish.py), so an agent continues the trace.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from worker.errors import SettingsError
from worker.redact import redact, redact_url
from worker.settings import Settings

log = logging.getLogger("stripe_worker.tracing")

TRACEPARENT = "traceparent"
_NOOP = contextlib.nullcontext(None)
_KINDS = ("internal", "server", "client", "producer", "consumer")


class _Process:
    """The process's tracer once set up (None: tracing off). One per process, as the
    OpenTelemetry API's own tracer provider is."""

    def __init__(self) -> None:
        self.tracer: Any = None
        self.provider: Any = None
        self.lock = threading.Lock()


_process = _Process()


def check(settings: Settings) -> None:
    """SettingsError, in one line, when tracing is asked for and the `otel` extra is not
    installed; imports nothing (a process checks this before it forks)."""
    if settings.tracing and not _installed():
        raise SettingsError(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
            "pip install 'stripe-worker[otel]', or unset it"
        )


def _installed() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.sdk") is not None
    except ModuleNotFoundError:  # no `opentelemetry` package at all
        return False


def setup(settings: Settings, service: str) -> bool:
    """Start exporting this process's spans when Settings.tracing; True when on.

    Once per process (a second call keeps the first set-up). Call it in the process that
    makes the spans, after any fork: the BatchSpanProcessor's export thread and its lock do
    not survive a fork (opentelemetry-python.readthedocs.io, "Working With Fork Process
    Models"), and under gunicorn's gevent worker the thread must be made after gevent's
    patching. `service` is service.name unless OTEL_SERVICE_NAME or
    OTEL_RESOURCE_ATTRIBUTES names one."""
    if not settings.tracing:
        return False
    check(settings)
    with _process.lock:
        if _process.tracer is not None:
            return True
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create()
        # The SDK's fallback is "unknown_service:<executable>"; ours names the process.
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: service}))
        provider = TracerProvider(resource=resource)
        exporter = OTLPSpanExporter(endpoint=settings.otlp_traces_url)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        # Global too, so an official instrumentation an operator adds joins the same traces.
        trace.set_tracer_provider(provider)
        _process.provider = provider
        _process.tracer = provider.get_tracer("stripe_worker")
    shown = redact_url(settings.otlp_traces_url)  # a URL may carry credentials
    log.info("traces to %s as %s", shown, resource.attributes[SERVICE_NAME])
    return True


def enabled() -> bool:
    return _process.tracer is not None


def span(
    name: str,
    kind: str = "internal",
    *,
    parent: str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> contextlib.AbstractContextManager[Any]:
    """A span around a block, current inside it (the SDK's Span, or None when tracing is
    off). `parent`: a W3C traceparent from outside this process (a message, a request);
    without one, the current span is the parent. An exception leaving the block is recorded
    (redacted) and sets the span's status to error."""
    tracer = _process.tracer
    if tracer is None:
        return _NOOP
    from opentelemetry.trace import SpanKind

    assert kind in _KINDS, kind
    context = _extract(parent) if parent else None
    started: contextlib.AbstractContextManager[Any] = tracer.start_as_current_span(
        name,
        context=context,
        kind=SpanKind[kind.upper()],
        attributes=attributes,
        # Recorded by `_recorded`: the SDK's own would export the traceback, and with it
        # the chained errors' text (a Stripe error names part of its key).
        record_exception=False,
        set_status_on_exception=False,
    )
    return _recorded(started)


@contextlib.contextmanager
def _recorded(started: contextlib.AbstractContextManager[Any]) -> Iterator[Any]:
    """The span, and an exception leaving it recorded as the semantic conventions' exception
    event (its type and message, redacted as every log line is; no traceback)."""
    with started as current:
        try:
            yield current
        except Exception as exc:
            from opentelemetry.trace import Status, StatusCode

            message = redact(str(exc))[:500]
            kind = type(exc).__qualname__
            current.add_event("exception", {"exception.type": kind, "exception.message": message})
            current.set_attribute("error.type", kind)
            current.set_status(Status(StatusCode.ERROR, message))
            raise


def annotate(current: Any, **attributes: Any) -> None:
    """Set attributes on a span from `span()` (None values left out); nothing when tracing
    is off. An `error.type` makes the span's status error, as the semantic conventions
    have a failed HTTP call's span."""
    if current is None:
        return
    current.set_attributes({k: v for k, v in attributes.items() if v is not None})
    if attributes.get("error.type"):
        from opentelemetry.trace import Status, StatusCode

        current.set_status(Status(StatusCode.ERROR))


def traceparent() -> str | None:
    """The W3C traceparent of the current span, for a message or an entry; None when
    tracing is off or no span is current."""
    if _process.tracer is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get(TRACEPARENT)


def trace_id() -> str | None:
    """The current trace's id in hex, as tracing backends search by; None when off."""
    if _process.tracer is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def _extract(value: str) -> Any:
    """The context a traceparent names; an empty one (a new trace) for a malformed value,
    which the W3C propagator refuses: a sender's header is never trusted further."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({TRACEPARENT: value})


def flush(timeout_ms: int = 5000) -> None:
    """Export what is buffered now (a process about to exit without atexit)."""
    if _process.provider is not None:
        _process.provider.force_flush(timeout_ms)
