"""The transactional outbox: every committed event reaches its stream at least once, in per-key
version order; a second copy only after Redis lost data, and then with the same eventId and version."""

import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from conftest import client_for, make_drivers
from ridehail.events.connection import shared_redis, worker_redis
from ridehail.events.models import OutboxEvent
from ridehail.events.outbox import OutboxRelay, prune_published, relay_once
from ridehail.events.publisher import MARK_TTL, RELAY_WAKE, mark
from ridehail.events.pubsub import PubSubReader
from ridehail.events.topic import STREAM_FIELD
from rides.events import RIDE_STATUS
from tests.channels import ChannelListener
from tests.processes import wait_until
from users.events import DRIVER_STATUS
from users.services import set_driver_availability

STREAM = DRIVER_STATUS.stream

pytestmark = pytest.mark.django_db(transaction=True)


def stream_events(client) -> list[dict]:
    return [json.loads(fields[STREAM_FIELD.encode()]) for _, fields in client.xrange(STREAM)]


def pending() -> list[int]:
    return list(OutboxEvent.objects.filter(published_at__isnull=True).values_list("version", flat=True))


@pytest.fixture
def relay() -> Iterator[OutboxRelay]:
    """A relay thread woken as in a worker (a subscriber that sets its `wake`), whose periodic scan
    is too slow to matter: what it publishes within a test's deadline, it was woken for."""
    stop = threading.Event()
    thread = OutboxRelay(stop, interval=60.0)
    subscriber = PubSubReader(
        [],
        read_client=worker_redis(name="test:subscriber"),
        stop=stop,
        signals={RELAY_WAKE: thread.wake},
        logger=logging.getLogger("test"),
    )
    listening = threading.Thread(target=subscriber.run, daemon=True)
    listening.start()
    thread.start()
    client = shared_redis()
    wait_until(lambda: client.pubsub_numsub(RELAY_WAKE)[0][1] >= 1, what="the wake-up channel subscribed")
    # Its first scan is over: a test that then points this process at an unreachable Redis
    # (miss_redis) can no longer hand the relay that client.
    wait_until(lambda: thread.rounds >= 1, what="the relay's first round")
    yield thread
    stop.set()
    thread.wake.set()  # out of its wait now, not in a minute
    thread.join(timeout=5)
    listening.join(timeout=5)


def miss_redis(settings, change) -> None:
    """Make a change while this process cannot reach Redis: its row stays pending."""
    reachable = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    shared_redis.cache_clear()
    try:
        change()
    finally:
        settings.REDIS_URL = reachable
        shared_redis.cache_clear()


def test_a_change_is_published_and_its_row_marked_by_its_own_request(driver, redis_client):
    change = set_driver_availability(driver_id=driver.id, available=True)

    row = OutboxEvent.objects.get()
    assert (row.event_id, row.key, row.version) == (change.event_id, str(driver.id), 1)
    assert stream_events(redis_client) == [json.loads(row.payload)]
    assert row.published_at is not None  # marked before the request returned: no batch, no thread
    assert redis_client.get(mark(DRIVER_STATUS, str(driver.id))) == b"1"
    assert 0 < redis_client.ttl(mark(DRIVER_STATUS, str(driver.id))) <= MARK_TTL  # done keys do not pile up


def test_a_newer_version_whose_older_one_is_pending_is_left_to_the_relay_which_is_woken_at_once(
    driver, redis_client, settings, relay
):
    miss_redis(settings, lambda: set_driver_availability(driver_id=driver.id, available=True))
    wait_until(lambda: pending() == [1], what="version 1 pending")  # the relay's first scan ran
    # ... and found nothing: its next scan is a minute away; only a wake-up brings it back in time.
    assert stream_events(redis_client) == []

    started = time.monotonic()
    set_driver_availability(driver_id=driver.id, available=False)
    took = time.monotonic() - started

    assert took < 0.2, f"the request took {took:.3f}s: it must not wait for version 1"
    wait_until(lambda: len(stream_events(redis_client)) == 2, timeout=5, what="both, by the woken relay")
    assert [event["version"] for event in stream_events(redis_client)] == [1, 2]
    wait_until(lambda: pending() == [], what="both marked")


def test_a_request_never_waits_for_an_older_version_that_went_out_unmarked_before_a_flushall(
    driver, redis_client, relay
):
    set_driver_availability(driver_id=driver.id, available=True)
    OutboxEvent.objects.update(published_at=None)  # out, its process died before marking it ...
    redis_client.flushall()  # ... and Redis forgot it went out

    started = time.monotonic()
    set_driver_availability(driver_id=driver.id, available=False)
    took = time.monotonic() - started

    assert took < 0.2, f"the request took {took:.3f}s after its commit"
    wait_until(lambda: pending() == [], timeout=5, what="both, by the woken relay")
    assert [event["version"] for event in stream_events(redis_client)] == [1, 2]


def test_changes_made_while_redis_was_down_go_out_in_order_with_nothing_but_the_relay(
    driver, other_driver, redis_client, settings
):
    def changes() -> None:
        for _ in range(3):
            set_driver_availability(driver_id=driver.id)
            set_driver_availability(driver_id=other_driver.id)

    miss_redis(settings, changes)
    assert len(pending()) == 6
    assert stream_events(redis_client) == []

    assert relay_once() == 6

    events = stream_events(redis_client)
    for who in (driver, other_driver):
        assert [event["version"] for event in events if event["driverId"] == str(who.id)] == [1, 2, 3]
    assert len({event["eventId"] for event in events}) == 6
    assert pending() == []


def test_a_row_out_but_not_marked_is_only_marked_by_the_relay(driver, redis_client):
    set_driver_availability(driver_id=driver.id, available=True)
    OutboxEvent.objects.update(published_at=None)  # its process died between publishing and marking

    assert relay_once() == 1

    assert redis_client.xlen(STREAM) == 1  # the key's mark says version 1 is out: not again
    assert pending() == []


def test_after_a_flushall_a_row_out_but_not_marked_goes_out_again_with_the_same_event_id(driver, redis_client):
    set_driver_availability(driver_id=driver.id, available=True)
    first = stream_events(redis_client)
    OutboxEvent.objects.update(published_at=None)  # out, not marked ...
    redis_client.flushall()  # ... and Redis forgets it went out

    set_driver_availability(driver_id=driver.id, available=False)  # no mark of v1 in Redis: left pending
    assert pending() == [1, 2]
    relay_once()

    again = stream_events(redis_client)
    assert [event["version"] for event in again] == [1, 2]  # nothing missing, in order
    assert again[0] == first[0]  # the duplicate is the same event: same eventId, same version
    assert pending() == []


def test_after_a_flushall_a_marked_row_is_not_published_again(driver, redis_client, relay):
    set_driver_availability(driver_id=driver.id, available=True)
    redis_client.flushall()

    set_driver_availability(driver_id=driver.id, available=False)  # v1's mark is gone: left to the relay

    wait_until(lambda: pending() == [], timeout=5, what="v2 published by the woken relay")
    assert [event["version"] for event in stream_events(redis_client)] == [2]  # v1 is marked: not again


def test_concurrent_changes_of_one_driver_reach_the_stream_in_version_order_once(redis_client, relay):
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL: run with DATABASE_URL=postgres://...")
    [driver] = make_drivers(1)
    changes = 60

    def toggle(_: int) -> None:
        try:
            set_driver_availability(driver_id=driver.id)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(toggle, range(changes)))

    wait_until(lambda: pending() == [], timeout=10, what="every row out and marked")
    events = stream_events(redis_client)
    assert [event["version"] for event in events] == list(range(1, changes + 1))
    assert len({event["eventId"] for event in events}) == changes


def test_flushalls_during_concurrent_changes_lose_nothing_and_copies_are_the_same_events(redis_client, relay):
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL: run with DATABASE_URL=postgres://...")
    drivers = make_drivers(4)
    listener = ChannelListener(redis_client)  # Pub/Sub outlives a FLUSHALL: it sees every publish
    changes = 120
    flushing = threading.Event()

    def toggle(n: int) -> None:
        try:
            set_driver_availability(driver_id=drivers[n % 4].id)
        finally:
            connection.close()

    def flush() -> None:
        while not flushing.wait(0.02):
            redis_client.flushall()

    flusher = threading.Thread(target=flush)
    flusher.start()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(toggle, range(changes)))
    finally:
        flushing.set()
        flusher.join()
    wait_until(lambda: pending() == [], timeout=10, what="every row out and marked")

    rows = {
        str(event_id): (key, version)
        for event_id, key, version in OutboxEvent.objects.values_list("event_id", "key", "version")
    }
    received = []
    while len({event["eventId"] for event in received}) < changes:
        received.append(listener.next_event())
    listener.close()
    first_seen: dict[str, list[int]] = {}
    for event in received:
        assert (event["driverId"], event["version"]) == rows[event["eventId"]]  # a copy is the same event
        versions = first_seen.setdefault(event["driverId"], [])
        if event["version"] not in versions:
            versions.append(event["version"])
    for versions in first_seen.values():
        assert versions == list(range(1, len(versions) + 1))  # nothing missing, in order
    assert sum(len(versions) for versions in first_seen.values()) == changes


def test_the_relay_survives_a_row_it_cannot_publish_and_publishes_the_others(driver, redis_client, settings):
    OutboxEvent.objects.create(
        event_id="00000000-0000-0000-0000-000000000001", topic="no-such-topic", key="x", version=1, payload="{"
    )
    miss_redis(settings, lambda: set_driver_availability(driver_id=driver.id, available=True))
    stop = threading.Event()
    relay = OutboxRelay(stop, interval=0.1)
    relay.start()
    try:
        wait_until(lambda: pending() == [1], timeout=5, what="only the unknown topic's row left pending")
        assert [event["version"] for event in stream_events(redis_client)] == [1]
        assert relay.is_alive()
    finally:
        stop.set()
        relay.join(timeout=5)


def test_rows_redis_refuses_are_logged_with_the_traceback_and_the_relay_publishes_the_others(
    driver, redis_client, settings, caplog
):
    caplog.set_level(logging.ERROR, logger="ridehail.events.outbox")
    OutboxEvent.objects.create(
        event_id="00000000-0000-0000-0000-000000000002", topic=RIDE_STATUS.name, key="r", version=1, payload="{}"
    )
    redis_client.set(RIDE_STATUS.stream, "not a stream")  # XADD to it: WRONGTYPE
    miss_redis(settings, lambda: set_driver_availability(driver_id=driver.id, available=True))
    stop = threading.Event()
    relay = OutboxRelay(stop, interval=0.1)
    relay.start()
    try:
        wait_until(lambda: pending() == [1] and redis_client.xlen(STREAM) == 1, timeout=5, what="the driver's out")
        wait_until(lambda: "relay round failed" in caplog.text, what="the refused row logged")
        assert "WRONGTYPE" in caplog.text and "Traceback" in caplog.text
        redis_client.delete(RIDE_STATUS.stream)
        wait_until(lambda: pending() == [], timeout=10, what="the ride's row, once Redis takes it")
        assert relay.is_alive()
    finally:
        stop.set()
        relay.join(timeout=5)


def test_a_rolled_back_change_leaves_no_outbox_row(driver, redis_client):
    with pytest.raises(RuntimeError), transaction.atomic():
        set_driver_availability(driver_id=driver.id, available=True)
        raise RuntimeError("roll back")
    assert not OutboxEvent.objects.exists()
    assert redis_client.xlen(STREAM) == 0


def test_published_rows_are_pruned_after_the_retention(driver, redis_client):
    set_driver_availability(driver_id=driver.id, available=True)
    set_driver_availability(driver_id=driver.id, available=False)
    OutboxEvent.objects.filter(version=1).update(published_at=timezone.now() - timedelta(days=2))

    assert prune_published(older_than=timedelta(days=1)) == 1
    assert list(OutboxEvent.objects.values_list("version", flat=True)) == [2]


def test_changes_made_while_redis_is_down_reach_the_stream_in_order_once(own_redis, driver, other_driver, start_worker):
    worker = start_worker("rides", "--transport", "stream", env={"REDIS_URL": own_redis.url})
    own_redis.stop()
    clients = {driver.id: client_for(driver), other_driver.id: client_for(other_driver)}

    responses = [clients[who].put("/api/users/driver-status") for who in [driver.id, other_driver.id] * 10]

    assert [response.status_code for response in responses] == [200] * 20
    assert len(pending()) == 20
    own_redis.start()  # same port, empty: the worker's relay publishes the backlog by itself
    wait_until(lambda: shared_redis().xlen(STREAM) == 20, timeout=30, what="20 events on the stream")

    events = stream_events(shared_redis())
    assert len({event["eventId"] for event in events}) == 20
    for who in clients:
        versions = [event["version"] for event in events if event["driverId"] == str(who)]
        assert versions == list(range(1, 11))  # per-driver commit order, none twice
    wait_until(lambda: pending() == [], what="outbox drained")
    assert relay_once() == 0
    worker.wait_for_output("outbox: published")


def test_a_forgotten_mark_sends_the_next_version_through_the_relay_in_order_without_a_copy(driver, redis_client, relay):
    set_driver_availability(driver_id=driver.id, available=True)
    redis_client.delete(mark(DRIVER_STATUS, str(driver.id)))  # expired (MARK_TTL) or evicted

    set_driver_availability(driver_id=driver.id, available=False)

    wait_until(lambda: pending() == [], what="version 2 published by the woken relay")
    assert [event["version"] for event in stream_events(redis_client)] == [1, 2]
