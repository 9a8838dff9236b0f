"""The driver-set handler (the rides worker's matching pool) called directly: events in, set and log lines out."""

import logging
import uuid
from datetime import UTC, datetime

import pytest

from rides.subscribers import MATCHING_POOL, MatchingPoolHandler
from users.events import DriverStatusChanged
from users.selectors import driver_states
from users.services import set_driver_availability

pytestmark = pytest.mark.django_db


def event_for(driver_id: uuid.UUID, *, available: bool, version: int) -> bytes:
    return DriverStatusChanged(driver_id, available, datetime.now(UTC), uuid.uuid4(), version).to_json()


@pytest.fixture
def subscriber(redis_client):
    return MatchingPoolHandler(redis_client)


def test_available_driver_joins_the_pool_and_is_logged(subscriber, redis_client, driver, caplog):
    caplog.set_level(logging.INFO, logger="rides")

    assert subscriber.handle_message(event_for(driver.id, available=True, version=1))

    assert MATCHING_POOL.members(redis_client) == [str(driver.id)]
    assert f"driver {driver.id} added to matching pool" in caplog.messages


def test_unavailable_driver_leaves_the_pool_and_is_logged(subscriber, redis_client, driver, caplog):
    caplog.set_level(logging.INFO, logger="rides")
    subscriber.handle_message(event_for(driver.id, available=True, version=1))

    assert subscriber.handle_message(event_for(driver.id, available=False, version=2))

    assert MATCHING_POOL.members(redis_client) == []
    assert f"driver {driver.id} removed from matching pool" in caplog.messages


def test_an_older_version_never_overrides_a_newer_one(subscriber, redis_client, driver, caplog):
    subscriber.handle_message(event_for(driver.id, available=True, version=3))

    assert not subscriber.handle_message(event_for(driver.id, available=False, version=2))
    assert not subscriber.handle_message(event_for(driver.id, available=False, version=3))

    assert MATCHING_POOL.members(redis_client) == [str(driver.id)]
    assert any("stale" in message and "version 2" in message for message in caplog.messages)


def test_handling_the_same_event_twice_is_handling_it_once(subscriber, redis_client, driver, caplog):
    caplog.set_level(logging.INFO, logger="rides")
    message = event_for(driver.id, available=True, version=1)

    assert subscriber.handle_message(message)
    assert not subscriber.handle_message(message)

    assert caplog.messages.count(f"driver {driver.id} added to matching pool") == 1


def test_unknown_driver_is_ignored(subscriber, redis_client, rider, caplog):
    for unknown in (uuid.uuid4(), rider.id):
        assert not subscriber.handle_message(event_for(unknown, available=True, version=1))
    assert MATCHING_POOL.members(redis_client) == []
    assert sum("unknown driver" in message for message in caplog.messages) == 2


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe\x00", b"not json", b"[]", b"{}", b'{"driverId": "x"}', b"", b"marker-123"],
)
def test_garbage_is_logged_and_skipped(subscriber, redis_client, raw, caplog):
    assert not subscriber.handle_message(raw)
    assert MATCHING_POOL.members(redis_client) == []
    assert any(message.startswith("ignored message") for message in caplog.messages)


def test_rebuild_takes_the_database_as_truth(subscriber, redis_client, driver, other_driver):
    set_driver_availability(driver_id=driver.id, available=True)
    # State the worker holds wrongly: a stranger in the pool, the online driver missing.
    stranger = MATCHING_POOL.parts()[0]
    redis_client.sadd(stranger.key, "stranger")
    redis_client.hset(stranger.versions_key, "stranger", 9)

    assert subscriber.rebuild() == 1

    assert MATCHING_POOL.members(redis_client) == [str(driver.id)]
    held = {}
    for part in MATCHING_POOL.parts():
        held.update(redis_client.hgetall(part.versions_key))
    assert held == {
        str(driver.id).encode(): b"1",
        str(other_driver.id).encode(): b"0",
    }


def test_rebuild_keeps_an_event_committed_while_the_database_was_read(subscriber, redis_client, driver, monkeypatch):
    # The race a rebuild must survive: the database is read, then a change commits and its
    # event is applied (by this or another worker), then the read state is merged.
    from users import driver_set

    def read_then_change(driver_ids=None):
        states = driver_states(driver_ids)
        if driver_ids is None:  # the first, full read: the change lands right after it
            set_driver_availability(driver_id=driver.id, available=True)
            subscriber.handle_message(event_for(driver.id, available=True, version=1))
        return states

    monkeypatch.setattr(driver_set, "driver_states", read_then_change)

    subscriber.rebuild()  # what it read says offline, version 0

    assert MATCHING_POOL.members(redis_client) == [str(driver.id)]
    assert redis_client.hget(MATCHING_POOL.part_of(driver.id).versions_key, str(driver.id)) == b"1"


def test_rebuild_replaces_a_forged_version_that_no_change_explains(subscriber, redis_client, driver, caplog):
    # A forged event in range freezes the driver: every real event after it looks stale.
    subscriber.handle_message(event_for(driver.id, available=True, version=2**53 - 1))
    set_driver_availability(driver_id=driver.id, available=True)
    assert not subscriber.handle_message(event_for(driver.id, available=False, version=2))

    subscriber.rebuild()

    assert MATCHING_POOL.members(redis_client) == [str(driver.id)]
    assert redis_client.hget(MATCHING_POOL.part_of(driver.id).versions_key, str(driver.id)) == b"1"
    assert any("replaced 1 entries newer than the database" in message for message in caplog.messages)
    assert subscriber.handle_message(event_for(driver.id, available=False, version=2))  # real events apply again


def test_a_flood_of_events_for_unknown_drivers_costs_one_query_per_batch_then_none(
    subscriber, redis_client, django_assert_max_num_queries
):
    strangers = [uuid.uuid4() for _ in range(2000)]
    batches = [
        [DriverStatusChanged(who, True, datetime.now(UTC), uuid.uuid4(), 1) for who in strangers[n : n + 100]]
        for n in range(0, len(strangers), 100)
    ]

    with django_assert_max_num_queries(len(batches)):
        for batch in batches:
            subscriber.handle_batch(batch)
    with django_assert_max_num_queries(0):  # the same strangers again: remembered as unknown
        for batch in batches:
            assert subscriber.handle_batch(batch) == 0

    assert MATCHING_POOL.members(redis_client) == []
