"""Publish path on a Redis Cluster: the project's publish (the publish-once script: mark, XADD,
SPUBLISH and the topic's counter, one round trip) through redis-py's cluster client, against
the same publish through a plain client on a single Redis, alternating rounds in one process.
Both servers are started here the same way (tests/cluster.py: 3 masters + 3 replicas).

    .venv/bin/python -m bench.publish_cluster [--events 10000] [--rounds 3]
"""

import time

import redis

from bench.common import PrivateRedis, median, temp_sqlite_url
from bench.django_env import setup_django
from bench.publish import status_events
from bench.report import Progress, Section, Target, cli, markdown_table, progress

COMMAND = ".venv/bin/python -m bench.publish_cluster"


def project_rate(client: redis.Redis, events: list, *, cluster: bool) -> float:
    from django.conf import settings

    from ridehail.events.publisher import publish_once
    from users.events import DRIVER_STATUS

    settings.REDIS_CLUSTER = cluster  # read at every call: PUBLISH or SPUBLISH
    first, *rest = events
    publish_once(client, topic=DRIVER_STATUS, key=first.key, version=first.version, payload=first.to_json())  # load
    started = time.perf_counter()
    for event in rest:
        publish_once(client, topic=DRIVER_STATUS, key=event.key, version=event.version, payload=event.to_json())
    return len(rest) / (time.perf_counter() - started)


def run(
    *, full: bool = False, events: int | None = None, rounds: int | None = None, report: Progress = progress
) -> Section:
    events = events or (50_000 if full else 10_000)
    rounds = rounds or (5 if full else 3)
    from tests.cluster import LocalCluster

    cluster = LocalCluster().start()
    try:
        with PrivateRedis() as private_redis:
            setup_django(temp_sqlite_url(), private_redis.url)
            from django.conf import settings

            from ridehail.events.connection import redis_from_url

            clients = {}
            for name, url, on_cluster in (("single", private_redis.url, False), ("cluster", cluster.url, True)):
                settings.REDIS_CLUSTER = on_cluster
                clients[name] = redis_from_url(url)
            results: dict[str, list[float]] = {"single": [], "cluster": []}
            for round_number in range(1, rounds + 1):
                for name in ("single", "cluster"):
                    results[name].append(project_rate(clients[name], status_events(events), cluster=name == "cluster"))
                report(
                    f"publish on a cluster: round {round_number}/{rounds}: single {results['single'][-1]:,.0f}/s, "
                    f"cluster {results['cluster'][-1]:,.0f}/s"
                )
    finally:
        cluster.stop()
    single, on_cluster = median(results["single"]), median(results["cluster"])
    ratio = on_cluster / single
    table = markdown_table(
        ["publish path (one process, sequential)", "events/s (median)", "ratio", "target"],
        [
            ["through redis-py's cluster client, SPUBLISH", f"{on_cluster:,.0f}", f"{ratio:.2f}", "≥ 0.5"],
            ["through a plain client on a single Redis, PUBLISH", f"{single:,.0f}", "1.00", ""],
        ],
    )
    return Section(
        title="Publish path on a Redis Cluster",
        command=f"{COMMAND} --events {events} --rounds {rounds}",
        table=table,
        notes=(
            "One round trip each way; the cluster client adds its routing (the key's slot, computed "
            "twice per call by redis-py, and the node's pool) on the client side."
        ),
        targets=[Target("publish path, cluster ÷ single Redis", ratio, "≥ 0.5", ratio >= 0.5)],
    )


if __name__ == "__main__":
    cli(run, __doc__, {"events": int, "rounds": int})
