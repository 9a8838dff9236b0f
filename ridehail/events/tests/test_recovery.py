"""What workers repair by themselves, as real processes on a Redis of the test's own: a FLUSHALL,
a Redis restarted empty, entries trimmed before they were read, state corrupted behind their back."""

import signal

import pytest
import redis

from conftest import make_drivers, online_in_database
from locations.subscribers import TRACKED_DRIVERS
from rides.subscribers import MATCHING_POOL
from tests.processes import wait_until
from users.events import DRIVER_STATUS
from users.services import set_driver_availability

pytestmark = pytest.mark.django_db(transaction=True)

STREAM = DRIVER_STATUS.stream
STREAM_OPTIONS = ("--transport", "stream", "--claim-idle", "1")


def group(client: redis.Redis, name: str) -> dict:
    return next(g for g in client.xinfo_groups(STREAM) if g["name"] == name.encode())


def test_a_flushall_under_a_stream_worker_recreates_its_group_and_rebuilds(own_redis, start_worker):
    drivers = make_drivers(3)
    worker = start_worker("locations", *STREAM_OPTIONS, env={"REDIS_URL": own_redis.url})
    set_driver_availability(driver_id=drivers[0].id, available=True)
    set_driver_availability(driver_id=drivers[1].id, available=True)
    wait_until(lambda: TRACKED_DRIVERS.members(own_redis.client) == online_in_database(), what="tracking")

    own_redis.client.flushall()  # the stream, the group and the tracked set are gone

    worker.wait_for_output("is gone", timeout=10)
    wait_until(lambda: TRACKED_DRIVERS.members(own_redis.client) == online_in_database(), what="rebuilt set")
    set_driver_availability(driver_id=drivers[2].id, available=True)  # and it still reads new events
    worker.wait_for_output(f"started tracking driver {drivers[2].id}")
    assert worker.process.poll() is None
    assert "Traceback" not in worker.output


def test_a_stream_worker_started_on_a_redis_restarted_empty_rebuilds(own_redis, start_worker):
    drivers = make_drivers(2)
    set_driver_availability(driver_id=drivers[0].id, available=True)
    own_redis.stop()
    own_redis.start()  # empty: no stream, no group, no set; the database still says online

    start_worker("rides", *STREAM_OPTIONS, env={"REDIS_URL": own_redis.url})

    assert MATCHING_POOL.members(own_redis.client) == [str(drivers[0].id)]


def test_entries_trimmed_before_they_were_read_are_reported_and_the_state_rebuilt(own_redis, start_worker, settings):
    own_redis.client.config_set("stream-node-max-entries", 10)  # so MAXLEN ~ 50 trims close to 50
    settings.RIDEHAIL_STREAM_MAXLEN = 50
    drivers = make_drivers(12)
    options = (*STREAM_OPTIONS, "--batch-size", "5")
    worker = start_worker("rides", *options, env={"REDIS_URL": own_redis.url})
    worker.signal(signal.SIGTERM)
    worker.wait_exit(timeout=10)

    for n in range(120):  # 10 changes per driver while the worker is stopped
        set_driver_availability(driver_id=drivers[n % 12].id)
    assert own_redis.client.xlen(STREAM) < 70

    restarted = start_worker("rides", *options, env={"REDIS_URL": own_redis.url})

    restarted.wait_for_output("were trimmed before group rides read them")
    missed = int(restarted.output.split(" unread entries")[0].rsplit(" ", 1)[-1])
    assert missed == 120 - own_redis.client.xlen(STREAM)
    wait_until(lambda: group(own_redis.client, "rides")["lag"] == 0, what="the group to catch up")
    assert MATCHING_POOL.members(own_redis.client) == online_in_database()
    assert group(own_redis.client, "rides")["pending"] == 0


@pytest.mark.parametrize("transport", ["pubsub", "stream"])
def test_state_corrupted_behind_a_workers_back_is_repaired_within_the_resync_interval(
    own_redis, start_worker, transport
):
    drivers = make_drivers(2)
    set_driver_availability(driver_id=drivers[0].id, available=True)
    start_worker("rides", "--transport", transport, env={"REDIS_URL": own_redis.url, "RIDEHAIL_RESYNC_SECONDS": "1"})
    wait_until(lambda: MATCHING_POOL.members(own_redis.client) == online_in_database(), what="the pool")

    # Behind its back: the online driver dropped, a stranger added with a forged version.
    own_redis.client.srem(MATCHING_POOL.part_of(drivers[0].id).key, str(drivers[0].id))
    own_redis.client.sadd(MATCHING_POOL.part_of(drivers[1].id).key, str(drivers[1].id))
    own_redis.client.hset(MATCHING_POOL.part_of(drivers[1].id).versions_key, str(drivers[1].id), 2**40)

    wait_until(lambda: MATCHING_POOL.members(own_redis.client) == online_in_database(), timeout=5, what="the repair")
    assert own_redis.client.hget(MATCHING_POOL.part_of(drivers[1].id).versions_key, str(drivers[1].id)) == b"0"


def test_a_pubsub_worker_repairs_a_flushall_within_the_resync_interval(own_redis, start_worker):
    drivers = make_drivers(2)
    set_driver_availability(driver_id=drivers[0].id, available=True)
    worker = start_worker("locations", env={"REDIS_URL": own_redis.url, "RIDEHAIL_RESYNC_SECONDS": "2"})

    own_redis.client.flushall()  # a Pub/Sub connection does not notice: nothing tells it

    wait_until(lambda: TRACKED_DRIVERS.members(own_redis.client) == online_in_database(), timeout=5, what="repair")
    worker.wait_for_output("rebuilt from the database", count=2, timeout=5)  # logged just after the set is written
