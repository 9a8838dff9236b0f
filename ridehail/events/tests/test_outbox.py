"""The transactional outbox: nothing committed is lost, nothing is published twice, order per driver holds."""

import json
import threading
import time
from datetime import timedelta

import pytest
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from conftest import client_for
from ridehail.events.connection import shared_redis
from ridehail.events.marks import PublishedMarks, marks
from ridehail.events.models import OutboxEvent
from ridehail.events.outbox import prune_published, relay_once
from ridehail.events.publisher import WAIT_FOR_PREDECESSOR, marker, publish_pending
from ridehail.events.topic import STREAM_FIELD
from tests.processes import wait_until
from users.events import DRIVER_STATUS
from users.services import set_driver_availability

STREAM = DRIVER_STATUS.stream

pytestmark = pytest.mark.django_db(transaction=True)


def stream_events(client) -> list[dict]:
    return [json.loads(fields[STREAM_FIELD.encode()]) for _, fields in client.xrange(STREAM)]


def test_a_change_and_its_outbox_row_commit_together_and_the_row_is_published_at_once(driver, redis_client):
    change = set_driver_availability(driver_id=driver.id, available=True)

    row = OutboxEvent.objects.get()
    assert (row.event_id, row.key, row.version) == (change.event_id, str(driver.id), 1)
    assert stream_events(redis_client) == [json.loads(row.payload)]  # out at once, by the request itself
    # ... and its row marked by this process's batch a moment later (ridehail/events/marks.py).
    wait_until(lambda: OutboxEvent.objects.filter(published_at__isnull=False).exists(), timeout=2, what="marked")


def test_a_key_s_events_leave_in_version_order_even_when_an_older_one_waited(driver, redis_client, settings):
    reachable = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # version 1 misses Redis and waits in the outbox
    shared_redis.cache_clear()
    set_driver_availability(driver_id=driver.id, available=True)
    settings.REDIS_URL = reachable
    shared_redis.cache_clear()

    set_driver_availability(driver_id=driver.id, available=False)  # version 2's fast path must not go first

    assert [event["version"] for event in stream_events(redis_client)] == [1, 2]
    wait_until(lambda: not OutboxEvent.objects.filter(published_at__isnull=True).exists(), what="both marked")


def published_but_not_yet_marked(driver, redis_client, *, marker_wiped: bool) -> None:
    """Version 1 of the driver went out on its fast path; its batch has not marked the row yet."""
    set_driver_availability(driver_id=driver.id, available=True)
    marks.flush()
    OutboxEvent.objects.filter(version=1).update(published_at=None)
    if marker_wiped:  # as a FLUSHALL or a Redis restarted empty would, within that 0.1 s
        redis_client.delete(marker(DRIVER_STATUS, str(driver.id), 1))


def test_a_newer_version_does_not_republish_an_older_one_whose_marker_was_wiped_before_its_mark(driver, redis_client):
    published_but_not_yet_marked(driver, redis_client, marker_wiped=True)
    # Its process's batch marks version 1 a moment later, as marks.py does.
    mark = threading.Timer(0.2, lambda: OutboxEvent.objects.filter(version=1).update(published_at=timezone.now()))
    mark.start()

    set_driver_availability(driver_id=driver.id, available=False)

    mark.join()
    assert [event["version"] for event in stream_events(redis_client)] == [1, 2]  # version 1 once
    wait_until(lambda: not OutboxEvent.objects.filter(published_at__isnull=True).exists(), what="both marked")


def test_a_newer_version_waits_for_an_unmarked_older_one_only_a_bounded_time(driver, redis_client):
    # Version 1 committed, and its process died before publishing it: nothing will mark it.
    published_but_not_yet_marked(driver, redis_client, marker_wiped=True)
    redis_client.delete(STREAM)
    started = time.monotonic()

    set_driver_availability(driver_id=driver.id, available=False)

    waited = time.monotonic() - started
    assert [event["version"] for event in stream_events(redis_client)] == [1, 2]  # the older one first
    assert WAIT_FOR_PREDECESSOR * 0.9 <= waited < WAIT_FOR_PREDECESSOR + 1.0
    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()


def test_marks_the_database_refused_are_kept_and_made_once_it_answers(driver, redis_client):
    published_but_not_yet_marked(driver, redis_client, marker_wiped=False)
    row_id = OutboxEvent.objects.get().id
    batch = PublishedMarks()
    batch.waiting.append(row_id)

    def database_away(execute, sql, params, many, context):
        raise OperationalError("server closed the connection unexpectedly")

    with connection.execute_wrapper(database_away):
        assert batch.flush() == 0
    assert batch.waiting == [row_id]  # kept, not left to the relay's next round
    assert batch.flush() == 1
    assert OutboxEvent.objects.get().published_at is not None


def test_a_rolled_back_change_leaves_no_outbox_row(driver, redis_client):
    with pytest.raises(RuntimeError), transaction.atomic():
        set_driver_availability(driver_id=driver.id, available=True)
        raise RuntimeError("roll back")
    assert not OutboxEvent.objects.exists()
    assert redis_client.xlen(STREAM) == 0


def test_publishing_a_row_twice_puts_it_on_the_stream_once(driver, redis_client):
    set_driver_availability(driver_id=driver.id, available=True)
    # As if the process died between XADD and marking the row: it is published again.
    OutboxEvent.objects.update(published_at=None)

    assert publish_pending() == 1

    assert redis_client.xlen(STREAM) == 1
    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()


def test_published_rows_are_pruned_after_the_retention(driver, redis_client):
    set_driver_availability(driver_id=driver.id, available=True)
    set_driver_availability(driver_id=driver.id, available=False)
    OutboxEvent.objects.filter(version=1).update(published_at=timezone.now() - timedelta(days=2))

    assert prune_published(older_than=timedelta(days=1)) == 1
    assert list(OutboxEvent.objects.values_list("version", flat=True)) == [2]


def test_changes_made_while_redis_is_down_reach_the_stream_in_order_exactly_once(
    own_redis, driver, other_driver, start_worker
):
    worker = start_worker("rides", "--transport", "stream", env={"REDIS_URL": own_redis.url})
    own_redis.stop()
    clients = {driver.id: client_for(driver), other_driver.id: client_for(other_driver)}

    responses = [clients[who].put("/api/users/driver-status") for who in [driver.id, other_driver.id] * 10]

    assert [response.status_code for response in responses] == [200] * 20
    assert OutboxEvent.objects.filter(published_at__isnull=True).count() == 20
    own_redis.start()  # same port: the worker's relay publishes the backlog by itself
    wait_until(lambda: shared_redis().xlen(STREAM) == 20, timeout=30, what="20 events on the stream")

    events = stream_events(shared_redis())
    assert len({event["eventId"] for event in events}) == 20
    for who in clients:
        versions = [event["version"] for event in events if event["driverId"] == str(who)]
        assert versions == list(range(1, 11))  # per-driver commit order, none twice
    wait_until(lambda: not OutboxEvent.objects.filter(published_at__isnull=True).exists(), what="outbox drained")
    assert relay_once() == 0
    worker.wait_for_output("outbox: published")
