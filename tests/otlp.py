"""A tiny OTLP/HTTP trace receiver on loopback: what the processes under test export, for the test to read.

The processes send what they would send to a collector (the SDK's own OTLP/HTTP exporter,
protobuf), so the test checks the real wire path, not an in-process exporter.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.processes import wait_until

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any] = field(hash=False)
    links: list[tuple[str, str]] = field(hash=False)  # (trace_id, span_id) each


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind is not None else None


class OtlpReceiver:
    """`with OtlpReceiver() as receiver`: point OTEL_EXPORTER_OTLP_ENDPOINT at `receiver.endpoint`."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver._take(request)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="otlp-receiver", daemon=True)

    def __enter__(self) -> "OtlpReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self, **more: str) -> dict[str, str]:
        """The variables that send a process's spans here, within a tenth of a second."""
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            **more,
        }

    def _take(self, request: ExportTraceServiceRequest) -> None:
        received = []
        for resource_spans in request.resource_spans:
            resource = {item.key: _value(item.value) for item in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=resource.get("service.name", ""),
                            name=span.name,
                            kind=KINDS.get(span.kind, str(span.kind)),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            attributes={item.key: _value(item.value) for item in span.attributes},
                            links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                        )
                    )
        with self._lock:
            self.spans.extend(received)

    def received(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def wait_for(self, found: Callable[[list[ReceivedSpan]], Any], *, timeout: float = 15.0, what: str = "") -> Any:
        """Wait until `found(spans)` is truthy; return what it returned."""
        return wait_until(lambda: found(self.received()), timeout=timeout, what=what)


def trace_of(spans: list[ReceivedSpan], trace_id: str) -> list[ReceivedSpan]:
    """One trace's spans, in the order they started."""
    return sorted((span for span in spans if span.trace_id == trace_id), key=lambda span: span.start_ns)


COLOURS = {"ridehail-web": "#4e79a7", "ridehail-rides": "#f28e2b", "ridehail-locations": "#59a14f"}


def timeline_svg(journey: list[ReceivedSpan], *, title: str) -> str:
    """One trace as a small SVG timeline (docs/trace.svg): a row per span, indented by depth, a bar
    from its start to its end, coloured by the process that made it."""
    from xml.sax.saxutils import escape

    by_id = {span.span_id: span for span in journey}

    def depth(span: ReceivedSpan) -> int:
        level = 0
        while span.parent_span_id in by_id:
            span, level = by_id[span.parent_span_id], level + 1
        return level

    start, end = min(span.start_ns for span in journey), max(span.end_ns for span in journey)
    label_width, bar_width, row, top = 430, 500, 24, 46
    scale = bar_width / max(end - start, 1)
    height = top + row * len(journey) + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + bar_width + 200}" height="{height}" '
        'font-family="monospace" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
        f'<text x="{label_width}" y="38" fill="#666">0 ms</text>',
        f'<text x="{label_width + bar_width}" y="38" fill="#666" text-anchor="end">{(end - start) / 1e6:.1f} ms</text>',
    ]
    for index, span in enumerate(journey):
        y = top + index * row
        x = label_width + (span.start_ns - start) * scale
        width = max((span.end_ns - span.start_ns) * scale, 2)
        colour = COLOURS.get(span.service, "#999")
        label = f"{'  ' * depth(span)}{span.name}"
        parts += [
            f'<text x="10" y="{y + 15}" xml:space="preserve">{escape(label)}</text>',
            f'<rect x="{x:.1f}" y="{y + 4}" width="{width:.1f}" height="15" rx="2" fill="{colour}"/>',
            f'<text x="{x + width + 4:.1f}" y="{y + 15}" fill="#444">'
            f"{span.service.removeprefix('ridehail-')} {span.kind} {(span.end_ns - span.start_ns) / 1e6:.1f} ms</text>",
        ]
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
