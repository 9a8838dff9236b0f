"""`run_subscriber --transport stream`: consumer groups, acknowledgements, claims, dead letters."""

import json
import signal
import threading
import uuid
from datetime import UTC, datetime

import pytest
import redis
from django.core.management import CommandError, call_command

from conftest import make_drivers, online_in_database
from ridehail.events.connection import worker_redis
from ridehail.events.stream import StreamRunner
from ridehail.events.topic import STREAM_FIELD
from rides.subscribers import MATCHING_POOL, MatchingPoolHandler
from tests.processes import wait_until
from users.events import DRIVER_STATUS, DriverStatusChanged
from users.services import set_driver_availability

DEAD_LETTER_STREAM = DRIVER_STATUS.dead_letters
STREAM = DRIVER_STATUS.stream

pytestmark = pytest.mark.django_db(transaction=True)


def group_info(client: redis.Redis, group: str = "rides") -> dict:
    return next(g for g in client.xinfo_groups(STREAM) if g["name"] == group.encode())


def all_acknowledged(client: redis.Redis, group: str = "rides") -> bool:
    info = group_info(client, group)
    return info["pending"] == 0 and info["lag"] == 0


def test_events_made_while_no_worker_runs_are_handled_when_it_starts(start_worker, redis_client):
    drivers = make_drivers(3)
    for driver in drivers:
        set_driver_availability(driver_id=driver.id, available=True)
    set_driver_availability(driver_id=drivers[1].id, available=False)

    worker = start_worker("rides", "--transport", "stream")

    wait_until(lambda: all_acknowledged(redis_client), what="every entry acknowledged")
    for driver in drivers:
        worker.wait_for_output(f"driver {driver.id} added to matching pool")
    worker.wait_for_output(f"driver {drivers[1].id} removed from matching pool")
    assert MATCHING_POOL.members(redis_client) == online_in_database()


def test_a_worker_killed_mid_stream_loses_nothing(start_worker, redis_client):
    drivers = make_drivers(20)
    for n in range(1000):
        set_driver_availability(driver_id=drivers[n % 20].id)
    assert redis_client.xlen(STREAM) == 1000
    options = ("--transport", "stream", "--batch-size", "10", "--claim-idle", "1")

    first = start_worker("rides", *options)
    first.wait_for_output("matching pool", count=100, timeout=30)
    first.signal(signal.SIGKILL)
    first.wait_exit(timeout=5)
    assert not all_acknowledged(redis_client)

    start_worker("rides", *options)  # a new consumer: it must claim what the dead one held

    wait_until(lambda: all_acknowledged(redis_client), timeout=60, what="every entry acknowledged")
    assert MATCHING_POOL.members(redis_client) == online_in_database()


def test_two_workers_in_one_group_handle_each_event_once(start_worker, redis_client):
    drivers = make_drivers(200)
    options = ("--transport", "stream", "--batch-size", "5")
    workers = [start_worker("rides", *options), start_worker("rides", *options)]

    for driver in drivers:
        set_driver_availability(driver_id=driver.id, available=True)

    wait_until(
        lambda: all_acknowledged(redis_client) and group_info(redis_client)["entries-read"] == 200,
        timeout=30,
        what="200 entries read and acknowledged",
    )
    lines = [line for worker in workers for line in worker.output.splitlines() if "added to matching pool" in line]
    handled = [line.split("driver ")[1].split(" added")[0] for line in lines]
    assert sorted(handled) == sorted(str(driver.id) for driver in drivers)  # each exactly once
    assert len(group_info(redis_client)["name"]) and len(redis_client.xinfo_consumers(STREAM, "rides")) == 2


class FailsForOneDriver(MatchingPoolHandler):
    """A handler whose work for one driver always fails (a bug, a downstream call that errors)."""

    poisoned: uuid.UUID

    def handle_batch(self, events: list[DriverStatusChanged]) -> int:
        if any(event.driver_id == self.poisoned for event in events):
            raise RuntimeError("simulated handler bug")
        return super().handle_batch(events)


def test_an_event_that_keeps_failing_goes_to_the_dead_letters_and_the_others_flow(redis_client, caplog):
    poisoned, healthy = make_drivers(2)
    FailsForOneDriver.poisoned = poisoned.id
    stop = threading.Event()
    runner = StreamRunner(
        FailsForOneDriver(worker_redis()), read_client=worker_redis(), stop=stop, claim_idle=0.2, max_deliveries=3
    )
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        # Once it reads, the group exists and its first rebuild (the stream was empty) is done.
        wait_until(lambda: f"reading {STREAM}" in caplog.text, what="the runner to read")
        set_driver_availability(driver_id=poisoned.id, available=True)
        set_driver_availability(driver_id=healthy.id, available=True)
        wait_until(lambda: redis_client.xlen(DEAD_LETTER_STREAM) == 1, timeout=20, what="a dead letter")
        set_driver_availability(driver_id=healthy.id, available=False)
        wait_until(lambda: all_acknowledged(redis_client), timeout=10, what="everything acknowledged")
    finally:
        stop.set()
        thread.join(timeout=10)

    [(_, dead)] = redis_client.xrange(DEAD_LETTER_STREAM)
    assert json.loads(dead[STREAM_FIELD.encode()])["driverId"] == str(poisoned.id)
    assert dead[b"error"] == b"handler failed 3 times"
    assert dead[b"group"] == b"rides"
    assert int(dead[b"deliveries"]) == 4
    # The healthy driver's events kept flowing, in order, while the poisoned one was retried.
    assert MATCHING_POOL.members(redis_client) == []
    assert redis_client.hget(MATCHING_POOL.part_of(healthy.id).versions_key, str(healthy.id)) == b"2"


def test_garbage_on_the_stream_is_dead_lettered_at_once(start_worker, redis_client):
    driver = make_drivers(1)[0]
    for garbage in ({STREAM_FIELD: b"\xff\xfe"}, {STREAM_FIELD: b"[]"}, {"other": b"x"}):
        redis_client.xadd(STREAM, garbage)
    worker = start_worker("rides", "--transport", "stream")

    set_driver_availability(driver_id=driver.id, available=True)

    worker.wait_for_output(f"driver {driver.id} added to matching pool")
    wait_until(lambda: all_acknowledged(redis_client), what="everything acknowledged")
    assert redis_client.xlen(DEAD_LETTER_STREAM) == 3


def test_events_status_and_replay_dead(redis_client, capsys):
    driver = make_drivers(1)[0]
    set_driver_availability(driver_id=driver.id, available=True)
    runner = StreamRunner(MatchingPoolHandler(worker_redis()), read_client=worker_redis(), stop=threading.Event())
    runner.ensure_group()
    event = DriverStatusChanged(driver.id, False, datetime.now(UTC), uuid.uuid4(), 2)
    runner.dead_letter(b"0-1", event.to_json(), "handler failed 5 times", deliveries=6)

    call_command("events", "status", "--json")
    status = json.loads(capsys.readouterr().out)
    [topic] = [topic for topic in status["topics"] if topic["name"] == "driver-status-changed"]
    assert topic["stream"]["length"] == 1
    assert topic["stream"]["groups"][0]["name"] == "rides"
    assert topic["stream"]["groups"][0]["lag"] == 1
    assert topic["dead_letters"]["length"] == 1
    assert status["outbox"] == {"pending": 0, "oldest_pending_age_s": None}

    call_command("events", "replay-dead")
    assert "driver-status-changed: 1 dead letter(s) put back" in capsys.readouterr().out
    assert redis_client.xlen(DEAD_LETTER_STREAM) == 0
    assert json.loads(redis_client.xrevrange(STREAM, count=1)[0][1][STREAM_FIELD.encode()])["version"] == 2

    call_command("events", "status")
    assert "group rides: pending 0, lag 2" in capsys.readouterr().out


class HookFailsOnce(MatchingPoolHandler):
    """A hook that does part of its work, then fails the first time (a downstream call timing out)."""

    def on_added(self, driver_id: uuid.UUID) -> None:
        attempts = self.redis.hincrby("test:hook-attempts", str(driver_id), 1)
        super().on_added(driver_id)  # the log line: an effect done before the failure
        if attempts == 1:
            raise RuntimeError("downstream timed out")
        self.redis.hset("test:hook-effects", str(driver_id), "done")  # idempotent: once in effect


def test_a_hook_that_fails_once_is_retried_and_takes_effect_once(redis_client, caplog):
    [driver] = make_drivers(1)
    stop = threading.Event()
    runner = StreamRunner(HookFailsOnce(worker_redis()), read_client=worker_redis(), stop=stop, claim_idle=0.2)
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        wait_until(lambda: f"reading {STREAM}" in caplog.text, what="the runner to read")
        set_driver_availability(driver_id=driver.id, available=True)
        wait_until(lambda: redis_client.hget("test:hook-effects", str(driver.id)), timeout=10, what="the effect")
        wait_until(lambda: all_acknowledged(redis_client), what="the entry acknowledged")
    finally:
        stop.set()
        thread.join(timeout=10)
        redis_client.delete("test:hook-attempts", "test:hook-effects")

    # The first attempt failed after its log line and before the version was written: the
    # retry found the event not done, ran the hook again, and only then recorded the version.
    assert caplog.text.count(f"driver {driver.id} added to matching pool") == 2
    assert "downstream timed out" in caplog.text  # logged with its traceback, not swallowed
    assert MATCHING_POOL.members(redis_client) == [str(driver.id)]
    assert redis_client.hget(MATCHING_POOL.part_of(driver.id).versions_key, str(driver.id)) == b"1"


def test_replaying_an_entry_that_two_groups_dead_lettered_puts_it_back_once(redis_client, capsys):
    [driver] = make_drivers(1)
    set_driver_availability(driver_id=driver.id, available=True)
    [(entry_id, fields)] = redis_client.xrange(STREAM)
    for group in ("rides", "locations"):
        runner = StreamRunner(MatchingPoolHandler(worker_redis()), read_client=worker_redis(), stop=threading.Event())
        runner.group = group
        runner.ensure_group()
        runner.dead_letter(entry_id, fields[STREAM_FIELD.encode()], "handler failed 5 times", deliveries=6)
    assert redis_client.xlen(DEAD_LETTER_STREAM) == 2

    call_command("events", "replay-dead")
    call_command("events", "replay-dead")

    assert "1 dead letter(s) put back" in capsys.readouterr().out
    assert redis_client.xlen(DEAD_LETTER_STREAM) == 0
    assert redis_client.xlen(STREAM) == 2  # the original, and one replay of it


def test_consumers_of_dead_processes_are_removed_once_idle_with_nothing_pending(redis_client):
    [driver] = make_drivers(1)
    runner = StreamRunner(
        MatchingPoolHandler(worker_redis()), read_client=worker_redis(), stop=threading.Event(), claim_idle=0.1
    )
    runner.ensure_group()
    set_driver_availability(driver_id=driver.id, available=True)
    redis_client.xreadgroup("rides", "dead-holding", {STREAM: ">"}, count=1)  # holds one entry
    redis_client.xreadgroup("rides", "dead-empty", {STREAM: "0"})  # read its (empty) history: holds nothing

    wait_until(lambda: runner.forget_dead_consumers() == 1, timeout=5, what="the empty consumer removed")

    names = {consumer["name"] for consumer in redis_client.xinfo_consumers(STREAM, "rides")}
    assert names == {b"dead-holding"}  # its entry is claimed, never dropped


def test_events_status_with_redis_down_still_prints_the_outbox_and_exits_1(driver, redis_unreachable, capsys):
    set_driver_availability(driver_id=driver.id, available=True)  # Redis down: the event waits

    with pytest.raises(CommandError, match="Redis is unreachable") as failed:
        call_command("events", "status")

    assert failed.value.returncode == 1  # what `manage.py events status` exits with
    assert "outbox   1 event(s) waiting to be published" in capsys.readouterr().out
