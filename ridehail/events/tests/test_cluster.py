"""ridehail/events/ on a real Redis Cluster (3 masters + 3 replicas): names in one slot, shard
channels, the relay's cluster pipeline, the operator's commands, and a master's failover."""

import json
import threading
import time
from io import StringIO

import pytest
import redis
from django.core.management import call_command

from conftest import client_for, make_drivers
from ridehail.events import metrics
from ridehail.events.connection import Subscription, one_connection_redis, shared_redis, worker_redis
from ridehail.events.models import OutboxEvent
from ridehail.events.publisher import RELAY_WAKE, publish_pending, wake_relay
from ridehail.events.status import _entries
from ridehail.events.topic import STREAM_FIELD
from rides.events import RIDE_STATUS
from rides.subscribers import MATCHING_POOL
from rides.tests.test_matching import FAST, ask, online_at, settled
from tests.processes import wait_until
from users.events import DRIVER_STATUS
from users.models import User
from users.services import set_driver_availability

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cluster_client(on_cluster) -> redis.Redis:
    return shared_redis()


def stream_events(client: redis.Redis, stream: str) -> list[dict]:
    return [json.loads(fields[STREAM_FIELD.encode()]) for _, fields in _entries(client, stream)]


def pool_is_the_database(client: redis.Redis) -> bool:
    available = {str(driver_id) for driver_id in User.objects.filter(is_available=True).values_list("id", flat=True)}
    return set(MATCHING_POOL.members(client)) == available


def test_a_topics_keys_and_shard_channel_share_one_slot(cluster_client):
    client = redis.Redis(port=cluster_client.get_default_node().port)
    slots = {
        client.cluster("keyslot", name)
        for name in (
            DRIVER_STATUS.stream,
            DRIVER_STATUS.dead_letters,
            f"{DRIVER_STATUS.stream}:mark:some-driver",
            metrics.published_counter(DRIVER_STATUS.name),
            DRIVER_STATUS.channel,
        )
    }
    assert len(slots) == 1


def test_a_sharded_subscription_hears_every_topic_and_answers_its_heartbeat(cluster_client, driver):
    channels = [DRIVER_STATUS.channel, RIDE_STATUS.channel, RELAY_WAKE]
    with Subscription(worker_redis(), channels) as subscription:
        assert len(subscription.heartbeats) >= 2  # the channels are served by more than one node
        set_driver_availability(driver_id=driver.id, available=True)
        wake_relay(cluster_client)
        heard: list[tuple[str, bytes]] = []
        wait_until(lambda: heard.extend(subscription.read_batch(timeout=0.2)) or len(heard) >= 2, what="both")
        assert [channel for channel, _ in heard] == [DRIVER_STATUS.channel, RELAY_WAKE]
        assert json.loads(heard[0][1])["driverId"] == str(driver.id)

        for heartbeat in subscription.heartbeats.values():  # every node connection idle for long
            heartbeat.last_heard -= 60
        assert subscription.read_batch(timeout=0.1) == []
        assert all(heartbeat.ping_sent_at is not None for heartbeat in subscription.heartbeats.values())
        wait_until(
            lambda: (
                subscription.read_batch(timeout=0.1) == []
                and all(heartbeat.ping_sent_at is None for heartbeat in subscription.heartbeats.values())
            ),
            what="every node to answer its PING",
        )


def test_the_relay_publishes_rows_of_every_topic_through_a_cluster_pipeline(cluster_client):
    drivers = make_drivers(3)
    for driver in drivers:
        set_driver_availability(driver_id=driver.id, available=True)
    # Published at commit; put them back to pending, as if Redis had been down, and flush Redis.
    OutboxEvent.objects.update(published_at=None)
    cluster_client.flushall(target_nodes="primaries")

    rows, new = publish_pending()

    assert (rows, new) == (3, 3)
    assert not OutboxEvent.objects.filter(published_at__isnull=True).exists()
    events = stream_events(cluster_client, DRIVER_STATUS.stream)
    assert sorted(event["driverId"] for event in events) == sorted(str(driver.id) for driver in drivers)
    assert metrics.read_published(cluster_client, [DRIVER_STATUS.name]) == {DRIVER_STATUS.name: 3}


@pytest.mark.parametrize("transport", ["pubsub", "stream"])
def test_a_status_change_reaches_both_workers_and_the_stream(start_worker, cluster_client, driver, transport):
    start_worker("rides", "--transport", transport)
    locations = start_worker("locations", "--transport", transport)

    response = client_for(driver).put("/api/users/driver-status", {"available": True}, format="json")

    assert response.status_code == 200, response.content
    locations.wait_for_output(f"started tracking driver {driver.id}")
    wait_until(lambda: pool_is_the_database(cluster_client), what="the pool to equal the database")
    [event] = stream_events(cluster_client, "stream:{driver-status-changed}")
    assert (event["driverId"], event["eventId"]) == (str(driver.id), response.json()["eventId"])


def test_a_ride_request_is_matched_on_the_cluster(start_worker, cluster_client, driver, rider):
    start_worker("locations")
    start_worker("rides", env=FAST)
    online_at(driver, 52.5210, 13.4060, cluster_client)

    ride_id = ask(rider)

    ride = wait_until(lambda: settled(ride_id), timeout=10, what="the assignment")
    assert ride.driver_id == driver.id


def test_a_stream_worker_dead_letters_garbage_in_one_transaction_on_the_cluster(start_worker, cluster_client):
    start_worker("rides", "--transport", "stream")

    cluster_client.xadd(DRIVER_STATUS.stream, {STREAM_FIELD: b"not json"})

    wait_until(lambda: cluster_client.xlen(DRIVER_STATUS.dead_letters) == 1, what="the dead letter")
    wait_until(
        lambda: cluster_client.xpending(DRIVER_STATUS.stream, "rides")["pending"] == 0, what="the entry acknowledged"
    )


def test_events_status_and_replay_dead_on_the_cluster(start_worker, cluster_client, driver):
    start_worker("rides")  # driver-status-changed on its shard channel, ride-status-changed on its stream
    set_driver_availability(driver_id=driver.id, available=True)
    letter = {STREAM_FIELD: b'{"not": "an event"}', "error": "failed", "group": "rides", "entry_id": "1-1"}
    cluster_client.xadd(DRIVER_STATUS.dead_letters, letter)

    out = StringIO()
    call_command("events", "status", "--json", stdout=out)
    status = {topic["name"]: topic for topic in json.loads(out.getvalue())["topics"]}
    driver_status = status[DRIVER_STATUS.name]
    assert driver_status["channel"]["subscribers"] == 1  # the rides worker's shard subscription
    assert driver_status["stream"]["name"] == "stream:{driver-status-changed}"
    assert [group["name"] for group in status[RIDE_STATUS.name]["stream"]["groups"]] == ["rides"]
    assert driver_status["dead_letters"]["length"] == 1

    letters = StringIO()
    call_command("events", "dead-letters", "--json", stdout=letters)
    assert [letter["event"] for letter in json.loads(letters.getvalue())] == [{"not": "an event"}]
    call_command("events", "alive", "rides", stdout=StringIO())  # its heartbeat, through a cluster pipeline

    call_command("events", "replay-dead", stdout=StringIO())

    assert cluster_client.xlen(DRIVER_STATUS.dead_letters) == 0
    assert {"not": "an event"} in stream_events(cluster_client, DRIVER_STATUS.stream)


def test_a_worker_follows_the_failover_of_its_channels_master(start_worker, on_cluster, cluster_client):
    first, second = make_drivers(2)
    worker = start_worker("rides")
    set_driver_availability(driver_id=first.id, available=True)
    worker.wait_for_output(f"driver {first.id} added to matching pool")
    rebuilds = worker.output.count("rebuilt from the database")
    dead = on_cluster.master_of(DRIVER_STATUS.stream)
    try:
        on_cluster.kill(dead)
        on_cluster.wait_for_failover(dead)
        failed_over = time.monotonic()
        # Committed during the gap: only the rebuild after the reconnect can bring it in.
        set_driver_availability(driver_id=second.id, available=True)
        worker.wait_for_output("rebuilt from the database", count=rebuilds + 1, timeout=10)
        wait_until(lambda: pool_is_the_database(cluster_client), timeout=10, what="the pool to equal the database")
        set_driver_availability(driver_id=first.id, available=False)  # a live message on the new master
        worker.wait_for_output(f"driver {first.id} removed from matching pool", timeout=10)
        assert time.monotonic() - failed_over < 10
        wait_until(lambda: pool_is_the_database(cluster_client), timeout=5, what="the pool to equal the database")
    finally:
        on_cluster.restart(dead)


def test_the_worker_command_client_never_deadlocks_two_pipelines_across_nodes(on_cluster):
    client = one_connection_redis("test:commands", timeout=1.0)  # a waiter would give up after 2 s
    first, second = "{a}:key", "{b}:key"
    assert on_cluster.master_of(first).port != on_cluster.master_of(second).port
    errors: list[Exception] = []

    def pipelines(keys: tuple[str, str]) -> None:
        try:
            for _ in range(300):
                pipe = client.pipeline(transaction=False)
                for key in keys:  # the two threads take the two nodes in opposite orders
                    pipe.incr(key)
                pipe.execute()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=pipelines, args=(keys,)) for keys in ((first, second), (second, first))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert client.mget(first) == [b"600"] and client.mget(second) == [b"600"]
    for node in client.get_nodes():  # one connection per node at most, named
        assert node.redis_connection.connection_pool.max_connections == 1
