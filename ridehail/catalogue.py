"""The event catalogue of this project: every declared topic, its workers' handlers and the dashboard.

`ridehail/events/asyncapi.py` turns declarations into the AsyncAPI document without importing
any app; this module is where the project's declarations are gathered and handed to it. Served
at `/api/events/schema/` (JSON, like `/api/schema/`) and `/api/events/` (a readable page), and
written to `docs/asyncapi.json` by `manage.py asyncapi` (a test checks that file is current).
"""

import functools
import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from ridehail.dashboard.fanout import TOPICS as DASHBOARD_TOPICS
from ridehail.events.asyncapi import Consumer, document, handler_consumers
from ridehail.events.handler import Transport
from ridehail.events.topic import declared_topics
from ridehail.events.worker import declared_workers
from ridehail.web.http import allow_methods

DOCUMENT_PATH = Path(settings.BASE_DIR) / "docs" / "asyncapi.json"
DASHBOARD = "The live dashboard's fan-out (one per web process): every event, pushed to operators' browsers."


@functools.cache
def event_catalogue() -> dict[str, Any]:
    """The AsyncAPI document: the same in every process and for the process's life (declarations)."""
    handlers = [handler for worker in declared_workers().values() for handler in worker.handlers]
    dashboard = [Consumer("dashboard", topic, (Transport.PUBSUB,), DASHBOARD) for topic in DASHBOARD_TOPICS.values()]
    return document(declared_topics(), [*handler_consumers(handlers), *dashboard])


def render_document(catalogue: dict[str, Any]) -> str:
    """The committed file's one form: indented, keys in the generator's order, a final newline."""
    return json.dumps(catalogue, indent=2, ensure_ascii=False) + "\n"


@allow_methods("GET")
def schema_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(event_catalogue(), json_dumps_params={"indent": 2, "ensure_ascii": False})


@allow_methods("GET")
def catalogue_page(request: HttpRequest) -> HttpResponse:
    """The document as a page: each channel with its messages' fields, each operation."""
    catalogue = event_catalogue()
    messages = catalogue["components"]["messages"]
    channels = [
        {
            "id": channel_id,
            **channel,
            "messages": [_readable(messages[ref["$ref"].rsplit("/", 1)[1]]) for ref in channel["messages"].values()],
            "operations": [
                operation
                for operation in catalogue["operations"].values()
                if operation["channel"]["$ref"] == f"#/channels/{channel_id}"
            ],
        }
        for channel_id, channel in catalogue["channels"].items()
    ]
    return render(request, "api/events.html", {"info": catalogue["info"], "channels": channels})


def _readable(message: dict[str, Any]) -> dict[str, Any]:
    return {**message, "fields": list(_field_rows(message.get("payload", {})))}


def _field_rows(schema: dict[str, Any], prefix: str = "") -> Any:
    """One row per field, nested objects' fields as `pickup.lat`: name, type, rule, description."""
    for name, field in schema.get("properties", {}).items():
        kinds = field["type"] if isinstance(field["type"], list) else [field["type"]]
        rules = [f"{key} {field[key]}" for key in ("format", "minimum", "maximum", "enum", "pattern") if key in field]
        yield {"name": prefix + name, "type": " or ".join(kinds), "rules": "; ".join(rules), **field}
        if "properties" in field:
            yield from _field_rows(field, prefix=f"{prefix}{name}.")
