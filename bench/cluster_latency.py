"""Status change → worker applied on a Redis Cluster, against the same path on a single Redis,
alternating rounds in one invocation (issue #24: cluster p99 ÷ single p99 ≤ 1.5).

The measured path is bench/latency.py's: this process changes driver statuses through the
service (`set_driver_availability`: SQLite, outbox, publish after commit) 200 times a second;
the rides worker (PubSubRunner, bench/latency_worker.py), a process of its own, records when
each version is applied. On the cluster (tests/cluster.py: 3 masters + 3 replicas) both sides
run with REDIS_CLUSTER=1: the publish is the script plus SPUBLISH on the stream's master, then a
WAIT for one of its replicas; the worker SSUBSCRIBEs. The single Redis has no replica, so its
publish sends no WAIT: that wait is part of what the cluster costs here.

    .venv/bin/python -m bench.cluster_latency [--seconds 10] [--rounds 3]
"""

from bench.common import PrivateRedis, median, percentile, temp_sqlite_url
from bench.django_env import setup_django
from bench.latency import RATE, project_latencies
from bench.report import Progress, Section, Target, cli, markdown_table, progress

COMMAND = ".venv/bin/python -m bench.cluster_latency"
TARGET = 1.5


def use_redis(url: str, *, cluster: bool) -> None:
    """Point this process's publisher at `url`: the settings it reads, and a new shared client."""
    from django.conf import settings

    from ridehail.events.connection import shared_redis

    settings.REDIS_URL, settings.REDIS_CLUSTER = url, cluster  # REDIS_CLUSTER is read at every call
    shared_redis.cache_clear()


def run(
    *, full: bool = False, seconds: float | None = None, rounds: int | None = None, report: Progress = progress
) -> Section:
    seconds = seconds or (30 if full else 10)
    rounds = rounds or 3
    from tests.cluster import LocalCluster

    results: dict[str, list[tuple[float, float]]] = {"single": [], "cluster": []}
    cluster = LocalCluster().start()
    try:
        with PrivateRedis() as private_redis:
            database_url = temp_sqlite_url()
            setup_django(database_url, private_redis.url)
            targets = {
                "single": (private_redis.url, {"REDIS_CLUSTER": "0"}),
                # channels-redis cannot use a cluster: the worker's channel layer is the single Redis.
                "cluster": (cluster.url, {"REDIS_CLUSTER": "1", "RIDEHAIL_CHANNEL_LAYER_URL": private_redis.url}),
            }
            for round_number in range(1, rounds + 1):
                # Alternating which goes first, so neither always follows the other's leftovers.
                order = ("single", "cluster") if round_number % 2 else ("cluster", "single")
                for name in order:
                    url, env = targets[name]
                    use_redis(url, cluster=name == "cluster")
                    latencies = project_latencies(database_url, url, seconds, env=env)
                    results[name].append((percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000))
                    report(
                        f"cluster latency: round {round_number}/{rounds} {name}: p50 {results[name][-1][0]:.2f} ms, "
                        f"p99 {results[name][-1][1]:.2f} ms ({len(latencies)} events)"
                    )
    finally:
        cluster.stop()
    summary = {name: (median([r[0] for r in rows]), median([r[1] for r in rows])) for name, rows in results.items()}
    ratio = summary["cluster"][1] / summary["single"][1]
    table = markdown_table(
        [f"status change → rides worker applied, {RATE} events/s", "p50 ms", "p99 ms", "p99 ratio", "target"],
        [
            [
                "Redis Cluster, 3 masters + 3 replicas (SPUBLISH, WAIT for a replica, SSUBSCRIBE)",
                f"{summary['cluster'][0]:.2f}",
                f"{summary['cluster'][1]:.2f}",
                f"{ratio:.2f}",
                f"≤ {TARGET}",
            ],
            [
                "single Redis, no replica (PUBLISH, no WAIT, SUBSCRIBE)",
                f"{summary['single'][0]:.2f}",
                f"{summary['single'][1]:.2f}",
                "1.00",
                "",
            ],
        ],
    )
    return Section(
        title="Latency on a Redis Cluster: status change to worker applied",
        command=f"{COMMAND} --seconds {seconds:g} --rounds {rounds}",
        table=table,
        notes=(
            "bench/latency.py's path (the service in this process, the rides worker in its own), once on a "
            "single Redis and once on a local 3 + 3 cluster (tests/cluster.py) with REDIS_CLUSTER=1 on both "
            "sides, alternating rounds; medians of the rounds' p50 and p99. On the cluster the publish after "
            "commit also waits for a replica of the stream's master (`WAIT 1` in the same pipeline, "
            "ridehail/events/publisher.py `on_replicas`) before the request goes on: the worker receives the "
            "SPUBLISH before that WAIT returns, but the publisher's round trip is longer, and that wait is "
            "part of the cost measured. The single Redis has no replica, so it sends no WAIT."
        ),
        targets=[Target("status change → applied p99, cluster ÷ single Redis", ratio, f"≤ {TARGET}", ratio <= TARGET)],
    )


if __name__ == "__main__":
    cli(run, __doc__, {"seconds": float, "rounds": int})
