"""The rides handler called directly: one event in, the matching pool and the log line out."""

import logging
import uuid
from datetime import UTC, datetime

import pytest

from ridehail.events.event import DriverStatusChanged
from rides.subscribers import MATCHING_POOL, MatchingPoolSubscriber
from users.services import set_driver_availability

pytestmark = pytest.mark.django_db


def event_for(driver_id: uuid.UUID, *, available: bool, version: int) -> bytes:
    return DriverStatusChanged(driver_id, available, datetime.now(UTC), uuid.uuid4(), version).to_json()


@pytest.fixture
def subscriber(redis_client):
    return MatchingPoolSubscriber(redis_client)


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
    redis_client.sadd(MATCHING_POOL.key, "stranger")
    redis_client.hset(MATCHING_POOL.versions_key, "stranger", 9)

    assert subscriber.rebuild() == 1

    assert MATCHING_POOL.members(redis_client) == [str(driver.id)]
    assert redis_client.hgetall(MATCHING_POOL.versions_key) == {
        str(driver.id).encode(): b"1",
        str(other_driver.id).encode(): b"0",
    }


def test_rebuild_keeps_an_event_newer_than_the_database_read(subscriber, redis_client, driver):
    # An event applied after the database snapshot was taken must survive the merge.
    subscriber.handle_message(event_for(driver.id, available=True, version=5))

    subscriber.rebuild()  # the database still says version 0, offline

    assert MATCHING_POOL.members(redis_client) == [str(driver.id)]
