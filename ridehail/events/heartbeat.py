"""Which worker processes are alive: each keeps a key fresh on its command connection.

    ridehail:worker:<name>:<host>:<pid>   JSON {name, transport, host, pid, started, ...what its handlers
                                          report (Handler.heartbeat: the matcher's last batch)}, expires
                                          after TTL_SECONDS
    ridehail:workers                      sorted set of those ids (score: last beat, for pruning), so a
                                          reader finds them without SCANning the keyspace

A process beats every BEAT_SECONDS, but only while each of its read loops keeps coming round
(a loop stuck for STALL_SECONDS stops the beats): the key then expires and the process is no
longer alive to `events status`, the dashboard or the compose healthcheck (`events alive`).
Alive means "its key has not expired", judged by Redis's clock, never by comparing hosts' clocks.
A clean stop removes the key at once.
"""

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import redis

BEAT_SECONDS = 5.0
TTL_SECONDS = 3 * BEAT_SECONDS  # two beats may be missed (a busy Redis) before a process counts as gone
STALL_SECONDS = 60.0  # a read loop that has not come round for this long is hung, not busy
INDEX = "ridehail:workers"
KEY_PREFIX = "ridehail:worker:"
FORGET_AFTER_SECONDS = 3600.0  # ids of processes gone this long leave the index
# What every beat says of its process (alive_workers adds last_seen_s); the rest is its handlers' report.
PROCESS_FIELDS = frozenset({"name", "transport", "host", "pid", "started", "last_seen_s"})

logger = logging.getLogger(__name__)


def process_id(name: str, host: str, pid: int) -> str:
    return f"{name}:{host}:{pid}"


def beat(client: redis.Redis, info: dict[str, Any]) -> None:
    """Say that this process is alive for another TTL_SECONDS, in one round trip."""
    member = process_id(info["name"], info["host"], info["pid"])
    now = time.time()
    pipe = client.pipeline(transaction=False)
    pipe.set(KEY_PREFIX + member, json.dumps(info), ex=int(TTL_SECONDS))
    pipe.zadd(INDEX, {member: now})
    pipe.zremrangebyscore(INDEX, "-inf", now - FORGET_AFTER_SECONDS)
    pipe.execute()


def forget(client: redis.Redis, info: dict[str, Any]) -> None:
    member = process_id(info["name"], info["host"], info["pid"])
    pipe = client.pipeline(transaction=False)
    pipe.delete(KEY_PREFIX + member)
    pipe.zrem(INDEX, member)
    pipe.execute()


def alive_workers(client: redis.Redis) -> list[dict[str, Any]]:
    """Every live worker process, by name then host and pid, with `last_seen_s`: seconds since its last beat."""
    # Replies are bytes (connection.py's clients never decode); redis-py's types allow str too.
    members = [member.decode() for member in cast(list[bytes], client.zrange(INDEX, 0, -1))]
    if not members:
        return []
    pipe = client.pipeline(transaction=False)
    for member in members:
        pipe.get(KEY_PREFIX + member)
        pipe.pttl(KEY_PREFIX + member)
    answers = pipe.execute()
    workers = []
    for raw, pttl in zip(answers[::2], answers[1::2], strict=True):
        if raw is None or pttl < 0:
            continue  # expired: the process stopped beating
        try:
            info = json.loads(raw)
        except ValueError:
            continue
        info["last_seen_s"] = round(max(0.0, TTL_SECONDS - pttl / 1000), 1)
        workers.append(info)
    return sorted(workers, key=lambda info: (info["name"], info["host"], info["pid"]))


class HeartbeatThread(threading.Thread):
    """Beats for this worker process until `stop` is set, then removes its key."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        name: str,
        transport: str,
        stop: threading.Event,
        turned_at: Callable[[], list[float]],
        report: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        super().__init__(name=f"{name}:heartbeat", daemon=True)
        self.client = client
        self.stop = stop
        self.turned_at = turned_at  # when each read loop last came round (time.monotonic())
        self.report = report  # what the process's handlers add to each beat
        self.info = {
            "name": name,
            "transport": transport,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    def run(self) -> None:
        delay = 0.0
        while not self.stop.wait(delay):
            delay = BEAT_SECONDS
            since = max((time.monotonic() - turned for turned in self.turned_at()), default=0.0)
            if since > STALL_SECONDS:
                logger.warning("a read loop has not come round for %.0fs: not reporting alive", since)
                continue
            try:
                beat(self.client, {**self._reported(), **self.info})
            except redis.RedisError as exc:
                logger.warning("heartbeat failed (%s); trying again in %.0fs", exc, delay)
        try:
            forget(self.client, self.info)
        except redis.RedisError:
            pass  # the key expires by itself

    def _reported(self) -> dict[str, Any]:
        """The handlers' report; a bug in one costs the report, never the beat (the process is alive)."""
        try:
            return self.report()
        except Exception:
            logger.exception("a handler's heartbeat report failed; beating without it")
            return {}
