"""Thousands of generated payloads on the channel and the stream: the workers never die, and their
state still equals the database afterwards."""

import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ridehail.events.topic import STREAM_FIELD
from rides.subscribers import MATCHING_POOL
from tests.processes import wait_until
from users.events import DRIVER_STATUS
from users.models import Role, User
from users.services import set_driver_availability

CHANNEL = DRIVER_STATUS.channel
STREAM = DRIVER_STATUS.stream

pytestmark = pytest.mark.django_db(transaction=True)

KNOWN_DRIVER = uuid.UUID("00000000-0000-4000-8000-000000000001")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
# Event-shaped objects whose fields are each right or wrong; a well-formed one names an unknown
# driver, or the known driver with a version it already has (stale), so none may change state.
event_like = st.fixed_dictionaries(
    {},
    optional={
        "driverId": st.sampled_from([str(uuid.uuid4()), "not-a-uuid", str(KNOWN_DRIVER)]) | json_values,
        "available": st.booleans() | json_values,
        "timestamp": st.sampled_from(["2026-01-01T00:00:00Z", "yesterday", "2026-01-01T00:00:00"]) | json_values,
        "eventId": st.just(str(uuid.uuid4())) | json_values,
        "version": st.sampled_from([0, 1, -5, 2**70]) | json_values,
        "extra": json_values,
    },
)
payloads = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    json_values.map(lambda value: json.dumps(value).encode()),
    event_like.map(lambda value: json.dumps(value).encode()),
)


@pytest.fixture
def known_driver(db) -> User:
    driver = User.objects.create(id=KNOWN_DRIVER, username="known", role=Role.DRIVER, password="!")
    set_driver_availability(driver_id=driver.id, available=True)  # version 1: the fuzz never goes above
    return driver


def pool_equals_database(client) -> bool:
    online = sorted(str(pk) for pk in User.objects.filter(is_available=True).values_list("pk", flat=True))
    return MATCHING_POOL.members(client) == online


def test_garbage_never_kills_the_workers_nor_changes_their_state(redis_client, known_driver, start_worker):
    pubsub_worker = start_worker("rides")
    stream_worker = start_worker("locations", "--transport", "stream", "--claim-idle", "1")
    sent = {"count": 0}

    @settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(batch=st.lists(payloads, min_size=50, max_size=150))
    def throw(batch: list[bytes]) -> None:
        pipe = redis_client.pipeline(transaction=False)
        for payload in batch:
            pipe.publish(CHANNEL, payload)
            pipe.xadd(STREAM, {STREAM_FIELD: payload})
        pipe.xadd(STREAM, {"not-the-event-field": b"x"})
        pipe.execute()
        sent["count"] += len(batch)

    throw()
    assert sent["count"] >= 2000

    # Both still alive and still working: a real change goes through each of them.
    set_driver_availability(driver_id=known_driver.id, available=False)
    pubsub_worker.wait_for_output(f"driver {known_driver.id} removed from matching pool", timeout=30)
    stream_worker.wait_for_output(f"stopped tracking driver {known_driver.id}", timeout=60)
    for worker in (pubsub_worker, stream_worker):
        assert worker.process.poll() is None
        assert "Traceback" not in worker.output
    wait_until(lambda: pool_equals_database(redis_client), what="the matching pool to equal the database")
