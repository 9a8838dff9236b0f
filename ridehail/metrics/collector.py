"""What `/metrics` reports, read at scrape time from Redis and the database.

A custom collector rather than counters and gauges kept in memory: the web server runs
several processes (uvicorn `--workers`) and each worker is a process of its own, and a
gauge set in one of them would be whatever the process that happened to answer last saw.
Read from the shared sources at scrape time, every process gives the same answer. Counters
that only a moment can see (events published, handled; request latency) are added up in
Redis by whoever sees them (ridehail/events/metrics.py, ridehail/metrics/http.py).

With Redis down the database's series are still reported and `ridehail_redis_up` is 0;
`ridehail_channel_layer_up` says the same of the channel layer's Redis (RIDEHAIL_CHANNEL_LAYER_URL).
"""

import logging
from collections.abc import Iterator

import redis
from django.conf import settings
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ridehail.dashboard.session_sockets import open_dashboard_sockets
from ridehail.events import metrics as event_metrics
from ridehail.events.connection import quick_redis
from ridehail.events.status import outbox_status, topic_status
from ridehail.events.topic import declared_topics
from ridehail.health import channel_layer_problem
from ridehail.metrics import http
from rides.selectors import assignment_latency_histogram, rides_by_status

logger = logging.getLogger(__name__)

ASSIGNMENT_BUCKETS = [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0]


class RidehailCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from self._database()
        client = quick_redis(settings.REDIS_URL, timeout=2.0)
        try:
            http.recorder.flush(client)  # this process's latest requests, before reading everyone's
            redis_series = list(self._redis(client))
        except redis.RedisError as exc:
            logger.warning("metrics: Redis is unreachable (%s); reporting the database's series only", exc)
            redis_series = []
        yield GaugeMetricFamily("ridehail_redis_up", "1 if Redis answered this scrape", value=1 if redis_series else 0)
        # Beside a cluster the channel layer has a Redis of its own; /readyz only calls it degraded.
        layer_up = not channel_layer_problem(timeout=2.0)
        yield GaugeMetricFamily(
            "ridehail_channel_layer_up", "1 if the channel layer's Redis answered this scrape", value=int(layer_up)
        )
        yield from redis_series

    def _database(self) -> Iterator[Metric]:
        outbox = outbox_status()
        yield GaugeMetricFamily("ridehail_outbox_backlog", "Outbox events not yet published", value=outbox["pending"])
        yield GaugeMetricFamily(
            "ridehail_outbox_oldest_pending_age_seconds",
            "Age of the oldest unpublished outbox event (0 when none)",
            value=outbox["oldest_pending_age_s"] or 0,
        )
        rides = GaugeMetricFamily("ridehail_rides", "Rides by status", labels=["status"])
        for status, count in rides_by_status().items():
            rides.add_metric([status], count)
        yield rides
        cumulative, total, seconds = assignment_latency_histogram(ASSIGNMENT_BUCKETS)
        yield HistogramMetricFamily(
            "ridehail_ride_assignment_seconds",
            "Seconds from a ride's request to its assignment, over every ride ever assigned",
            buckets=[*zip(map(str, ASSIGNMENT_BUCKETS), cumulative, strict=True), ("+Inf", total)],
            sum_value=seconds,
        )

    def _redis(self, client: redis.Redis) -> Iterator[Metric]:
        yield from self._topics(client)
        yield from self._worker_counters(client)
        yield GaugeMetricFamily(
            "ridehail_dashboard_connections",
            "Dashboard websockets open, in every web process",
            value=open_dashboard_sockets(client),
        )
        yield self._http_latency(client)

    def _topics(self, client: redis.Redis) -> Iterator[Metric]:
        topics = declared_topics()
        published = event_metrics.read_published(client, [topic.name for topic in topics])
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "published": CounterMetricFamily(
                "ridehail_events_published", "Events that went out on Redis, per topic", labels=["topic"]
            ),
            "subscribers": GaugeMetricFamily(
                "ridehail_channel_subscribers", "Pub/Sub subscribers of the topic's channel", labels=["topic"]
            ),
            "length": GaugeMetricFamily("ridehail_stream_length", "Entries in the topic's stream", labels=["topic"]),
            "lag": GaugeMetricFamily(
                "ridehail_stream_group_lag", "Entries the group has not read yet", labels=["topic", "group"]
            ),
            "pending": GaugeMetricFamily(
                "ridehail_stream_group_pending", "Entries read but not acknowledged", labels=["topic", "group"]
            ),
            "consumers": GaugeMetricFamily(
                "ridehail_stream_group_consumers", "Consumers in the group", labels=["topic", "group"]
            ),
            "dead": GaugeMetricFamily("ridehail_dead_letters", "Entries in the dead-letter stream", labels=["topic"]),
        }
        for topic in topics:
            status = topic_status(client, topic)
            families["published"].add_metric([topic.name], published.get(topic.name, 0))
            families["subscribers"].add_metric([topic.name], status["channel"]["subscribers"])
            if not topic.durable:
                continue
            families["length"].add_metric([topic.name], status["stream"]["length"])
            families["dead"].add_metric([topic.name], status["dead_letters"]["length"])
            for group in status["stream"]["groups"]:
                labels = [topic.name, group["name"]]
                families["lag"].add_metric(labels, group["lag"] if group["lag"] is not None else float("nan"))
                families["pending"].add_metric(labels, group["pending"])
                families["consumers"].add_metric(labels, len(group["consumers"]))
        yield from families.values()

    def _worker_counters(self, client: redis.Redis) -> Iterator[Metric]:
        for failed, name, what in [
            (False, "ridehail_events_handled", "Events a worker's handler finished"),
            (True, "ridehail_events_failed", "Events whose handling raised (retried, or dropped on Pub/Sub)"),
        ]:
            family = CounterMetricFamily(name, what, labels=["worker", "topic"])
            for (worker, topic), count in sorted(event_metrics.read_handled(client, failed=failed).items()):
                family.add_metric([worker, topic], count)
            yield family

    def _http_latency(self, client: redis.Redis) -> Metric:
        family = HistogramMetricFamily(
            "ridehail_http_request_duration_seconds",
            "Time Django took to answer, by view (URL name) and method",
            labels=["view", "method"],
        )
        for (view, method), (counts, seconds) in sorted(http.read_latencies(client).items()):
            running, buckets = 0, []
            for bound in [*map(str, http.BUCKETS), http.INF]:
                running += counts.get(bound, 0)
                buckets.append((bound, running))
            family.add_metric([view, method], buckets, seconds)
        return family


def registry() -> CollectorRegistry:
    """A registry of our own: the default one adds this process's CPU and memory, which would
    describe whichever web process answered, not the deployment."""
    ours = CollectorRegistry(auto_describe=False)
    ours.register(RidehailCollector())
    return ours
