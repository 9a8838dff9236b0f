"""A worker is an app's set of handlers, one per topic it consumes, run in one process.

An app declares its worker in its `subscribers` module:

    WORKER = Worker("rides", [MatchingPoolHandler, RideMatcher])

`python manage.py run_subscriber rides` finds it by name and runs every handler in a loop
(thread) of its own, each with its own two Redis connections (one to subscribe or block
on, one for commands), plus the outbox relay; one stop flag, set by SIGTERM or Ctrl-C,
ends them all within a few seconds.
"""

import threading
from dataclasses import dataclass, field
from importlib import import_module

from django.apps import apps
from django.conf import settings
from django.utils.module_loading import module_has_submodule

from ridehail.events.connection import worker_redis
from ridehail.events.handler import Handler, Transport
from ridehail.events.outbox import OutboxRelay
from ridehail.events.pubsub import PubSubRunner
from ridehail.events.runner import Runner
from ridehail.events.stream import StreamRunner

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

    def runners(
        self, *, transport: Transport, stop: threading.Event, options: StreamOptions = StreamOptions()
    ) -> list[Runner]:
        """One loop per handler, on the transport its topic allows (a live topic: Pub/Sub)."""
        runners: list[Runner] = []
        resync = settings.RIDEHAIL_RESYNC_SECONDS
        for handler_class in self.handlers:
            handler = handler_class(worker_redis())
            if handler.transport_for(transport) is Transport.STREAM:
                runner: Runner = StreamRunner(
                    handler,
                    read_client=worker_redis(),
                    stop=stop,
                    claim_idle=options.claim_idle,
                    max_deliveries=options.max_deliveries,
                    batch_size=options.batch_size,
                    resync_seconds=resync,
                )
            else:
                runner = PubSubRunner(handler, read_client=worker_redis(), stop=stop, resync_seconds=resync)
            runners.append(runner)
        return runners

    def run(self, *, transport: Transport, stop: threading.Event, options: StreamOptions = StreamOptions()) -> None:
        """Run every handler and the outbox relay until `stop` is set."""
        relay = OutboxRelay(stop)
        relay.start()
        threads = [
            threading.Thread(target=runner.run, name=f"{self.name}:{runner.topic.name}")
            for runner in self.runners(transport=transport, stop=stop, options=options)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        relay.join(timeout=5)


def declared_workers() -> dict[str, Worker]:
    """Every worker declared in an installed app's `subscribers` module, by name."""
    for app_config in apps.get_app_configs():
        if module_has_submodule(app_config.module, "subscribers"):
            import_module(f"{app_config.name}.subscribers")
    return dict(sorted(_workers.items()))
