"""`make chaos`: a simulated city under a seeded random schedule of faults, then proof that nothing was lost.

It starts the whole system the way production runs it: PostgreSQL-backed web (`scripts/serve`,
two processes), two rides workers in one consumer group (driver status on the stream) and the
locations worker (on Pub/Sub), all talking to a private Redis and to PostgreSQL through TCP
proxies this harness controls; the simulator (`manage.py simulate`) drives a city through the
public API; two dashboards (websocket clients) stay open, reconnecting as the page does.
Meanwhile one fault at a time, with recovery gaps, from a schedule drawn from the seed:

    kill-worker    kill -9 of a worker, restarted after the fault's duration (as a supervisor would)
    kill-web       kill -9 of one web process (scripts/serve's supervisor starts another)
    redis-restart  Redis restarted empty
    flushall       FLUSHALL
    redis-pause    Redis frozen (SIGSTOP) for a few seconds
    db-cut         the PostgreSQL proxy cut for a few seconds
    redis-slow     every Redis reply delayed (proxy latency) for a few seconds
    forged         a burst of forged and malformed messages on every channel and stream

Then traffic stops, one RIDEHAIL_RESYNC_SECONDS is allowed for repair, and it checks, each as a
line with its figure: every outbox row on its stream at least once, in per-key version order,
second copies (possible only after Redis lost data) counted and each the very same event;
every ride the simulator got a 201 for ended (none stuck in `requested`), no driver ever held
two assigned rides at once (from the ride events' history), no ride got two drivers; every
worker's state equals the database, no consumer group has anything pending; every dashboard's
view equals the database; no 5xx outside fault windows and only 503s inside them. It exits 1
on any violation, and writes the schedule, the figures and every process's log to a folder.

Entries appended to the streams are archived as they appear (XRANGE from the harness, straight
to Redis, not through the proxy); a FLUSHALL or a restart first pauses writers (CLIENT PAUSE
WRITE) and archives what is left, so "on its stream at least once" is checked against every entry
the project ever wrote, not only those that survived the faults.

    .venv/bin/python -m tests.chaos [--seconds 300] [--seed N] [--max-faults N] [--out DIR]
    (CHAOS_SECONDS and CHAOS_SEED set the defaults; DATABASE_URL must name PostgreSQL's server)
"""

import argparse
import asyncio
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
import requests
import websockets

from tests.faults import TcpProxy
from tests.processes import ROOT, RedisServer, free_port, wait_until

FAULTS = ["kill-worker", "kill-web", "redis-restart", "flushall", "redis-pause", "db-cut", "redis-slow", "forged"]
WINDOWED = {"kill-worker": (3, 8), "redis-pause": (2, 5), "db-cut": (2, 5), "redis-slow": (3, 6)}
WARMUP, COOLDOWN, GAP = 15.0, 10.0, (10.0, 20.0)
# After a fault ends, requests may still fail for this long: PostgreSQL's pool reconnects, a
# killed web process is replaced, clients notice Redis is back.
GRACE = 8.0
RESYNC_SECONDS = 20.0
MATCH_TIMEOUT = 30.0
DURABLE_STREAMS = ["stream:{driver-status-changed}", "stream:{ride-status-changed}"]
CHANNELS = ["driver-status-changed", "ride-status-changed", "driver-location-updated"]
# Dropped and created afresh by every run: CHAOS_DATABASE names another so that runs side by side
# (several checkouts on one PostgreSQL) do not drop each other's.
DATABASE = os.environ.get("CHAOS_DATABASE", "ridehail_chaos")


@dataclass
class Fault:
    kind: str
    at: float  # seconds after traffic started
    duration: float
    started: float | None = None
    ended: float | None = None
    note: str = ""


def fault_schedule(seed: int, seconds: float, max_faults: int | None, kinds: list[str]) -> list[Fault]:
    rng = random.Random(seed)
    faults: list[Fault] = []
    at = WARMUP
    while max_faults is None or len(faults) < max_faults:
        kind = rng.choice(kinds)
        low, high = WINDOWED.get(kind, (0, 0))
        duration = round(rng.uniform(low, high), 1)
        if at + duration + COOLDOWN > seconds:
            break
        faults.append(Fault(kind, round(at, 1), duration))
        at += duration + rng.uniform(*GAP)
    return faults


# -- the processes -------------------------------------------------------------------------------


class Supervised:
    """A child process logging to a file in the run's folder, killed and restarted at will."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], folder: Path) -> None:
        self.name, self.args, self.env = name, args, env
        self.log = open(folder / f"{name}.log", "ab")
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> "Supervised":
        self.starts += 1
        self.log.write(f"\n=== chaos: start #{self.starts} {datetime.now(UTC):%H:%M:%S.%f}\n".encode())
        self.log.flush()
        self.process = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def children(self) -> list[int]:
        assert self.process is not None, f"{self.name} was never started"
        found = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in found.split()]


class Archive:
    """Every entry ever appended to the durable streams, read as they appear, straight from Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.entries: dict[str, list[tuple[bytes, dict]]] = {stream: [] for stream in DURABLE_STREAMS}
        self.last = {stream: b"0-0" for stream in DURABLE_STREAMS}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="archive", daemon=True)

    def _run(self) -> None:
        while not self.stopping.wait(0.2):
            try:
                with self.lock:
                    self.collect()
            except redis.RedisError:
                pass  # Redis paused or restarting: try again

    def collect(self, pipe: Any = None) -> None:
        """Read what is new (holding the lock); with `pipe`, only queue the reads on it (see `take`)."""
        target = pipe if pipe is not None else self.client.pipeline(transaction=False)
        for stream in DURABLE_STREAMS:
            target.xrange(stream, min=b"(" + self.last[stream])
        if pipe is not None:
            return
        self.take(target.execute())

    def take(self, results: list) -> None:
        for stream, entries in zip(DURABLE_STREAMS, results, strict=False):
            for entry_id, fields in entries:
                self.entries[stream].append((entry_id, fields))
                self.last[stream] = entry_id

    def reset_ids(self) -> None:
        """The streams start over (Redis emptied): ids may repeat from 0-0."""
        self.last = {stream: b"0-0" for stream in DURABLE_STREAMS}


class City:
    def __init__(self, folder: Path, database_url: str, *, drivers: int, riders: int) -> None:
        self.folder = folder
        self.drivers, self.riders = drivers, riders
        self.redis = RedisServer().start()
        self.direct = redis.Redis(port=self.redis.port, socket_timeout=10)
        self.redis_proxy = TcpProxy(self.redis.port).start()
        parts = urlsplit(database_url)
        self.database_direct = urlunsplit(parts._replace(path=f"/{DATABASE}"))
        self.db_proxy = TcpProxy(parts.port or 5432).start()
        password = f":{parts.password}" if parts.password else ""
        netloc = f"{parts.username or 'postgres'}{password}@127.0.0.1:{self.db_proxy.port}"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PYTHON": sys.executable,  # scripts/serve runs the project's interpreter
            "DATABASE_URL": urlunsplit(parts._replace(netloc=netloc, path=f"/{DATABASE}")),
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_proxy.port}/0",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "chaos-only-secret-key-not-for-production-0123456789abcdef",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PORT": str(self.port),
            "WEB_CONCURRENCY": "2",
            "RIDEHAIL_RESYNC_SECONDS": str(RESYNC_SECONDS),
            "RIDEHAIL_MATCH_TIMEOUT_SECONDS": str(MATCH_TIMEOUT),
            "RIDEHAIL_STREAM_MAXLEN": "10000000",
            "RIDEHAIL_THROTTLE_AUTH": "100000/minute",  # the simulator signs everyone up from one address
            "RIDEHAIL_DASHBOARD_SOCKETS_PER_SESSION": "100",
        }
        self.archive = Archive(self.direct)
        python = [sys.executable, "manage.py"]
        worker_args = ["--claim-idle", "5"]
        self.web = Supervised("web", ["scripts/serve"], self.env, folder)
        self.workers = {
            "rides-1": Supervised(
                "rides-1", [*python, "run_subscriber", "rides", "--transport", "stream", *worker_args], self.env, folder
            ),
            "rides-2": Supervised(
                "rides-2", [*python, "run_subscriber", "rides", "--transport", "stream", *worker_args], self.env, folder
            ),
            "locations": Supervised("locations", [*python, "run_subscriber", "locations"], self.env, folder),
        }

    # -- start and stop

    def start(self) -> None:
        self._fresh_database()
        self.archive.thread.start()
        self.web.start()
        wait_until(lambda: _ready(self.base_url), timeout=60, interval=0.5, what="the web server ready")
        for worker in self.workers.values():
            worker.start()

    def _fresh_database(self) -> None:
        server = urlunsplit(urlsplit(self.database_direct)._replace(path="/postgres"))
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {DATABASE}")
        env = {**self.env, "DATABASE_URL": self.database_direct}
        with open(self.folder / "migrate.log", "wb") as log:
            subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
            )

    def stop(self) -> None:
        for process in [*self.workers.values(), self.web]:
            process.stop()
        self.archive.stopping.set()
        self.redis_proxy.stop()
        self.db_proxy.stop()
        self.redis.stop()

    def online_drivers(self) -> int:
        with psycopg.connect(self.database_direct) as conn:
            online = conn.execute("SELECT count(*) FROM users_user WHERE role = 'driver' AND is_available").fetchone()
            return cast(tuple[int], online)[0]  # count(*) always answers one row

    # -- faults

    def inject(self, fault: Fault, rng: random.Random) -> None:
        getattr(self, "fault_" + fault.kind.replace("-", "_"))(fault, rng)

    def fault_kill_worker(self, fault: Fault, rng: random.Random) -> None:
        name = rng.choice(sorted(self.workers))
        fault.note = name
        self.workers[name].kill()
        time.sleep(fault.duration)
        self.workers[name].start()

    def fault_kill_web(self, fault: Fault, rng: random.Random) -> None:
        children = self.web.children()
        if not children:
            fault.note = "no web process to kill"
            return
        victim = rng.choice(children)
        fault.note = f"pid {victim}"
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(self.web.children()) == len(children), timeout=30, interval=0.2, what="web replaced")

    def fault_redis_restart(self, fault: Fault, rng: random.Random) -> None:
        with self.archive.lock:
            self._pause_writers_and_archive()
            assert self.redis.process is not None, "the city's Redis runs from the start"
            self.redis.process.kill()
            self.redis.process.wait(timeout=10)
            self.redis.start()
            self.archive.reset_ids()

    def fault_flushall(self, fault: Fault, rng: random.Random) -> None:
        # MULTI: what is left to archive and the FLUSHALL in one atomic step, no write in between.
        with self.archive.lock:
            pipe = self.direct.pipeline(transaction=True)
            self.archive.collect(pipe)
            pipe.flushall()
            self.archive.take(pipe.execute()[:-1])
            self.archive.reset_ids()

    def _pause_writers_and_archive(self) -> None:
        """Writers wait (CLIENT PAUSE WRITE; readers do not), and what they wrote is archived."""
        self.direct.client_pause(10_000, all=False)
        self.archive.collect()

    def fault_redis_pause(self, fault: Fault, rng: random.Random) -> None:
        assert self.redis.process is not None, "the city's Redis runs from the start"
        self.redis.process.send_signal(signal.SIGSTOP)
        time.sleep(fault.duration)
        self.redis.process.send_signal(signal.SIGCONT)

    def fault_db_cut(self, fault: Fault, rng: random.Random) -> None:
        self.db_proxy.cut()
        time.sleep(fault.duration)
        self.db_proxy.restore()

    def fault_redis_slow(self, fault: Fault, rng: random.Random) -> None:
        self.redis_proxy.delay = 0.05
        time.sleep(fault.duration)
        self.redis_proxy.delay = 0.0

    def fault_forged(self, fault: Fault, rng: random.Random) -> None:
        with psycopg.connect(self.database_direct) as conn:
            driver_ids = [
                str(row[0]) for row in conn.execute("SELECT id FROM users_user WHERE role = 'driver' LIMIT 20")
            ]
        forged = forged_messages(rng, driver_ids)
        pipe = self.direct.pipeline(transaction=False)
        for message in forged:
            for channel in CHANNELS:
                pipe.publish(channel, message)
            for stream in DURABLE_STREAMS:
                pipe.xadd(stream, {"event": message})
                pipe.xadd(stream, {"nonsense": message})
        pipe.execute()
        fault.note = f"{len(forged)} messages x {len(CHANNELS)} channels and {len(DURABLE_STREAMS)} streams"


def forged_messages(rng: random.Random, driver_ids: list[str]) -> list[bytes]:
    def now(offset: float = 0) -> str:
        return datetime.fromtimestamp(time.time() + offset, UTC).isoformat().replace("+00:00", "Z")

    someone = rng.choice(driver_ids) if driver_ids else str(uuid.uuid4())
    event_id = str(uuid.uuid4())
    messages: list[Any] = [
        b"not json",
        b"[" * 1000 + b"]" * 1000,
        b"{" * 1000,
        b"\xff\xfe",
        {"driverId": someone, "available": "yes", "timestamp": now(), "eventId": event_id, "version": 1},
        {
            "driverId": someone,
            "available": True,
            "timestamp": "9999-12-31T23:59:59-05:00",
            "eventId": event_id,
            "version": 1,
        },
        {
            "driverId": someone,
            "available": True,
            "timestamp": now(),
            "eventId": event_id,
            "version": 9223372036854775808,
        },
        # Valid in shape, forged in content: a real driver, a huge version. Pub/Sub cannot tell;
        # the next rebuild or reconciliation must undo it.
        {
            "driverId": someone,
            "available": rng.random() < 0.5,
            "timestamp": now(),
            "eventId": event_id,
            "version": 2**52,
        },
        {"driverId": str(uuid.uuid4()), "available": True, "timestamp": now(), "eventId": event_id, "version": 3},
        {"driverId": someone, "lat": 91, "lng": 0, "timestamp": now()},
        {"driverId": someone, "lat": 52.5, "lng": 13.4, "timestamp": now(3600)},
        {"driverId": str(uuid.uuid4()), "lat": 52.5, "lng": 13.4, "timestamp": now()},
        {"rideId": str(uuid.uuid4()), "status": "assigned", "version": 1},
    ]
    return [m if isinstance(m, bytes) else json.dumps(m).encode() for m in messages]


def _ready(base_url: str) -> bool:
    try:
        return requests.get(f"{base_url}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


# -- the dashboards -------------------------------------------------------------------------------


class Dashboard:
    """A dashboard page's view of the city: a snapshot, then events by version; reconnects on close."""

    def __init__(self, city: City, cookie: str) -> None:
        self.city, self.cookie = city, cookie
        self.drivers: dict[str, tuple[bool, int]] = {}
        self.rides: dict[str, tuple[str, str | None, int]] = {}
        self.snapshots = 0
        self.last_snapshot = 0.0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="dashboard", daemon=True)

    async def _run(self) -> None:
        url = self.city.base_url.replace("http", "ws") + "/ws/dashboard/"
        headers = {"Cookie": self.cookie, "Origin": self.city.base_url}
        while not self.stopping.is_set():
            try:
                async with websockets.connect(
                    url, additional_headers=headers, open_timeout=5, max_size=2**24
                ) as socket:
                    while not self.stopping.is_set():
                        try:
                            frame = json.loads(await asyncio.wait_for(socket.recv(), 0.5))
                        except TimeoutError:
                            continue
                        self.apply(frame)
            except (OSError, websockets.WebSocketException, TimeoutError):
                pass
            await asyncio.sleep(1.0)  # the page waits a moment before reconnecting

    def apply(self, frame: dict) -> None:
        kind = frame.get("type")
        if kind == "snapshot":
            self.drivers = {d["driverId"]: (d["available"], d["version"]) for d in frame["drivers"]}
            self.rides = {r["rideId"]: (r["status"], r["driverId"], r["version"]) for r in frame["rides"]}
            self.snapshots += 1
            self.last_snapshot = time.monotonic()
        elif kind == "driver-status-changed":
            known = self.drivers.get(frame["driverId"])
            if known is None or frame["version"] > known[1]:
                self.drivers[frame["driverId"]] = (frame["available"], frame["version"])
        elif kind == "ride-status-changed":
            known_ride = self.rides.get(frame["rideId"])
            if known_ride is None or frame["version"] > known_ride[2]:
                self.rides[frame["rideId"]] = (frame["status"], frame["driverId"], frame["version"])

    def view(self) -> tuple[dict[str, bool], dict[str, tuple[str, str | None]]]:
        active = {
            ride: (status, driver)
            for ride, (status, driver, _) in self.rides.items()
            if status in ("requested", "assigned")
        }
        return {driver: available for driver, (available, _) in self.drivers.items()}, active


# -- the checks -----------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    figure: str
    ok: bool


@dataclass
class Report:
    seed: int
    seconds: float
    faults: list[Fault] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, figure: str, ok: bool) -> None:
        self.checks.append(Check(name, figure, ok))
        print(f"  {'ok  ' if ok else 'FAIL'} {name}: {figure}", flush=True)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


def check_streams(report: Report, archive: Archive, database: psycopg.Connection) -> None:
    """At least once, in per-key version order; a copy only as the very same event.

    A second copy of an event may appear only after Redis lost data (a FLUSHALL or a restart
    in the schedule), and must be the outbox row's event itself (same eventId, same version,
    same fields): consumers skip anything not newer than what they hold, so each applies it
    once (the worker and dashboard checks below compare what they applied with the database).
    Order is checked on first copies; a copy may come after newer versions of its key.
    """
    rows = database.execute(
        "SELECT event_id, topic, key, version, payload, published_at IS NOT NULL FROM events_outboxevent"
    ).fetchall()
    outbox = {
        str(event_id): (topic, key, version, json.loads(payload)) for event_id, topic, key, version, payload, _ in rows
    }
    unpublished = sum(1 for *_, published in rows if not published)
    report.add("outbox rows published", f"{len(rows) - unpublished} of {len(rows)}", unpublished == 0)
    seen: dict[str, int] = defaultdict(int)
    forged = 0
    order_breaks = []
    not_the_same = []
    for entries in archive.entries.values():
        last_version: dict[str, int] = {}
        for _, fields in entries:
            try:
                event = json.loads(fields.get(b"event", b""))
                event_id = str(event["eventId"])
            except (ValueError, KeyError, TypeError, RecursionError):
                forged += 1
                continue
            if event_id not in outbox:
                forged += 1
                continue
            topic, key, version, committed = outbox[event_id]
            if event != committed:
                not_the_same.append(f"{topic} {key} v{version}: {event}")
            seen[event_id] += 1
            if seen[event_id] > 1:
                continue  # a copy: already counted in order
            if version <= last_version.get(key, 0):
                order_breaks.append(f"{topic} {key} v{version} after v{last_version[key]}")
            last_version[key] = max(version, last_version.get(key, 0))
    missing = [event_id for event_id in outbox if seen[event_id] == 0]
    copies = sum(count - 1 for count in seen.values() if count > 1)
    archived = sum(len(e) for e in archive.entries.values())
    report.add(
        "every committed change on its stream at least once",
        f"{len(outbox)} outbox rows, {archived - forged} stream entries of them, {len(missing)} missing "
        f"({forged} forged entries ignored)",
        not missing,
    )
    report.add(
        "a second copy only of the same event (eventId, version, fields)",
        f"{copies} copies of {sum(1 for count in seen.values() if count > 1)} events, "
        f"{len(not_the_same)} entries unlike their outbox row {not_the_same[:3]}",
        not not_the_same,
    )
    report.add(
        "per-key version order on the streams (first copies)",
        f"{len(order_breaks)} out of order {order_breaks[:3]}",
        not order_breaks,
    )


def check_rides(report: Report, archive: Archive, database: psycopg.Connection, created: set[str]) -> None:
    statuses: dict[str, str] = dict(database.execute("SELECT id::text, status FROM rides_ride").fetchall())
    unknown = created - set(statuses)
    stuck_row = database.execute(
        "SELECT count(*) FROM rides_ride WHERE status = 'requested'"
        " AND requested_at < now() - %s * interval '1 second'",
        [MATCH_TIMEOUT + 10],
    ).fetchone()
    stuck = cast(tuple[int], stuck_row)[0]  # count(*) always answers one row
    ended = sum(1 for ride in created if statuses.get(ride) in ("assigned", "completed", "cancelled", "expired"))
    still = sum(1 for ride in created if statuses.get(ride) == "requested")
    report.add(
        "every 201'd ride ended assigned/completed/cancelled/expired",
        f"{ended} of {len(created)} ({still} still requested within the timeout, {stuck} stuck past it, "
        f"{len(unknown)} unknown)",
        not unknown and stuck == 0,
    )
    drivers_of: dict[str, set[str]] = defaultdict(set)
    intervals: dict[str, dict[str, list]] = defaultdict(dict)
    for _, fields in archive.entries["stream:{ride-status-changed}"]:
        try:
            event = json.loads(fields[b"event"])
            ride, status, driver, moment = event["rideId"], event["status"], event["driverId"], event["timestamp"]
        except (ValueError, KeyError, TypeError, RecursionError):
            continue
        if ride not in statuses:
            continue  # forged
        if driver:
            drivers_of[ride].add(driver)
            span = intervals[driver].setdefault(ride, [None, None])
            if status == "assigned":
                span[0] = moment
            elif status in ("completed", "cancelled"):
                span[1] = moment
    two_drivers = [ride for ride, drivers in drivers_of.items() if len(drivers) > 1]
    report.add("no ride got two drivers", f"{len(two_drivers)} of {len(drivers_of)} assigned rides", not two_drivers)
    overlaps = []
    for driver, spans in intervals.items():
        ordered = sorted(
            (_instant(start), _instant(end) if end else float("inf"), ride)
            for ride, (start, end) in spans.items()
            if start
        )
        for (_, end, ride), (start, _, other) in itertools.pairwise(ordered):
            if start < end:
                overlaps.append(f"driver {driver}: {ride} and {other}")
    report.add(
        "no driver held two assigned rides at once (ride events' history)",
        f"{len(overlaps)} overlaps over {len(intervals)} drivers {overlaps[:3]}",
        not overlaps,
    )


def _instant(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _members(client: redis.Redis, pattern: str, kind: str) -> set[str]:
    """The members of every partition's part (the keys of that pattern and type) together."""
    members: set[str] = set()
    for key in client.scan_iter(match=pattern, _type=kind):
        # Replies are bytes (the client does not decode); redis-py types them bytes | str.
        found = client.smembers(key) if kind == "set" else client.zrange(key, 0, -1)
        members |= {member.decode() for member in cast(set[bytes], found)}
    return members


def worker_state_matches(city: City, database: psycopg.Connection) -> dict[str, tuple[bool, str]]:
    online = {
        str(row[0]) for row in database.execute("SELECT id FROM users_user WHERE role = 'driver' AND is_available")
    }
    client = city.direct
    # Replies are bytes (the client does not decode); redis-py types them bytes | str.
    pool = _members(client, "rides:matching-pool:{*}", "set")
    tracked = _members(client, "locations:tracked-drivers:{*}", "set")
    positioned = _members(client, "locations:positions:{*}", "zset")
    pending = {}
    for stream in DURABLE_STREAMS:
        try:
            for group in client.xinfo_groups(stream):
                pending[f"{stream}/{group['name'].decode()}"] = group["pending"]
        except redis.ResponseError:
            pass
    return {
        "matching pool (rides workers) = online drivers": (
            pool == online,
            f"{len(pool)} vs {len(online)} online, {len(pool ^ online)} differ",
        ),
        "tracked drivers (locations worker) = online drivers": (
            tracked == online,
            f"{len(tracked)} vs {len(online)}, {len(tracked ^ online)} differ",
        ),
        "positions only of online drivers": (
            positioned <= online,
            f"{len(positioned - online)} of {len(positioned)} positions of offline drivers",
        ),
        "nothing pending in any consumer group": (not any(pending.values()), json.dumps(pending)),
    }


def _same_view(view: tuple, truth: tuple) -> bool:
    drivers, rides = view
    return rides == truth[1] and all(drivers.get(d, False) == available for d, available in truth[0].items())


def database_view(database: psycopg.Connection) -> tuple[dict[str, bool], dict[str, tuple[str, str | None]]]:
    drivers = {
        str(i): available
        for i, available in database.execute("SELECT id, is_available FROM users_user WHERE role = 'driver'")
    }
    rides = {
        str(ride): (status, str(driver) if driver else None)
        for ride, status, driver in database.execute(
            "SELECT id, status, driver_id FROM rides_ride WHERE status IN ('requested', 'assigned')"
        )
    }
    return drivers, rides


def check_http(report: Report, record: Path, faults: list[Fault], started: float) -> set[str]:
    created, outside, inside_not_503, inside, failures, total = set(), [], [], 0, 0, 0
    windows = [(started + f.at - 0.5, (f.ended or started + f.at + f.duration) + GRACE) for f in faults]
    for line in record.read_text().splitlines():
        entry = json.loads(line)
        total += 1
        status = entry.get("status") or 0
        if status == 201 and entry.get("rideId"):
            created.add(entry["rideId"])
        if status == 0:
            failures += 1
        if status < 500:
            continue
        begun = entry["t"] - entry.get("elapsedMs", 0) / 1000
        if any(begun <= end and entry["t"] >= start for start, end in windows):
            inside += 1
            if status != 503:
                inside_not_503.append(entry)
        else:
            outside.append(entry)
    report.add("HTTP 5xx outside fault windows", f"{len(outside)} of {total} requests {outside[:3]}", not outside)
    report.add(
        "HTTP 5xx inside fault windows are all 503",
        f"{inside} 5xx inside, {len(inside_not_503)} not 503 {inside_not_503[:3]} ({failures} connection failures)",
        not inside_not_503,
    )
    return created


# -- the run --------------------------------------------------------------------------------------


def run(
    *, seconds: float, seed: int, max_faults: int | None, kinds: list[str], drivers: int, riders: int, out: Path
) -> Report:
    folder = out / f"{datetime.now(UTC):%Y%m%d-%H%M%S}-seed{seed}"
    folder.mkdir(parents=True)
    report = Report(seed, seconds, fault_schedule(seed, seconds, max_faults, kinds))
    print(f"chaos: seed {seed}, {seconds:g} s, {drivers} drivers, {riders} riders; folder {folder}", flush=True)
    for fault in report.faults:
        print(f"  at {fault.at:6.1f}s {fault.kind} ({fault.duration:g} s)", flush=True)
    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ridehail")
    if not database_url.startswith(("postgres://", "postgresql://")):
        sys.exit("chaos needs PostgreSQL: DATABASE_URL=postgres://...")
    city = City(folder, database_url, drivers=drivers, riders=riders)
    rng = random.Random(seed + 1)
    try:
        city.start()
        cookie = operator_cookie(city, drivers, riders)
        dashboards = [Dashboard(city, cookie) for _ in range(2)]
        for dashboard in dashboards:
            dashboard.thread.start()
        record = folder / "requests.jsonl"
        simulator = Supervised(
            "simulate",
            [
                *(sys.executable, "manage.py", "simulate", "--drivers", str(drivers), "--riders", str(riders)),
                *("--seconds", "0", "--base-url", city.base_url, "--record", str(record), "--seed", str(seed)),
            ],
            city.env,
            folder,
        ).start()
        # The fault clock starts once the fleet is out: signing in costs the server a password hash each.
        wait_until(
            lambda: city.online_drivers() >= 0.8 * drivers, timeout=300, interval=1, what="the simulated fleet online"
        )
        started = time.time()
        for fault in report.faults:
            delay = started + fault.at - time.time()
            if delay > 0:
                time.sleep(delay)
            fault.started = time.time()
            print(f"[{fault.started - started:6.1f}s] fault: {fault.kind}", flush=True)
            city.inject(fault, rng)
            fault.ended = time.time()
            print(f"[{fault.ended - started:6.1f}s] recovered from {fault.kind} {fault.note}", flush=True)
        remaining = started + seconds - time.time()
        if remaining > 0:
            time.sleep(remaining)
        assert simulator.process is not None, "started above"
        alive = simulator.process.poll() is None
        simulator.kill()  # traffic stops at once, mid-request, as clients vanish
        simulator.log.close()
        print(f"[{time.time() - started:6.1f}s] traffic stopped; {RESYNC_SECONDS:g} s for repair", flush=True)
        report.add("the simulator kept going to the end", "running" if alive else "it had exited", alive)
        with psycopg.connect(city.database_direct, autocommit=True) as database:
            deadline = time.monotonic() + RESYNC_SECONDS + 15
            while True:
                states = worker_state_matches(city, database)
                truth = database_view(database)
                views_ok = all(_same_view(d.view(), truth) for d in dashboards)
                if (all(ok for ok, _ in states.values()) and views_ok) or time.monotonic() > deadline:
                    break
                time.sleep(1)
            with city.archive.lock:
                city.archive.collect()
            print("checks:", flush=True)
            for name, (ok, figure) in states.items():
                report.add(name, figure, ok)
            for number, dashboard in enumerate(dashboards, 1):
                drivers_view, rides_view = dashboard.view()
                # A driver the page never heard of shows as offline, which is right for one who never went online.
                differ = sum(1 for d in truth[0] if drivers_view.get(d, False) != truth[0][d])
                rides_differ = len(set(rides_view.items()) ^ set(truth[1].items()))
                report.add(
                    f"dashboard {number} view = database",
                    f"{differ} of {len(truth[0])} drivers and {rides_differ} active rides differ, "
                    f"{dashboard.snapshots} snapshots",
                    differ == 0 and rides_differ == 0,
                )
            created = check_http(report, record, report.faults, started)
            check_streams(report, city.archive, database)
            check_rides(report, city.archive, database, created)
        for dashboard in dashboards:
            dashboard.stopping.set()
    finally:
        city.stop()
    (folder / "report.json").write_text(json.dumps(asdict(report), indent=2))
    print(
        f"chaos: {'PASSED' if report.ok else 'FAILED'} (seed {seed}); schedule, figures and logs in {folder}",
        flush=True,
    )
    return report


def operator_cookie(city: City, drivers: int, riders: int) -> str:
    """A signed-in staff session in the chaos database, and the simulated city's accounts made ahead.

    The accounts share one password hash, made once: the simulator then costs the server one hash
    per person (its login) instead of two, and the city is out in half the time.
    """
    script = f"""
from django.contrib.auth.hashers import make_password
from django.test import Client
from ridehail.simulation.agents import PASSWORD
from users.models import User
hashed = make_password(PASSWORD)
people = [User(username=f"sim-driver-{{n:04d}}", role="driver", password=hashed) for n in range(1, {drivers} + 1)]
people += [User(username=f"sim-rider-{{n:04d}}", role="rider", password=hashed) for n in range(1, {riders} + 1)]
User.objects.bulk_create(people)
operator = User.objects.create_user("chaos-operator", password=None, is_staff=True)
client = Client()
client.force_login(operator)
print(client.cookies["sessionid"].value)
"""
    env = {**city.env, "DATABASE_URL": city.database_direct, "REDIS_URL": city.redis.url}
    session = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return f"sessionid={session.stdout.strip().splitlines()[-1]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("CHAOS_SECONDS", 300)))
    parser.add_argument(
        "--seed", type=int, default=int(os.environ.get("CHAOS_SEED", random.SystemRandom().randrange(10**6)))
    )
    parser.add_argument("--max-faults", type=int, default=None)
    parser.add_argument("--faults", default=",".join(FAULTS), help="kinds to draw from, comma-separated")
    parser.add_argument("--drivers", type=int, default=200)
    parser.add_argument("--riders", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "chaos-runs")
    args = parser.parse_args()
    kinds = args.faults.split(",")
    if unknown := set(kinds) - set(FAULTS):
        sys.exit(f"unknown fault kinds: {', '.join(sorted(unknown))} (known: {', '.join(FAULTS)})")
    report = run(
        seconds=args.seconds,
        seed=args.seed,
        max_faults=args.max_faults,
        kinds=kinds,
        drivers=args.drivers,
        riders=args.riders,
        out=args.out,
    )
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
