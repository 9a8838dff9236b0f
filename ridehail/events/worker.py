"""A worker is an app's set of handlers, one per topic it consumes, run in one process.

An app declares its worker in its `subscribers` module:

    WORKER = Worker("rides", [MatchingPoolHandler, RideMatcher])

`python manage.py run_subscriber rides` finds it by name and runs it on at most three Redis
connections (on a cluster: of these three kinds), each named (CLIENT SETNAME) so `CLIENT LIST`
says whose it is:

    <name>:subscriber     every channel of its Pub/Sub handlers and the relay's wake-up, on one connection
                          (on a cluster: one per node that owns one of those shard channels)
    <name>:stream-reader  one blocking XREADGROUP of every stream of its stream handlers (StreamReader;
                          on a Redis Cluster one reader per stream, each on a connection of its own)
    <name>:commands       every other command: all handlers, the outbox relay, metrics, the heartbeat
                          (on a Redis Cluster at most one connection per node, each so named)

A reader runs in a thread of its own; only a worker with a handler on streams opens a
stream reader, and every worker subscribes (its relay's wake-up at least). One stop flag,
set by SIGTERM or Ctrl-C, ends them all within a few seconds.
"""

import logging
import threading
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

import redis
from django.apps import apps
from django.conf import settings
from django.utils.module_loading import module_has_submodule

from ridehail.events.connection import worker_command_redis, worker_redis
from ridehail.events.handler import Handler, Transport
from ridehail.events.heartbeat import HeartbeatThread
from ridehail.events.outbox import OutboxRelay
from ridehail.events.publisher import RELAY_WAKE
from ridehail.events.pubsub import PubSubReader, PubSubRunner
from ridehail.events.runner import Reader
from ridehail.events.stream import StreamReader, StreamRunner, by_slot

_workers: dict[str, "Worker"] = {}


@dataclass(frozen=True)
class StreamOptions:
    claim_idle: float = 30.0
    max_deliveries: int = 5
    batch_size: int = 100


@dataclass(frozen=True)
class Worker:
    name: str
    handlers: list[type[Handler]] = field(repr=False)

    def __post_init__(self) -> None:
        for handler in self.handlers:
            if handler.name != self.name:
                raise ValueError(f"handler {handler.__name__} is named {handler.name!r}, not {self.name!r}")
        _workers[self.name] = self

    def readers(
        self,
        commands: redis.Redis,
        *,
        transport: Transport,
        stop: threading.Event,
        relay_wake: threading.Event,
        options: StreamOptions = StreamOptions(),
    ) -> list[Reader]:
        """Every handler on the transport its topic allows (a live topic: Pub/Sub), grouped by transport;
        the subscriber also sets `relay_wake` when a request leaves a row to the relay."""
        resync = settings.RIDEHAIL_RESYNC_SECONDS
        pubsub: list[PubSubRunner] = []
        streams: list[StreamRunner] = []
        for handler_class in self.handlers:
            handler = handler_class(commands)
            if handler.transport_for(transport) is Transport.STREAM:
                streams.append(
                    StreamRunner(
                        handler,
                        stop=stop,
                        claim_idle=options.claim_idle,
                        max_deliveries=options.max_deliveries,
                        batch_size=options.batch_size,
                        resync_seconds=resync,
                    )
                )
            else:
                pubsub.append(PubSubRunner(handler, stop=stop, resync_seconds=resync))
        readers: list[Reader] = []
        readers.append(
            PubSubReader(
                pubsub,
                read_client=worker_redis(name=f"{self.name}:subscriber"),
                stop=stop,
                signals={RELAY_WAKE: relay_wake},
                logger=logging.getLogger(self.name),
            )
        )
        for same_slot in by_slot(streams):  # one reader on a single Redis; one per stream on a cluster
            readers.append(
                StreamReader(same_slot, read_client=worker_redis(name=f"{self.name}:stream-reader"), stop=stop)
            )
        return readers

    def run(self, *, transport: Transport, stop: threading.Event, options: StreamOptions = StreamOptions()) -> None:
        """Run every handler, the outbox relay and the heartbeat until `stop` is set."""
        commands = worker_command_redis(self.name)  # also what the relay's publisher uses here
        relay = OutboxRelay(stop)
        readers = self.readers(commands, transport=transport, stop=stop, relay_wake=relay.wake, options=options)
        heartbeat = HeartbeatThread(
            commands,
            name=self.name,
            transport=transport.value,
            stop=stop,
            turned_at=lambda: [reader.turned_at for reader in readers],
            report=lambda: handlers_report(readers),
        )
        threads = [threading.Thread(target=reader.run, name=f"{self.name}:{reader.what}") for reader in readers]
        for thread in [relay, heartbeat, *threads]:
            thread.start()
        for thread in threads:
            # Never an endless join: a signal the kernel hands to another thread (it does after a
            # SIGSTOP/SIGCONT) runs its Python handler only when the main thread runs bytecode.
            while thread.is_alive():
                thread.join(timeout=0.5)
        relay.join(timeout=5)
        heartbeat.join(timeout=5)
        readers[0].logger.info("stopped")


def handlers_report(readers: list[Reader]) -> dict[str, Any]:
    """What every handler of this process adds to its heartbeat (`Handler.heartbeat`)."""
    report: dict[str, Any] = {}
    for reader in readers:
        for runner in reader.runners:
            report.update(runner.handler.heartbeat())
    return report


def declared_workers() -> dict[str, Worker]:
    """Every worker declared in an installed app's `subscribers` module, by name."""
    for app_config in apps.get_app_configs():
        if module_has_submodule(app_config.module, "subscribers"):
            import_module(f"{app_config.name}.subscribers")
    return dict(sorted(_workers.items()))
