"""With replicas, a row counts as published only once a replica holds its stream entry (WAIT):
a master that dies right after a publish then loses no committed event, because a row no
replica confirmed stays pending and the relay publishes it again."""

import json
import signal
import time
from collections.abc import Iterator

import pytest
import redis

from ridehail.events.connection import shared_redis
from ridehail.events.models import OutboxEvent
from ridehail.events.outbox import relay_once
from ridehail.events.publisher import mark, replica_wait_ms
from ridehail.events.topic import STREAM_FIELD
from tests.faults import TcpProxy
from tests.processes import RedisServer, wait_until
from users.events import DRIVER_STATUS
from users.services import set_driver_availability

STREAM = DRIVER_STATUS.stream

pytestmark = pytest.mark.django_db(transaction=True)


class Pair:
    def __init__(self, master: RedisServer, replica: RedisServer) -> None:
        self.master, self.replica = master, replica

    def pause_replica(self) -> None:
        """SIGSTOP: the replica keeps its link (the master still lists it) but acknowledges nothing."""
        assert self.replica.process is not None
        self.replica.process.send_signal(signal.SIGSTOP)

    def resume_replica(self) -> None:
        assert self.replica.process is not None
        self.replica.process.send_signal(signal.SIGCONT)


def in_sync(master: RedisServer, replica: RedisServer) -> bool:
    try:
        listed = master.client.info("replication").get("connected_slaves", 0) == 1
        return listed and replica.client.info("replication").get("master_link_status") == "up"
    except redis.RedisError:
        return False


@pytest.fixture
def pair(settings) -> Iterator[Pair]:
    """A master this process publishes to, and its replica (a second redis-server with --replicaof)."""
    master = RedisServer("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0").start()
    replica = RedisServer("--replicaof", "127.0.0.1", str(master.port)).start()
    settings.REDIS_URL = master.url
    shared_redis.cache_clear()
    try:
        wait_until(lambda: in_sync(master, replica), timeout=15, what="the replica in sync")
        yield Pair(master, replica)
    finally:
        if replica.process is not None and replica.process.poll() is None:
            replica.process.send_signal(signal.SIGCONT)
        replica.stop()
        master.stop()
        shared_redis.cache_clear()


def entries(client) -> list[dict]:
    return [json.loads(fields[STREAM_FIELD.encode()]) for _, fields in client.xrange(STREAM)]


def pending() -> list[int]:
    return list(OutboxEvent.objects.filter(published_at__isnull=True).values_list("version", flat=True))


def test_a_row_is_marked_only_once_the_replica_holds_its_entry(driver, pair, settings):
    # A replica that is up acknowledges within WAIT's bound, a fifth of this (100 ms by default):
    # on a machine running the whole suite it once took longer, and the row, rightly, stayed
    # pending for the relay. A bound of 1 s gives an acknowledgement on a busy machine the time.
    settings.RIDEHAIL_PUBLISH_TIMEOUT = 5
    shared_redis.cache_clear()
    set_driver_availability(driver_id=driver.id, available=True)

    row = OutboxEvent.objects.get()
    assert row.published_at is not None
    # Marked by its request, so the replica acknowledged it before: it holds the entry now.
    assert entries(pair.replica.client) == [json.loads(row.payload)]
    assert pair.replica.client.get(mark(DRIVER_STATUS, str(driver.id))) == b"1"


def test_with_the_replica_paused_the_row_stays_pending_and_a_later_relay_round_marks_it(driver, pair):
    pair.pause_replica()
    started = time.monotonic()
    set_driver_availability(driver_id=driver.id, available=True)
    took = time.monotonic() - started

    # Out on the master, but no replica confirmed it: not marked. The request waited once, bounded.
    assert [event["version"] for event in entries(pair.master.client)] == [1]
    assert pending() == [1]
    assert took < replica_wait_ms() / 1000 + 0.3, f"the request took {took:.3f}s"

    assert relay_once() == 1  # still no replica: the relay leaves it pending too, without looping
    assert pending() == [1]

    pair.resume_replica()
    wait_until(lambda: relay_once() >= 0 and pending() == [], timeout=10, what="the row marked by the relay")
    # Once: the key's mark made the relay's publish a no-op; the replica holds the one entry.
    assert [event["version"] for event in entries(pair.master.client)] == [1]
    assert [event["version"] for event in entries(pair.replica.client)] == [1]


def test_rows_the_relay_publishes_are_marked_only_once_the_replica_holds_them(driver, other_driver, pair):
    pair.pause_replica()
    set_driver_availability(driver_id=driver.id, available=True)
    set_driver_availability(driver_id=other_driver.id, available=True)
    set_driver_availability(driver_id=driver.id, available=False)
    assert pending() == [1, 1, 2]

    relay_once()
    assert pending() == [1, 1, 2]

    pair.resume_replica()
    wait_until(lambda: relay_once() >= 0 and pending() == [], timeout=10, what="every row marked")
    events = entries(pair.replica.client)
    assert [(event["driverId"], event["version"]) for event in events] == [
        (str(driver.id), 1),
        (str(other_driver.id), 1),
        (str(driver.id), 2),
    ]


def test_an_entry_lost_with_its_master_goes_out_again_from_the_pending_row(driver, settings):
    """The failover case on one pair: the master took the entry, its replica never got it (the
    link held it, then broke), the replica becomes the master. The row was never marked, so the
    relay publishes it again: the same event."""
    master = RedisServer("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0").start()
    link = TcpProxy(master.port).start()
    replica = RedisServer("--replicaof", "127.0.0.1", str(link.port)).start()
    try:
        settings.REDIS_URL = master.url
        shared_redis.cache_clear()
        wait_until(lambda: in_sync(master, replica), timeout=15, what="the replica in sync")
        link.freeze()  # what the master sends its replica from now on stays in the link
        set_driver_availability(driver_id=driver.id, available=True)
        assert pending() == [1]  # no replica confirmed it
        [event] = entries(master.client)

        assert master.process is not None
        master.process.kill()  # dies before its replica got the entry ...
        master.process.wait(timeout=5)
        link.cut()  # ... which is lost with the link
        replica.client.replicaof("NO", "ONE")  # promoted, as a failover would
        assert entries(replica.client) == []  # Redis lost the committed event
        settings.REDIS_URL = replica.url  # the service follows the new master
        shared_redis.cache_clear()

        relay_once()

        assert pending() == []
        assert entries(replica.client) == [event]  # back: the same event, same eventId and version
    finally:
        link.stop()
        replica.stop()
        master.stop()
        shared_redis.cache_clear()
