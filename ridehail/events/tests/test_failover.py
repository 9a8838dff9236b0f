"""A master's failover under traffic loses no committed change.

Threads make status changes (the service every status request runs) while both workers run;
the master that owns `stream:{driver-status-changed}`'s slot is killed with SIGKILL, its replica
takes over, the changes go on a little and stop. Whatever the dead master had taken but its
replica had not is lost from Redis, and with it maybe the key's mark: a row is marked published
only once WAIT said a replica holds its entry, so those rows stay pending and the relays publish
them again, on the new master."""

import json
import threading
import time
from collections import defaultdict

import pytest
from django.db import connections

from conftest import make_drivers
from locations.subscribers import TRACKED_DRIVERS
from ridehail.events.connection import shared_redis
from ridehail.events.models import OutboxEvent
from ridehail.events.status import _entries
from ridehail.events.topic import STREAM_FIELD
from rides.subscribers import MATCHING_POOL
from tests.processes import wait_until
from users.events import DRIVER_STATUS
from users.models import User
from users.services import set_driver_availability

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 4


def online_in_database() -> set[str]:
    return {str(driver_id) for driver_id in User.objects.filter(is_available=True).values_list("id", flat=True)}


def test_no_committed_change_is_lost_when_the_streams_master_dies_under_traffic(start_worker, on_cluster):
    drivers = make_drivers(THREADS * 2)
    start_worker("rides")
    start_worker("locations")
    client = shared_redis()
    stop = threading.Event()
    changes: list[float] = []  # when each change committed
    errors: list[tuple[float, BaseException]] = []  # a change that raised: a request's 5xx

    def traffic(mine: list[User]) -> None:
        try:
            available = dict.fromkeys((driver.id for driver in mine), False)
            while not stop.is_set():
                for driver_id in available:
                    available[driver_id] = not available[driver_id]
                    try:
                        set_driver_availability(driver_id=driver_id, available=available[driver_id])
                        changes.append(time.monotonic())
                    except Exception as exc:  # what a request would answer with a 5xx
                        errors.append((time.monotonic(), exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=traffic, args=(drivers[n::THREADS],)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    dead = on_cluster.master_of(DRIVER_STATUS.stream)
    try:
        wait_until(lambda: len(changes) >= 100, timeout=30, what="traffic before the failover")
        killed = time.monotonic()
        on_cluster.kill(dead)
        on_cluster.wait_for_failover(dead)
        failed_over = time.monotonic()
        before = len(changes)
        wait_until(lambda: len(changes) >= before + 100, timeout=30, what="traffic after the failover")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    try:
        assert not [(at, exc) for at, exc in errors if not killed <= at <= failed_over + 1], errors
        assert any(at > killed for at in changes) and any(at > failed_over for at in changes)

        # Every committed change is on the stream once the relays are done: what the dead master
        # took and its replica did not stayed pending, and went out again on the new master.
        wait_until(
            lambda: not OutboxEvent.objects.filter(published_at__isnull=True).exists(),
            timeout=30,
            what="every row published and confirmed",
        )
        rows = {str(row.event_id): json.loads(row.payload) for row in OutboxEvent.objects.all()}
        entries = [json.loads(fields[STREAM_FIELD.encode()]) for _, fields in _entries(client, DRIVER_STATUS.stream)]
        assert len(rows) == len(changes)
        missing = set(rows) - {entry["eventId"] for entry in entries}
        assert not missing, f"{len(missing)} committed change(s) not on the stream"
        for entry in entries:  # a second copy is the very same event
            assert entry == rows[entry["eventId"]]

        # Per-key version order: each driver's first copies come 1, 2, 3, ... without a gap.
        first_copies: dict[str, list[int]] = defaultdict(list)
        seen: set[str] = set()
        for entry in entries:
            if entry["eventId"] not in seen:
                seen.add(entry["eventId"])
                first_copies[entry["driverId"]].append(entry["version"])
        for driver in drivers:
            driver.refresh_from_db()
            assert first_copies[str(driver.id)] == list(range(1, driver.status_version + 1))

        # Both workers hold what the database holds.
        wait_until(
            lambda: set(MATCHING_POOL.members(client)) == online_in_database(),
            timeout=20,
            what="the matching pool to equal the database",
        )
        wait_until(
            lambda: set(TRACKED_DRIVERS.members(client)) == online_in_database(),
            timeout=20,
            what="the tracked drivers to equal the database",
        )
    finally:
        on_cluster.restart(dead)
