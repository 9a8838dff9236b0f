"""Positions split into partitions (RIDEHAIL_POSITION_PARTITIONS = 3), on a single Redis and on a cluster:
nearby stays exact across partitions, every partition's positions are applied and shown, and on
a cluster the position messages spread over the masters."""

import asyncio
import time
import uuid
from datetime import UTC, datetime

import pytest
import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from conftest import make_drivers
from locations.events import DRIVER_LOCATION, DriverLocationUpdated
from locations.positions import (
    TRACKED_DRIVERS,
    Position,
    apply_positions,
    distance_km,
    held_positions,
    partitions,
)
from locations.selectors import nearby_drivers
from ridehail.events.connection import shared_redis
from ridehail.events.publisher import publish_live
from ridehail.events.topic import partition_channels
from rides.pool import MATCHING_POOL
from tests.dashboard import connect, receive_json, session_cookie
from tests.processes import wait_until
from tests.servers import AsgiServer
from users.models import User
from users.selectors import DriverState

pytestmark = pytest.mark.django_db(transaction=True)

CENTRE = (52.52, 13.405)
PARTITIONS = 3


@pytest.fixture
def three_partitions(settings) -> None:
    settings.RIDEHAIL_POSITION_PARTITIONS = PARTITIONS


def spread(n: int) -> tuple[float, float]:
    """Drivers close together (a few hundred metres apart), so near neighbours are in different partitions."""
    return CENTRE[0] + ((n * 37) % 101 - 50) / 20_000, CENTRE[1] + ((n * 53) % 97 - 48) / 15_000


def brute_force(client: redis.Redis, lat: float, lng: float, radius_km: float, limit: int, among=None) -> list[str]:
    """The nearest drivers by haversine over every held position (of every partition)."""
    allowed = set(among.members(client)) if among else None
    held = held_positions(client)
    near = sorted(
        (distance_km(lat, lng, p.lat, p.lng), driver)
        for driver, p in held.items()
        if distance_km(lat, lng, p.lat, p.lng) <= radius_km and (allowed is None or driver in allowed)
    )
    return [driver for _, driver in near[:limit]]


def test_partition_channels_fall_in_different_thirds_of_the_slots_and_one_partition_changes_nothing():
    assert partition_channels("driver-location-updated", 1) == ("driver-location-updated",)
    channels = partition_channels("driver-location-updated", PARTITIONS)
    assert channels[0] == "driver-location-updated"
    thirds = {key_slot(channel.encode()) * PARTITIONS // REDIS_CLUSTER_HASH_SLOTS for channel in channels}
    assert thirds == {0, 1, 2}
    assert partition_channels("driver-location-updated", PARTITIONS) == channels  # computed, and always the same


def test_a_partition_is_one_slot_and_a_driver_stays_in_its_partition(three_partitions):
    assert DRIVER_LOCATION.channels == partition_channels("driver-location-updated", PARTITIONS)
    for partition, channel, pool in zip(partitions(), DRIVER_LOCATION.channels, MATCHING_POOL.parts(), strict=True):
        keys = [partition.geo_index, partition.geo_data, partition.tracked.key, partition.tracked.versions_key]
        keys += [pool.key, pool.versions_key]
        assert {key_slot(key.encode()) for key in keys} == {key_slot(channel.encode())}
    driver_id = uuid.uuid4()
    assert len({DRIVER_LOCATION.partition_of(str(driver_id)) for _ in range(3)}) == 1
    assert (
        DRIVER_LOCATION.channel_for(str(driver_id))
        == DRIVER_LOCATION.channels[DRIVER_LOCATION.partition_of(str(driver_id))]
    )


def place_drivers(client: redis.Redis, count: int, *, pooled_every: int = 1) -> list[User]:
    drivers = make_drivers(count)
    TRACKED_DRIVERS.merge(client, [DriverState(driver.id, True, 1) for driver in drivers])
    MATCHING_POOL.merge(client, [DriverState(driver.id, n % pooled_every == 0, 1) for n, driver in enumerate(drivers)])
    now = datetime.now(UTC)
    applied = apply_positions(client, [Position(driver.id, *spread(n), now) for n, driver in enumerate(drivers)])
    assert applied.applied == count
    return drivers


def assert_nearby_is_exact(client: redis.Redis) -> None:
    drivers = place_drivers(client, 150, pooled_every=3)
    assert {DRIVER_LOCATION.partition_of(str(driver.id)) for driver in drivers} == {0, 1, 2}
    points = [CENTRE, (CENTRE[0] + 0.001, CENTRE[1] - 0.002), (CENTRE[0] - 0.0025, CENTRE[1] + 0.003)]
    for lat, lng in points:
        for radius_km, limit in ((5.0, 1), (5.0, 7), (0.15, 100), (5.0, 100)):
            found = nearby_drivers(client, lat=lat, lng=lng, radius_km=radius_km, limit=limit)
            assert [str(d.position.driver_id) for d in found] == brute_force(client, lat, lng, radius_km, limit)
            pooled = nearby_drivers(client, lat=lat, lng=lng, radius_km=radius_km, limit=limit, among=MATCHING_POOL)
            assert [str(d.position.driver_id) for d in pooled] == brute_force(
                client, lat, lng, radius_km, limit, among=MATCHING_POOL
            )
    nearest_ten = nearby_drivers(client, lat=CENTRE[0], lng=CENTRE[1], radius_km=5.0, limit=10)
    assert len({DRIVER_LOCATION.partition_of(str(d.position.driver_id)) for d in nearest_ten}) > 1  # neighbours


def test_nearby_is_exact_across_partitions(three_partitions, redis_client):
    assert_nearby_is_exact(redis_client)


def test_nearby_is_exact_across_partitions_on_a_cluster(three_partitions, on_cluster):
    assert_nearby_is_exact(shared_redis())


def go_online_in_the_database(drivers: list[User]) -> None:
    User.objects.filter(id__in=[driver.id for driver in drivers]).update(is_available=True, status_version=1)


def assert_the_worker_applies_every_partition(client: redis.Redis, start_worker) -> None:
    drivers = make_drivers(90)
    go_online_in_the_database(drivers)
    worker = start_worker("locations")
    for channel in DRIVER_LOCATION.channels:
        worker.wait_for_output(f"listening on {channel}")
    wait_until(lambda: len(TRACKED_DRIVERS.members(client)) == len(drivers), what="every driver tracked")
    latest = {}
    for n, driver in enumerate(drivers):
        lat, lng = spread(n)
        publish_live(DriverLocationUpdated(driver.id, lat, lng, datetime.now(UTC)))
        latest[str(driver.id)] = (lat, lng)

    wait_until(
        lambda: {driver: (p.lat, p.lng) for driver, p in held_positions(client).items()} == latest,
        timeout=15,
        what="every position of every partition",
    )
    assert {DRIVER_LOCATION.partition_of(driver) for driver in latest} == {0, 1, 2}
    assert all(client.zcard(partition.geo_index) > 0 for partition in partitions())


def test_the_locations_worker_applies_every_position_of_every_partition(three_partitions, redis_client, start_worker):
    assert_the_worker_applies_every_partition(redis_client, start_worker)


def test_the_locations_worker_applies_every_partition_on_a_cluster(three_partitions, on_cluster, start_worker):
    assert_the_worker_applies_every_partition(shared_redis(), start_worker)


def test_the_dashboard_shows_positions_of_every_partition(three_partitions, redis_client, staff):
    drivers = make_drivers(30)
    web = AsgiServer().start()
    try:
        cookie = session_cookie(staff)

        async def scenario() -> set[str]:
            seen: set[str] = set()
            async with connect(web, cookie=cookie) as socket:
                await receive_json(socket)  # the snapshot
                for n, driver in enumerate(drivers):
                    publish_live(DriverLocationUpdated(driver.id, *spread(n), datetime.now(UTC)))
                deadline = time.monotonic() + 10
                while len(seen) < len(drivers) and time.monotonic() < deadline:
                    frame = await receive_json(socket, timeout=max(0.05, deadline - time.monotonic()))
                    if frame["type"] == "positions":
                        seen |= {position["driverId"] for position in frame["positions"]}
            return seen

        assert asyncio.run(scenario()) == {str(driver.id) for driver in drivers}
    finally:
        web.stop()
    assert {DRIVER_LOCATION.partition_of(str(driver.id)) for driver in drivers} == {0, 1, 2}


def position_messages_by_master(cluster) -> dict[int, int]:
    """PUBLISH and SPUBLISH calls each master has served so far."""
    counts = {}
    for node in cluster.live_nodes():
        client = redis.Redis(port=node.port)
        if client.info("replication")["role"] != "master":
            continue
        stats = client.info("commandstats")
        counts[node.port] = sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("publish", "spublish"))
    return counts


def test_on_a_cluster_no_master_carries_more_than_half_of_the_position_messages(three_partitions, on_cluster):
    masters = {on_cluster.master_of(channel).port for channel in DRIVER_LOCATION.channels}
    assert len(masters) == PARTITIONS  # each partition's channel on a master of its own
    before = position_messages_by_master(on_cluster)
    sent = 600
    for _ in range(sent):
        publish_live(DriverLocationUpdated(uuid.uuid4(), *CENTRE, datetime.now(UTC)))
    after = position_messages_by_master(on_cluster)
    carried = {port: after[port] - before.get(port, 0) for port in after}
    assert sum(carried.values()) == sent
    assert max(carried.values()) / sent <= 0.5, carried
