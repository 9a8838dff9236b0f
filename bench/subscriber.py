"""Pub/Sub worker throughput: `run_subscriber rides` (PubSubRunner) while the channel is flooded,
against a raw redis-py subscriber loop that only decodes the JSON; then zero loss at half the
worker's maximum, sustained.

A separate process floods the channel (pipelined PUBLISH) while the receiver holds still,
so Redis buffers the whole flood for it; then the receiver is let go and its drain is timed.
The worker runs in this process,
as `run_subscriber` runs it: batched reads, validation, known-driver check, versioned apply
in Redis, one log line per event (to /dev/null). The throughput runs use a Redis without an
output-buffer limit, to measure the drain rate; the loss run keeps Redis's defaults.

    .venv/bin/python -m bench.subscriber [--events 100000] [--rounds 3] [--full]
"""

import json
import subprocess
import tempfile
import threading
import time

from bench.common import PrivateRedis, median, python, temp_sqlite_url
from bench.django_env import make_drivers, quiet_worker_logs, setup_django
from bench.report import Progress, Section, Target, cli, markdown_table, progress

COMMAND = ".venv/bin/python -m bench.subscriber"
IDLE_SECONDS = 3.0


class Drain:
    """Counts what arrives; done when `total` arrived or nothing came for IDLE_SECONDS.

    For a drain-rate measurement the receiver holds still (`go` unset) while the flood fills
    Redis's buffer for it, and the clock starts when it is let go.
    """

    def __init__(self, total: int, *, hold: bool) -> None:
        self.total, self.count = total, 0
        self.first = self.last = 0.0
        self.go = threading.Event()
        if not hold:
            self.go.set()

    def release(self) -> None:
        self.first = time.perf_counter()
        self.go.set()

    def seen(self, n: int) -> None:
        self.go.wait()
        now = time.perf_counter()
        self.first = self.first or now
        self.last, self.count = now, self.count + n

    def wait(self) -> None:
        while self.count < self.total and (not self.last or time.perf_counter() - self.last < IDLE_SECONDS):
            time.sleep(0.05)

    @property
    def rate(self) -> float:
        return self.count / (self.last - self.first) if self.last > self.first else 0.0


def flood(redis_url: str, drivers_file: str, total: int, rate: float = 0) -> None:
    python("-m", "bench.flood", redis_url, drivers_file, str(total), str(rate), stdout=subprocess.DEVNULL).wait()


def project_run(redis_url: str, drivers_file: str, total: int, rate: float = 0) -> Drain:
    from ridehail.events.connection import worker_redis
    from ridehail.events.pubsub import PubSubRunner
    from rides.subscribers import MATCHING_POOL, MatchingPoolHandler

    drain = Drain(total, hold=not rate)

    class Counting(MatchingPoolHandler):
        def parse_messages(self, raws: list[bytes]) -> list:
            drain.go.wait()
            events = super().parse_messages(raws)
            drain.seen(len(raws) - len(events))  # invalid ones are done here
            return events

        def handle_batch(self, events: list) -> int:
            applied = super().handle_batch(events)
            drain.seen(len(events))
            return applied

    client = worker_redis()
    MATCHING_POOL.clear(client)
    stop = threading.Event()
    runner = PubSubRunner(Counting(worker_redis()), read_client=worker_redis(), stop=stop)
    thread = threading.Thread(target=runner.run)
    thread.start()
    while client.pubsub_numsub("driver-status-changed")[0][1] < 1:
        time.sleep(0.05)
    time.sleep(0.5)  # the rebuild after subscribing
    flood(redis_url, drivers_file, total, rate)
    if not drain.go.is_set():
        drain.release()
    drain.wait()
    stop.set()
    thread.join()
    return drain


def raw_run(redis_url: str, drivers_file: str, total: int) -> Drain:
    import redis

    drain = Drain(total, hold=True)
    pubsub = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("driver-status-changed")
    ready = threading.Event()

    def loop() -> None:
        ready.set()
        drain.go.wait()
        while drain.count < total and (not drain.last or time.perf_counter() - drain.last < IDLE_SECONDS):
            message = pubsub.get_message(timeout=0.5)
            if message:
                json.loads(message["data"])
                drain.seen(1)

    thread = threading.Thread(target=loop)
    thread.start()
    ready.wait()
    time.sleep(0.2)
    flood(redis_url, drivers_file, total)
    drain.release()
    thread.join()
    pubsub.close()
    return drain


def run(
    *, full: bool = False, events: int | None = None, rounds: int | None = None, report: Progress = progress
) -> Section:
    events = events or (200_000 if full else 50_000)
    rounds = rounds or 3
    sustained_seconds = 60 if full else 10
    results: dict[str, list[float]] = {"project": [], "raw": []}
    with PrivateRedis("--client-output-buffer-limit", "pubsub", "0", "0", "0") as unlimited:
        setup_django(temp_sqlite_url(), unlimited.url)
        quiet_worker_logs("rides")
        drivers = [str(driver.id) for driver in make_drivers(1000)]
        drivers_file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump(drivers, drivers_file)
        drivers_file.close()
        for round_number in range(1, rounds + 1):
            project = project_run(unlimited.url, drivers_file.name, events)
            raw = raw_run(unlimited.url, drivers_file.name, events)
            results["project"].append(project.rate)
            results["raw"].append(raw.rate)
            report(
                f"subscriber: round {round_number}/{rounds}: project {project.rate:,.0f}/s "
                f"({events - project.count} lost), raw {raw.rate:,.0f}/s ({events - raw.count} lost)"
            )
    project_max, raw_max = median(results["project"]), median(results["raw"])
    sustained_rate = project_max / 2
    sustained_total = int(sustained_rate * sustained_seconds)
    with PrivateRedis() as default_limits:
        from django.conf import settings

        settings.REDIS_URL = default_limits.url
        from ridehail.events import connection

        connection.shared_redis.cache_clear()
        report(f"subscriber: {sustained_seconds}s at {sustained_rate:,.0f} events/s (half the worker's maximum)")
        sustained = project_run(default_limits.url, drivers_file.name, sustained_total, rate=sustained_rate)
    lost = sustained_total - sustained.count
    ratio = project_max / raw_max
    table = markdown_table(
        ["path", "events/s (median)", "ratio", "target"],
        [
            ["rides worker (PubSubRunner: parse, check, apply, log)", f"{project_max:,.0f}", f"{ratio:.2f}", "≥ 0.5"],
            ["raw redis-py subscriber + json.loads", f"{raw_max:,.0f}", "1.00", ""],
            [
                f"rides worker at {sustained_rate:,.0f}/s for {sustained_seconds}s (default buffer limits)",
                f"{sustained.count:,} of {sustained_total:,} handled",
                f"{lost} lost",
                "0 lost",
            ],
        ],
    )
    return Section(
        title="Pub/Sub worker throughput and loss",
        command=f"{COMMAND} --events {events} --rounds {rounds}" + (" --full" if full else ""),
        table=table,
        targets=[
            Target("rides Pub/Sub worker ÷ raw subscriber", ratio, "≥ 0.5", ratio >= 0.5),
            Target(f"loss at half the maximum for {sustained_seconds}s", float(lost), "0", lost == 0),
        ],
    )


if __name__ == "__main__":
    cli(run, __doc__, {"events": int, "rounds": int})
