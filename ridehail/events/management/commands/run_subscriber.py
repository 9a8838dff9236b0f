"""`python manage.py run_subscriber rides|locations [--transport pubsub|stream]`."""

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ridehail.events.connection import worker_redis
from ridehail.events.runner import PubSubRunner
from ridehail.events.subscriber import subscriber_classes


def stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT ask the worker to stop; it finishes the current event first."""
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


class Command(BaseCommand):
    help = "Run one app's event subscriber (the rides or locations worker)."
    # Workers start many at a time next to the web server, which already runs the checks.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="which subscriber to run: " + ", ".join(subscriber_classes()))
        parser.add_argument(
            "--transport",
            choices=["pubsub", "stream"],
            default="pubsub",
            help="pubsub: live and fire-and-forget (default); stream: consumer group, at least once",
        )

    def handle(self, *args: Any, name: str, transport: str, **options: Any) -> None:
        classes = subscriber_classes()
        if name not in classes:
            raise CommandError(f"unknown subscriber {name!r}; choose from: {', '.join(classes)}")
        subscriber = classes[name](worker_redis())
        stop = stop_on_signals()
        if transport == "stream":
            raise CommandError("--transport stream is not available yet")
        PubSubRunner(subscriber, subscribe_client=worker_redis(), stop=stop).run()
