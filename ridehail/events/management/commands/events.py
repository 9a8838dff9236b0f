"""`python manage.py events status|dead-letters|replay-dead [--topic T] [--json]`, `events alive NAME`;
`events replay --topic T --group G --from <entry id | RFC 3339 time | start>`."""

import json
import socket
from typing import Any

import redis
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import Error as DatabaseError

from ridehail.events import offsets
from ridehail.events.connection import worker_redis
from ridehail.events.heartbeat import PROCESS_FIELDS, alive_workers
from ridehail.events.status import dead_letters, outbox_status, replay_dead_letters, topic_status
from ridehail.events.topic import Topic, declared_topics, get_topic


class Command(BaseCommand):
    help = "Inspect every topic's channel, stream, consumer groups and dead letters, and the outbox."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        status = actions.add_parser("status", help="per topic: subscribers, stream, groups, dead letters; the outbox")
        status.add_argument("--json", action="store_true", help="machine-readable output")
        letters = actions.add_parser("dead-letters", help="list dead letters: id, group, deliveries, error, event")
        letters.add_argument("--topic", help="only this topic")
        letters.add_argument("--json", action="store_true", help="machine-readable output")
        replay = actions.add_parser("replay-dead", help="put each dead letter back on its stream, once")
        replay.add_argument("--topic", help="only this topic")
        alive = actions.add_parser(
            "alive", help="exit 0 if a process of this worker on this host beat recently (a container's healthcheck)"
        )
        alive.add_argument("name", help="the worker: rides, locations")
        alive.add_argument("--any-host", action="store_true", help="a live process on any host will do")
        rewind = actions.add_parser("replay", help="move a consumer group back: its workers process again from there")
        rewind.add_argument("--topic", required=True, help="a durable topic")
        rewind.add_argument("--group", required=True, help="the consumer group (rides, locations, ...)")
        rewind.add_argument(
            "--from",
            dest="start",
            required=True,
            help="an entry id, an RFC 3339 time, or `start` (creates a new group)",
        )

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        client = worker_redis(timeout=5.0)
        if action == "replay":
            self._replay(client, options["topic"], options["group"], options["start"])
            return
        if action == "status":
            self._status(client, as_json=options["json"])
            return
        if action == "alive":
            self._alive(client, options["name"], host=None if options["any_host"] else socket.gethostname())
            return
        try:
            if action == "dead-letters":
                self._dead_letters(client, self._topics(options["topic"]), as_json=options["json"])
            else:
                for topic in self._topics(options["topic"]):
                    replayed = replay_dead_letters(client, topic)
                    self.stdout.write(f"{topic.name}: {replayed} dead letter(s) put back on {topic.stream}.")
        except redis.RedisError as exc:
            raise CommandError(f"Redis is not reachable: {exc}") from None

    def _replay(self, client: redis.Redis, topic_name: str, group: str, start: str) -> None:
        try:
            topic = get_topic(topic_name)
            replayed = offsets.replay(client, topic, group, start)
        except KeyError as exc:
            raise CommandError(exc.args[0]) from None
        except offsets.ReplayError as exc:
            raise CommandError(str(exc)) from None
        except redis.RedisError as exc:
            raise CommandError(f"Redis is not reachable: {exc}") from None
        made = "created at the start of" if replayed.created else "moved back on"
        lag = "an unknown number of" if replayed.lag is None else str(replayed.lag)
        self.stdout.write(
            f"group {group} {made} {topic.stream} (after {replayed.cursor}): {lag} entries to process again."
        )

    def _topics(self, name: str | None) -> list[Topic]:
        durable = [topic for topic in declared_topics() if topic.durable]
        if name is None:
            return durable
        chosen = [topic for topic in durable if topic.name == name]
        if not chosen:
            raise CommandError(f"unknown durable topic {name!r}; choose from: {', '.join(t.name for t in durable)}")
        return chosen

    def _status(self, client: redis.Redis, *, as_json: bool) -> None:
        # Each of the database and Redis reports what it knows whether or not the other answers:
        # an outage is when the on-call person needs these figures most.
        status: dict[str, Any] = {"outbox": None, "database": "ok", "redis": "ok", "topics": [], "workers": []}
        try:
            status["outbox"] = outbox_status()
        except DatabaseError as exc:
            status["database"] = f"unreachable: {str(exc).strip() or type(exc).__name__}"
        try:
            status["topics"] = [topic_status(client, topic) for topic in declared_topics()]
            status["workers"] = alive_workers(client)
        except redis.RedisError as exc:
            status["redis"] = f"unreachable: {exc}"
        if as_json:
            self.stdout.write(json.dumps(status, indent=2))
        else:
            self._print_status(status)
        names = {"database": "The database", "redis": "Redis"}
        failed = [f"{names[name]} is {status[name]}" for name in names if status[name] != "ok"]
        if failed:
            # What the other one knows is printed above; the exit code says the rest is missing.
            raise CommandError("; ".join(failed), returncode=1)

    def _print_status(self, status: dict[str, Any]) -> None:
        for topic in status["topics"]:
            channel = topic["channel"]
            kind = "durable" if topic["durable"] else "live only"
            self.stdout.write(f"{topic['name']} ({kind})")
            self.stdout.write(f"  channel  {channel['name']}: {channel['subscribers']} subscriber(s)")
            if not topic["durable"]:
                continue
            stream = topic["stream"]
            self.stdout.write(f"  stream   {stream['name']}: {stream['length']} entries")
            for group in stream["groups"]:
                self.stdout.write(
                    f"    group {group['name']}: pending {group['pending']}, lag {group['lag']}, "
                    f"{len(group['consumers'])} consumer(s)"
                )
                for consumer in group["consumers"]:
                    self.stdout.write(
                        f"      {consumer['name']}: pending {consumer['pending']}, "
                        f"idle {consumer['idle_ms'] / 1000:.1f}s"
                    )
            dead = topic["dead_letters"]
            self.stdout.write(f"  dead     {dead['name']}: {dead['length']} entries")
        self._print_workers(status["workers"])
        if status["redis"] != "ok":
            self.stdout.write(f"Redis is {status['redis']}")
        outbox = status["outbox"]
        if outbox is None:
            self.stdout.write(f"The database is {status['database']} (the outbox backlog is not known)")
            return
        age = f", oldest {outbox['oldest_pending_age_s']}s" if outbox["pending"] else ""
        self.stdout.write(f"outbox   {outbox['pending']} event(s) waiting to be published{age}")

    def _print_workers(self, workers: list[dict[str, Any]]) -> None:
        self.stdout.write(f"workers  {len(workers)} process(es) alive")
        for worker in workers:
            self.stdout.write(
                f"  {worker['name']} ({worker['transport']}) on {worker['host']}/{worker['pid']}: "
                f"last seen {worker['last_seen_s']:.1f}s ago, started {worker['started']}"
            )
            # What the process's handlers report besides (Handler.heartbeat: the matcher's last batch).
            for field, value in worker.items():
                if field not in PROCESS_FIELDS:
                    self.stdout.write(f"    {field}: {json.dumps(value, sort_keys=True)}")

    def _alive(self, client: redis.Redis, name: str, *, host: str | None) -> None:
        try:
            mine = [w for w in alive_workers(client) if w["name"] == name and host in (None, w["host"])]
        except redis.RedisError as exc:
            raise CommandError(f"Redis is not reachable: {exc}", returncode=1) from None
        if not mine:
            where = f" on {host}" if host else ""
            raise CommandError(f"no live {name} worker{where}", returncode=1)
        for worker in mine:
            self.stdout.write(
                f"{name} is alive on {worker['host']}/{worker['pid']}, last seen {worker['last_seen_s']}s ago"
            )

    def _dead_letters(self, client: redis.Redis, topics: list[Topic], *, as_json: bool) -> None:
        letters = [letter for topic in topics for letter in dead_letters(client, topic)]
        if as_json:
            self.stdout.write(json.dumps(letters, indent=2))
            return
        if not letters:
            self.stdout.write("No dead letters.")
        for letter in letters:
            self.stdout.write(
                f"{letter['topic']} {letter['id']} (entry {letter['entry_id']}, group {letter['group']}, "
                f"{letter['deliveries']} deliveries): {letter['error']}\n  {json.dumps(letter['event'])}"
            )
