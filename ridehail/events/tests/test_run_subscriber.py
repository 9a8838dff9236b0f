"""`manage.py run_subscriber` as real processes, against real Redis and the test database."""

import json
import signal
import socket
import threading
import time
from io import StringIO

import pytest
import redis
from django.core.management import CommandError, call_command

from conftest import LISTENING, client_for
from ridehail.dashboard.health import health_frame
from ridehail.events.connection import shared_redis
from ridehail.events.heartbeat import STALL_SECONDS, TTL_SECONDS, HeartbeatThread, alive_workers
from rides.events import RIDE_STATUS
from rides.subscribers import MATCHING_POOL
from tests.processes import wait_until
from users.events import DRIVER_STATUS
from users.services import set_driver_availability

CHANNEL = DRIVER_STATUS.channel

pytestmark = pytest.mark.django_db(transaction=True)


def pool_api(staff) -> list[str]:
    return client_for(staff).get("/api/rides/matching-pool").json()["drivers"]


def test_both_workers_log_each_event_and_keep_their_sets(start_worker, redis_client, driver, driver_client, staff):
    rides, locations = start_worker("rides"), start_worker("locations")

    driver_client.put("/api/users/driver-status", {"available": True}, format="json")
    rides.wait_for_output(f"driver {driver.id} added to matching pool")
    locations.wait_for_output(f"started tracking driver {driver.id}")
    assert pool_api(staff) == [str(driver.id)]
    assert client_for(staff).get("/api/locations/tracking").json() == {"drivers": [str(driver.id)]}

    driver_client.put("/api/users/driver-status", {"available": False}, format="json")
    rides.wait_for_output(f"driver {driver.id} removed from matching pool")
    locations.wait_for_output(f"stopped tracking driver {driver.id}")
    assert pool_api(staff) == []


def test_a_killed_worker_rebuilds_the_pool_from_the_database_on_restart(start_worker, redis_client, driver):
    worker = start_worker("rides")
    worker.signal(signal.SIGKILL)
    worker.wait_exit(timeout=5)

    set_driver_availability(driver_id=driver.id, available=True)  # published while nobody listens
    assert MATCHING_POOL.members(redis_client) == []

    restarted = start_worker("rides")
    assert "rebuilt from the database: 1 of 1 drivers" in restarted.output
    assert MATCHING_POOL.members(redis_client) == [str(driver.id)]


def test_garbage_on_the_channel_is_logged_and_the_worker_carries_on(start_worker, redis_client, driver):
    worker = start_worker("rides")
    for garbage in (b"\xff\xfe\x00", b"not json", b"[]", b'{"driverId": "nope"}'):
        redis_client.publish(CHANNEL, garbage)

    set_driver_availability(driver_id=driver.id, available=True)

    worker.wait_for_output(f"driver {driver.id} added to matching pool")
    assert worker.output.count("ignored message") == 4


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_worker_cleanly_within_seconds(start_worker, redis_client, signum):
    worker = start_worker("locations")

    worker.signal(signum)

    assert worker.wait_exit(timeout=5) == 0
    assert "locations: stopped" in worker.output


def test_a_sigterm_right_after_a_sigcont_stops_the_worker(start_worker, redis_client):
    worker = start_worker("rides", "--transport", "stream")
    worker.signal(signal.SIGSTOP)  # frozen, as a debugger or a paused container leaves it
    time.sleep(1)  # stays frozen a while: nothing to wait for, the process does nothing
    worker.signal(signal.SIGCONT)
    worker.signal(signal.SIGTERM)

    assert worker.wait_exit(timeout=5) == 0


def test_unknown_subscriber_is_a_clear_error():
    with pytest.raises(CommandError, match="unknown subscriber 'billing'; choose from: locations, rides"):
        call_command("run_subscriber", "billing")


def test_the_worker_recovers_by_itself_when_redis_restarts(start_worker, own_redis, driver):
    worker = start_worker("rides", env={"REDIS_URL": own_redis.url})

    own_redis.stop()
    worker.wait_for_output("Redis unavailable")
    set_driver_availability(driver_id=driver.id, available=True)  # committed; its event is lost
    time.sleep(8)  # long enough for the backoff to reach its cap
    own_redis.start()

    worker.wait_for_output(LISTENING, count=2, timeout=5.5)  # back within about 5 s of Redis
    assert MATCHING_POOL.members(shared_redis()) == [str(driver.id)]  # rebuilt from the database
    set_driver_availability(driver_id=driver.id, available=False)
    worker.wait_for_output(f"driver {driver.id} removed from matching pool")


def test_the_worker_resubscribes_when_redis_drops_its_connection(start_worker, own_redis, driver):
    worker = start_worker("rides", env={"REDIS_URL": own_redis.url})

    shared_redis().client_kill_filter(_type="pubsub")

    worker.wait_for_output(LISTENING, count=2, timeout=5)
    set_driver_availability(driver_id=driver.id, available=True)
    worker.wait_for_output(f"driver {driver.id} added to matching pool")
    wait_until(lambda: MATCHING_POOL.members(shared_redis()) == [str(driver.id)], what="pool updated")


def group_consumers(client, stream: str, group: str) -> list[str]:
    try:
        return [consumer["name"].decode() for consumer in client.xinfo_consumers(stream, group)]
    except redis.ResponseError:
        return []  # no group (yet)


def test_a_stream_reader_blocked_on_a_quiet_stream_counts_as_a_consumer(start_worker, redis_client):
    worker = start_worker("rides")  # the matcher always reads ride-status-changed from its stream
    assert worker.process is not None
    me = f"{socket.gethostname()}-{worker.process.pid}"

    # Redis 7.0 creates a consumer only when XREADGROUP delivers it something.
    wait_until(lambda: group_consumers(redis_client, RIDE_STATUS.stream, "rides") == [me], what="the consumer")
    out = StringIO()
    call_command("events", "status", "--json", stdout=out)
    (ride_topic,) = [topic for topic in json.loads(out.getvalue())["topics"] if topic["name"] == RIDE_STATUS.name]
    assert [consumer["name"] for consumer in ride_topic["stream"]["groups"][0]["consumers"]] == [me]

    redis_client.delete(RIDE_STATUS.stream)  # the group goes with it; the worker recreates it
    wait_until(lambda: group_consumers(redis_client, RIDE_STATUS.stream, "rides") == [me], what="the consumer again")


def alive_pids(client, name: str) -> list[int]:
    return [worker["pid"] for worker in alive_workers(client) if worker["name"] == name]


def test_a_running_worker_is_alive_everywhere_operators_look_and_a_killed_one_goes_within_its_ttl(
    start_worker, redis_client
):
    worker = start_worker("locations", "--transport", "stream")
    assert worker.process is not None
    pid = worker.process.pid

    wait_until(lambda: alive_pids(redis_client, "locations") == [pid], what="the heartbeat")
    (health,) = [w for w in health_frame(redis_client)["workers"] if w["name"] == "locations"]
    assert [(p["transport"], p["host"], p["pid"]) for p in health["processes"]] == [
        ("stream", socket.gethostname(), pid)
    ]
    out = StringIO()
    call_command("events", "status", stdout=out)
    assert f"locations (stream) on {socket.gethostname()}/{pid}: last seen" in out.getvalue()
    call_command("events", "alive", "locations", stdout=StringIO())  # exit 0: no CommandError
    with pytest.raises(CommandError, match="no live rides worker on"):
        call_command("events", "alive", "rides")

    worker.signal(signal.SIGKILL)  # no clean stop: the key must expire by itself
    wait_until(lambda: alive_pids(redis_client, "locations") == [], timeout=TTL_SECONDS + 2, what="expiry")
    with pytest.raises(CommandError, match="no live locations worker"):
        call_command("events", "alive", "locations")


def test_a_worker_stopped_cleanly_is_gone_at_once(start_worker, redis_client):
    worker = start_worker("rides")
    wait_until(lambda: alive_pids(redis_client, "rides"), what="the heartbeat")

    worker.signal(signal.SIGTERM)

    assert worker.wait_exit(timeout=5) == 0
    assert alive_pids(redis_client, "rides") == []


def test_a_worker_whose_read_loop_hangs_stops_reporting_alive(redis_client, caplog):
    stop = threading.Event()
    hung = time.monotonic() - STALL_SECONDS - 1
    beat = HeartbeatThread(redis_client, name="hung", transport="pubsub", stop=stop, turned_at=lambda: [hung])
    beat.start()
    try:
        wait_until(lambda: "not reporting alive" in caplog.text, what="the warning")
        assert alive_pids(redis_client, "hung") == []
    finally:
        stop.set()
        beat.join(timeout=5)


def test_a_beat_carries_what_the_handlers_report_and_a_failing_report_costs_only_the_report(redis_client, caplog):
    """`Handler.heartbeat()` (the matcher's last batch) rides on the beat; the process's own fields win."""
    stop = threading.Event()
    beat = HeartbeatThread(
        redis_client,
        name="reporting",
        transport="pubsub",
        stop=stop,
        turned_at=lambda: [time.monotonic()],
        report=lambda: {"matcher": {"window_s": 0.5}, "pid": -1},
    )
    beat.start()
    try:
        wait_until(lambda: alive_pids(redis_client, "reporting"), what="the first beat")
        [info] = [w for w in alive_workers(redis_client) if w["name"] == "reporting"]
        assert (info["matcher"], info["pid"]) == ({"window_s": 0.5}, beat.info["pid"])
    finally:
        stop.set()
        beat.join(timeout=5)

    def broken() -> dict:
        raise ZeroDivisionError("a handler's bug")

    failing = HeartbeatThread(redis_client, name="failed", transport="pubsub", stop=stop, turned_at=list, report=broken)
    assert failing._reported() == {}  # the beat goes out without it: the process is alive
    assert "heartbeat report failed" in caplog.text
