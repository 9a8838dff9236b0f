"""OpenTelemetry tracing of an event's journey: every piece of it, in this one module.

Off unless the standard variables ask for it. `configure()` (the ASGI module and
`run_subscriber` call it, before anything is served) sets a tracer provider up only when
OTEL_TRACES_EXPORTER or OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT is set and OTEL_SDK_DISABLED is
not `true`; otherwise nothing here imports the SDK, the HTTP middleware removes itself from
the chain (MiddlewareNotUsed), and every helper below is one test of a module global.

With it on, one event's journey is one trace:

    PUT /api/users/driver-status              SERVER    TracingMiddleware (a `traceparent` header: the caller's trace)
      users.services.set_driver_availability  INTERNAL  @traced: the service's transaction
        publish driver-status-changed         PRODUCER  the outbox row carries the context to the relay
          process driver-status-changed       CONSUMER  the stream entry carries it to the group

The context is W3C `traceparent` text, the one format everything here speaks: a nullable
column of the outbox row (the service's span, the producer's parent), and a field of the
stream entry beside `event` (the producer's span, the consumer's parent). The event JSON is
not touched. A Pub/Sub message is that JSON alone, so Pub/Sub consumers (a worker on
`--transport pubsub`, the dashboard fan-out, positions) start traces of their own.

Spans follow the messaging semantic conventions: messaging.system=redis,
messaging.destination.name (the stream, or the channel on Pub/Sub),
messaging.operation.type=send|process, messaging.message.id=eventId,
messaging.consumer.group.name (the worker). A batch read becomes one span with a link per
message (the conventions' batch processing), and the child of its message when it holds one.

Exporters: `otlp` (OTLP over HTTP/protobuf, the default; the OTEL_EXPORTER_OTLP_* variables
say where), `console` (JSON lines on stdout), `none`. Spans go out in batches from a thread
(OTEL_BSP_* variables); what is buffered is flushed at exit.
"""

import contextlib
import functools
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger(__name__)

Span = trace.Span
TRACE_FIELD = "traceparent"  # the stream entry's field beside `event`, and the HTTP header's name
SYSTEM = "redis"

_propagator = TraceContextTextMapPropagator()
_tracer: trace.Tracer | None = None  # set by configure(): None means tracing is off
_provider: "TracerProvider | None" = None

P = ParamSpec("P")
R = TypeVar("R")


def wanted(environ: "os._Environ[str] | dict[str, str]" = os.environ) -> bool:
    """Whether the OTEL_* variables ask for traces."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = _exporter_names(environ)
    if exporters is not None:
        return bool(exporters)
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def _exporter_names(environ: "os._Environ[str] | dict[str, str]") -> list[str] | None:
    value = environ.get("OTEL_TRACES_EXPORTER")
    if value is None or not value.strip():
        return None
    return [name.strip().lower() for name in value.split(",") if name.strip() and name.strip().lower() != "none"]


def configure(default_service_name: str) -> bool:
    """Set tracing up from the OTEL_* variables, once per process; returns whether it is on.

    `default_service_name` (ridehail-web, ridehail-rides...) is used unless OTEL_SERVICE_NAME
    names the service. An exporter name this module does not know is an error at start-up,
    not silently no traces.
    """
    global _tracer, _provider
    if _tracer is not None:
        return True
    if not wanted():
        return False
    # The SDK is imported only here: a process without tracing never loads it.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporters: list[SpanExporter] = []
    for name in _exporter_names(os.environ) or ["otlp"]:
        if name == "otlp":
            protocol = os.environ.get(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            )
            if protocol != "http/protobuf":
                raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: only http/protobuf is installed")
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())  # endpoint, headers, timeout: from OTEL_EXPORTER_OTLP_*
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        else:
            raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (otlp, console or none)")
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: default_service_name}
    provider = TracerProvider(resource=Resource.create(attributes))  # also reads OTEL_RESOURCE_ATTRIBUTES
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    _provider, _tracer = provider, provider.get_tracer("ridehail")
    logger.info(
        "tracing on: %s to %s",
        provider.resource.attributes.get(SERVICE_NAME),
        ", ".join(type(exporter).__name__ for exporter in exporters),
    )
    return True


def enabled() -> bool:
    return _tracer is not None


def flush(timeout_millis: int = 5000) -> bool:
    """Export what is buffered now (tests; a process exiting does it by itself)."""
    return _provider.force_flush(timeout_millis) if _provider is not None else True


# -- context as text ------------------------------------------------------------------


def current_traceparent() -> str | None:
    """The current span's context as W3C `traceparent` text, or None (tracing off, no span)."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get(TRACE_FIELD)


def _traceparent_of(span: trace.Span) -> str | None:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get(TRACE_FIELD)


def context_of(traceparent: str | bytes | None) -> Context | None:
    """The context a `traceparent` names; None for none, or for anything that is not one (a
    forged or garbled field is ignored, never an error)."""
    if not traceparent:
        return None
    text = traceparent.decode("ascii", "replace") if isinstance(traceparent, bytes) else traceparent
    context = _propagator.extract({TRACE_FIELD: text})
    return context if trace.get_current_span(context).get_span_context().is_valid else None


# -- spans ----------------------------------------------------------------------------


def span(name: str, attributes: dict[str, Any] | None = None) -> contextlib.AbstractContextManager[trace.Span]:
    """An internal span around a block (the matcher's assignment, the dashboard's frames).

    Off, the block gets a span that records nothing: `.set_attribute()` on it is a no-op.
    """
    if _tracer is None:
        return contextlib.nullcontext(trace.INVALID_SPAN)
    return _tracer.start_as_current_span(name, attributes=attributes)


def traced(function: Callable[P, R]) -> Callable[P, R]:
    """A span around every call of a service function, named after it (the service's transaction)."""
    name = f"{function.__module__}.{function.__qualname__}"

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if _tracer is None:
            return function(*args, **kwargs)
        with _tracer.start_as_current_span(name):
            return function(*args, **kwargs)

    return wrapper


def event_id_of(event: object) -> str | None:
    """A durable event's `eventId` as text (messaging.message.id); None for a live one, which has none."""
    event_id = getattr(event, "event_id", None)
    return str(event_id) if event_id is not None else None


def _messaging(operation: str, destination: str, **more: Any) -> dict[str, Any]:
    attributes = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": operation,
        "messaging.operation.name": "publish" if operation == "send" else operation,
        "messaging.destination.name": destination,
    }
    attributes.update({name: value for name, value in more.items() if value is not None})
    return attributes


def start_publish(
    *, topic: str, destination: str, event_id: str | None, key: str, parent: str | None = None
) -> tuple[trace.Span, str | None]:
    """A producer span for one event, ended by the caller (`end_publish`) once Redis answered, and
    the `traceparent` to send with the event. `parent`: the outbox row's context (else the current one)."""
    if _tracer is None:
        return trace.INVALID_SPAN, None
    attributes = _messaging("send", destination, **{"messaging.message.id": event_id, "ridehail.event.key": key})
    span = _tracer.start_span(
        f"publish {topic}", context=context_of(parent), kind=SpanKind.PRODUCER, attributes=attributes
    )
    return span, _traceparent_of(span)


def end_publish(span: trace.Span, error: BaseException | None = None) -> None:
    if error is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    span.end()


@contextlib.contextmanager
def publishing(
    *, topic: str, destination: str, event_id: str | None, key: str, parent: str | None = None
) -> Iterator[str | None]:
    """`start_publish`/`end_publish` around a block that sends one event; yields the `traceparent` to send."""
    span, traceparent = start_publish(topic=topic, destination=destination, event_id=event_id, key=key, parent=parent)
    try:
        yield traceparent
    except BaseException as exc:
        end_publish(span, exc)
        raise
    end_publish(span)


@contextlib.contextmanager
def processing(
    *, topic: str, destination: str, group: str, messages: Sequence[tuple[str | None, str | bytes | None]]
) -> Iterator[trace.Span]:
    """A consumer span around a handler's batch; `messages`: (eventId, traceparent or None) each.

    One message with a context: the span is its child, in the producer's trace. Several: a new
    trace, linked to each of theirs (one span cannot have several parents).
    """
    if _tracer is None:
        yield trace.INVALID_SPAN
        return
    contexts = [context_of(traceparent) for _, traceparent in messages]
    single = len(messages) == 1
    links = [] if single else [Link(trace.get_current_span(c).get_span_context()) for c in contexts if c is not None]
    attributes = _messaging(
        "process",
        destination,
        **{
            "messaging.consumer.group.name": group,
            "messaging.message.id": messages[0][0] if single else None,
            "messaging.batch.message_count": None if single else len(messages),
        },
    )
    parent = contexts[0] if single and contexts[0] is not None else Context()  # never whatever is current
    with _tracer.start_as_current_span(
        f"process {topic}", context=parent, kind=SpanKind.CONSUMER, links=links, attributes=attributes
    ) as span:
        yield span


# -- the HTTP request -----------------------------------------------------------------

_GROUP = re.compile(r"\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)")


def route_template(route: str) -> str:
    """`^api/rides/(?P<ride_id>...)/?$` (the project's optional-slash patterns) as `/api/rides/{ride_id}`."""
    template = _GROUP.sub(r"{\1}", route).removeprefix("^").removesuffix("$").removesuffix("/?")
    return "/" + template.lstrip("/")


class TracingMiddleware:
    """A SERVER span per request, named `METHOD route` (HTTP semantic conventions), first in MIDDLEWARE.

    Ours rather than opentelemetry-instrumentation-django: this is all of it we need, and it
    adds no package (that one brings the instrumentation framework, wrapt and a WSGI/ASGI layer).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        if _tracer is None:
            raise MiddlewareNotUsed  # off: not even a function call per request
        self.tracer = _tracer
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        with self._span(request) as span:
            response = self.get_response(request)
            self._finish(span, request, response)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        with self._span(request) as span:
            response = await self.get_response(request)
            self._finish(span, request, response)
        return response

    def _span(self, request: HttpRequest) -> contextlib.AbstractContextManager[trace.Span]:
        method = request.method or "_OTHER"
        return self.tracer.start_as_current_span(
            method,
            context=context_of(request.META.get("HTTP_TRACEPARENT")),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": request.path, "url.scheme": request.scheme},
        )

    @staticmethod
    def _finish(span: trace.Span, request: HttpRequest, response: HttpResponse) -> None:
        match = getattr(request, "resolver_match", None)
        if match is not None and match.route:
            route = route_template(match.route)
            span.set_attribute("http.route", route)
            span.update_name(f"{request.method} {route}")
        span.set_attribute("http.response.status_code", response.status_code)
        if response.status_code >= 500:
            span.set_status(Status(StatusCode.ERROR))
