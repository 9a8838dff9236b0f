"""`python manage.py events status [--json]` and `python manage.py events replay-dead`."""

import json
from typing import Any

import redis
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ridehail.events.connection import worker_redis
from ridehail.events.status import events_status, replay_dead_letters


class Command(BaseCommand):
    help = "Inspect the event channel, stream, consumer groups and outbox; replay dead letters."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        status = actions.add_parser("status", help="subscribers, stream length, groups, pending, lag, outbox")
        status.add_argument("--json", action="store_true", help="machine-readable output")
        replay = actions.add_parser("replay-dead", help="move dead letters back onto the stream")
        replay.add_argument("--limit", type=int, help="at most this many")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        client = worker_redis()
        try:
            if action == "status":
                self._status(client, as_json=options["json"])
            else:
                moved = replay_dead_letters(client, limit=options["limit"])
                self.stdout.write(f"{moved} dead letter(s) moved back onto the stream.")
        except redis.ConnectionError as exc:
            raise CommandError(f"Redis is not reachable: {exc}") from None

    def _status(self, client: redis.Redis, *, as_json: bool) -> None:
        status = events_status(client)
        if as_json:
            self.stdout.write(json.dumps(status, indent=2))
            return
        channel, stream = status["channel"], status["stream"]
        self.stdout.write(f"channel  {channel['name']}: {channel['subscribers']} subscriber(s)")
        self.stdout.write(f"stream   {stream['name']}: {stream['length']} entries")
        for group in stream["groups"]:
            self.stdout.write(
                f"  group {group['name']}: pending {group['pending']}, lag {group['lag']}, "
                f"{len(group['consumers'])} consumer(s)"
            )
            for consumer in group["consumers"]:
                self.stdout.write(
                    f"    {consumer['name']}: pending {consumer['pending']}, idle {consumer['idle_ms'] / 1000:.1f}s"
                )
        self.stdout.write(f"dead     {status['dead_letters']['name']}: {status['dead_letters']['length']} entries")
        outbox = status["outbox"]
        age = f", oldest {outbox['oldest_pending_age_s']}s" if outbox["pending"] else ""
        self.stdout.write(f"outbox   {outbox['pending']} event(s) waiting to be published{age}")
