"""HTTP request latency by view, counted in Redis so every web process adds to one histogram.

A request only adds to this process's own buckets (a dict under a lock: no I/O on the
request's path); a background thread adds them to the Redis hash every FLUSH_SECONDS in one
pipelined round trip, and `/metrics` flushes its own process's first. So a scrape sees its
own process's requests at once and the others' within FLUSH_SECONDS.

    ridehail:metrics:http   "<view> <method> <bucket>"   requests that took at most <bucket> s
                            "<view> <method> sum"         seconds taken, all together
"""

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import cast

import redis
from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware

from ridehail.events.connection import shared_redis

logger = logging.getLogger(__name__)

KEY = "ridehail:metrics:http"
SEPARATOR = " "
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
INF = "+Inf"
FLUSH_SECONDS = 5.0
UNMATCHED = "(unmatched)"  # no URL pattern matched: one label for every unknown path
# Any other method a client makes up is "OTHER": labels must stay a small, fixed set.
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class LatencyRecorder:
    """This process's requests since its last flush, per (view, method)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = defaultdict(int)
        self._sums: dict[str, float] = defaultdict(float)
        self._flusher: threading.Thread | None = None

    def observe(self, view: str, method: str, seconds: float) -> None:
        bucket = next((str(bound) for bound in BUCKETS if seconds <= bound), INF)
        prefix = f"{view}{SEPARATOR}{method}{SEPARATOR}"
        with self._lock:
            self._counts[prefix + bucket] += 1
            self._sums[prefix + "sum"] += seconds
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_forever, name="metrics-http-flush", daemon=True)
                self._flusher.start()

    def flush(self, client: redis.Redis | None = None) -> None:
        """Add what this process counted to Redis; on failure it is kept for the next try."""
        with self._lock:
            counts, sums = self._counts, self._sums
            self._counts, self._sums = defaultdict(int), defaultdict(float)
        if not counts:
            return
        try:
            pipe = (client or shared_redis()).pipeline(transaction=False)
            for field, count in counts.items():
                pipe.hincrby(KEY, field, count)
            for field, seconds in sums.items():
                pipe.hincrbyfloat(KEY, field, seconds)
            pipe.execute()
        except redis.RedisError:
            with self._lock:  # put them back: counted once Redis answers again
                for field, count in counts.items():
                    self._counts[field] += count
                for field, seconds in sums.items():
                    self._sums[field] += seconds
            raise

    def _flush_forever(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            try:
                self.flush()
            except redis.RedisError as exc:
                logger.warning("metrics: HTTP latencies kept in this process until Redis answers (%s)", exc)
            except Exception:
                logger.exception("metrics: flushing HTTP latencies failed; trying again")


recorder = LatencyRecorder()


def read_latencies(client: redis.Redis) -> dict[tuple[str, str], tuple[dict[str, int], float]]:
    """Per (view, method): requests per bucket (not cumulative) and the seconds they took."""
    series: dict[tuple[str, str], tuple[dict[str, int], float]] = {}
    # Replies are bytes (connection.py's clients do not decode); redis-py types them bytes | str.
    held = cast(dict[bytes, bytes], client.hgetall(KEY))
    for raw_field, raw_value in held.items():
        view, method, bucket = raw_field.decode().rsplit(SEPARATOR, 2)
        buckets, seconds = series.get((view, method), ({}, 0.0))
        if bucket == "sum":
            seconds = float(raw_value)
        else:
            buckets[bucket] = int(raw_value)
        series[(view, method)] = (buckets, seconds)
    return series


def view_label(request: HttpRequest) -> str:
    """The URL pattern's name (or the view's dotted path): a small, fixed set of labels."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED
    return match.view_name or match._func_path


def method_label(request: HttpRequest) -> str:
    method = request.method or ""
    return method if method in METHODS else "OTHER"


@sync_and_async_middleware
def request_latency(get_response: Callable) -> Callable:
    """Times every request Django answers, first in MIDDLEWARE so the time includes the others."""
    if iscoroutinefunction(get_response):

        async def timed_async(request: HttpRequest) -> HttpResponse:
            started = time.perf_counter()
            response = await get_response(request)
            recorder.observe(view_label(request), method_label(request), time.perf_counter() - started)
            return response

        return timed_async

    def timed(request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = get_response(request)
        recorder.observe(view_label(request), method_label(request), time.perf_counter() - started)
        return response

    return timed
