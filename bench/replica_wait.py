"""What waiting for a replica costs per event: the request's publish path (publisher.on_replicas:
the publish script, then WAIT for one replica and ROLE, in one pipeline on one connection)
against a Redis with one replica and against one without, and the bare publish script (one
EVALSHA, no WAIT, no ROLE) as the anchor; one process, sequential, alternating rounds.

    .venv/bin/python -m bench.replica_wait [--events 5000] [--rounds 3]
"""

import time
from functools import partial

import redis

from bench.common import PrivateRedis, median, temp_sqlite_url, wait_until
from bench.django_env import setup_django
from bench.publish import project_rate as script_rate
from bench.publish import status_events
from bench.report import Progress, Section, cli, markdown_table, progress

COMMAND = ".venv/bin/python -m bench.replica_wait"


UNCONFIRMED: list[int] = []  # events whose WAIT ran out its bound (the replica was too slow)


def path_rate(client: redis.Redis, events: list, *, expect: str) -> float:
    """The request's path (publisher._publish_after_commit without the database): every event
    must go out, and come back as `expect` says, or the figure would measure something else; a
    WAIT that runs out its bound on a loaded machine is counted, not fatal."""
    from ridehail.events.publisher import PUBLISHED, node_of, on_replicas, publish_once
    from users.events import DRIVER_STATUS

    node = node_of(client, DRIVER_STATUS.stream)
    started = time.perf_counter()
    for event in events:
        add = partial(publish_once, topic=DRIVER_STATUS, key=event.key, version=event.version, payload=event.to_json())
        [result], replicated = on_replicas(node, partial(add, in_order=True))
        if replicated.name == "NOT_CONFIRMED" and expect == "YES":
            UNCONFIRMED.append(1)
        elif result != PUBLISHED or replicated.name != expect:
            raise AssertionError(f"{result} {replicated}: not the path being measured")
    return len(events) / (time.perf_counter() - started)


def run(
    *, full: bool = False, events: int | None = None, rounds: int | None = None, report: Progress = progress
) -> Section:
    events = events or (20_000 if full else 5_000)
    rounds = rounds or (5 if full else 3)
    with (
        PrivateRedis() as alone,
        PrivateRedis("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0") as master,
        PrivateRedis("--replicaof", "127.0.0.1", str(master.port)),
    ):
        wait_until(lambda: master.client.info("replication").get("connected_slaves") == 1, timeout=15)
        setup_django(temp_sqlite_url(), alone.url)
        from ridehail.events.connection import worker_redis

        without = worker_redis()
        with_replica = redis.Redis.from_url(master.url, socket_timeout=10)
        results: dict[str, list[float]] = {"script": [], "no replica": [], "replica": []}
        for round_number in range(1, rounds + 1):
            without.flushall()
            with_replica.flushall()
            results["script"].append(script_rate(without, status_events(events)))
            without.flushall()
            results["no replica"].append(path_rate(without, status_events(events), expect="NO_REPLICA"))
            results["replica"].append(path_rate(with_replica, status_events(events), expect="YES"))
            report(
                f"replica_wait: round {round_number}/{rounds}: "
                + ", ".join(f"{name} {rates[-1]:,.0f}/s" for name, rates in results.items())
            )
    script, alone_rate, replica = (median(results[name]) for name in ("script", "no replica", "replica"))
    # Ratios within each round, then their median: the machine's load changes between rounds.
    waiting = median([r / n for r, n in zip(results["replica"], results["no replica"], strict=True)])
    role = median([n / s for n, s in zip(results["no replica"], results["script"], strict=True)])
    table = markdown_table(
        ["publish path (one connection, sequential)", "events/s (median)", "µs/event", "÷ bare script (per round)"],
        [
            ["bare publish script (one EVALSHA), the anchor", f"{script:,.0f}", f"{1e6 / script:.0f}", "1.00"],
            [
                "request's path, no replica: [script, ROLE]",
                f"{alone_rate:,.0f}",
                f"{1e6 / alone_rate:.0f}",
                f"{role:.2f}",
            ],
            [
                "request's path, one replica: [script, WAIT 1, ROLE]",
                f"{replica:,.0f}",
                f"{1e6 / replica:.0f}",
                f"{role * waiting:.2f}",
            ],
        ],
    )
    return Section(
        title="Waiting for a replica",
        command=f"{COMMAND} --events {events} --rounds {rounds}",
        table=table,
        notes=(
            f"Waiting for a replica costs {1e6 / replica - 1e6 / alone_rate:.0f} µs per event on one connection "
            f"(medians); with a replica the path runs at {waiting:.2f} of its rate without one (median of "
            "the rounds' ratios): the replica's round trip to acknowledge the entry. Ratios are taken "
            "within each round, as the machine's load changes between rounds. Master, replica and client "
            f"share the machine's two cores. {len(UNCONFIRMED)} of {events * rounds} WAITs ran out their "
            "bound (the replica acknowledged later): those rows would have stayed pending for the relay."
        ),
        targets=[],
    )


if __name__ == "__main__":
    cli(run, __doc__, {"events": int, "rounds": int})
