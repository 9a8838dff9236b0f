"""`python manage.py run_subscriber rides|locations [--transport pubsub|stream]`."""

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ridehail.events.handler import Transport
from ridehail.events.runner import fewer_gc_pauses, lean_log_records
from ridehail.events.tracing import configure as configure_tracing
from ridehail.events.worker import StreamOptions, declared_workers


def stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT ask the worker to stop; each loop finishes its current batch first."""
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


class Command(BaseCommand):
    help = "Run one app's worker: every handler it declares, each in a loop of its own."
    # Workers start many at a time next to the web server, which already runs the checks.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="which worker to run: " + ", ".join(declared_workers()))
        parser.add_argument(
            "--transport",
            choices=[transport.value for transport in Transport],
            default=Transport.PUBSUB.value,
            help="how driver-status-changed is read. pubsub: live and fire-and-forget (default); "
            "stream: consumer group, at least once. Topics that must be processed are always read from "
            "their stream, live-only topics always from their channel.",
        )
        parser.add_argument("--claim-idle", type=float, default=30.0, help="stream: claim entries idle this long (s)")
        parser.add_argument("--max-deliveries", type=int, default=5, help="stream: dead-letter after this many tries")
        parser.add_argument("--batch-size", type=int, default=100, help="stream: entries read per round trip")

    def handle(self, *args: Any, name: str, transport: str, **options: Any) -> None:
        workers = declared_workers()
        if name not in workers:
            raise CommandError(f"unknown subscriber {name!r}; choose from: {', '.join(workers)}")
        if options["claim_idle"] <= 0 or options["max_deliveries"] < 1 or options["batch_size"] < 1:
            raise CommandError("--claim-idle must be > 0, --max-deliveries and --batch-size at least 1")
        configure_tracing(f"ridehail-{name}")
        stop = stop_on_signals()
        lean_log_records()
        stream_options = StreamOptions(
            claim_idle=options["claim_idle"], max_deliveries=options["max_deliveries"], batch_size=options["batch_size"]
        )
        # Django and every handler's module are imported by now: out of every future collection
        # (a full one walked ~145,000 start-up objects inside a batch's solve).
        fewer_gc_pauses()
        workers[name].run(transport=Transport(transport), stop=stop, options=stream_options)
