"""`python manage.py run_subscriber rides|locations [--transport pubsub|stream]`."""

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ridehail.events.connection import worker_redis
from ridehail.events.outbox import OutboxRelay
from ridehail.events.runner import PubSubRunner, Runner, lean_log_records
from ridehail.events.stream import StreamRunner
from ridehail.events.subscriber import subscriber_classes


def stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT ask the worker to stop; it finishes the current batch first."""
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
        parser.add_argument("--claim-idle", type=float, default=30.0, help="stream: claim entries idle this long (s)")
        parser.add_argument("--max-deliveries", type=int, default=5, help="stream: dead-letter after this many tries")
        parser.add_argument("--batch-size", type=int, default=100, help="stream: entries read per round trip")

    def handle(self, *args: Any, name: str, transport: str, **options: Any) -> None:
        classes = subscriber_classes()
        if name not in classes:
            raise CommandError(f"unknown subscriber {name!r}; choose from: {', '.join(classes)}")
        if options["claim_idle"] <= 0 or options["max_deliveries"] < 1 or options["batch_size"] < 1:
            raise CommandError("--claim-idle must be > 0, --max-deliveries and --batch-size at least 1")
        stop = stop_on_signals()
        lean_log_records()
        subscriber = classes[name](worker_redis())
        runner: Runner
        if transport == "stream":
            runner = StreamRunner(
                subscriber,
                read_client=worker_redis(),
                stop=stop,
                claim_idle=options["claim_idle"],
                max_deliveries=options["max_deliveries"],
                batch_size=options["batch_size"],
            )
        else:
            runner = PubSubRunner(subscriber, read_client=worker_redis(), stop=stop)
        relay = OutboxRelay(stop)
        relay.start()
        runner.run()
        relay.join(timeout=5)
