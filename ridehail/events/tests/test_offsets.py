"""`manage.py events replay`: a consumer group moved back processes again what its stream holds."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from conftest import make_drivers, online_in_database
from locations.events import DRIVER_LOCATION
from locations.subscribers import TRACKED_DRIVERS
from ridehail.events import metrics
from tests.processes import wait_until
from users.events import DRIVER_STATUS
from users.services import set_driver_availability

STREAM = DRIVER_STATUS.stream
IDS = [b"1000-0", b"2000-0", b"3000-0", b"4000-0"]


def replay(*, group: str, start: str, topic: str = DRIVER_STATUS.name) -> str:
    out = StringIO()
    call_command("events", "replay", "--topic", topic, "--group", group, "--from", start, stdout=out)
    return out.getvalue()


@pytest.fixture
def stream_of_four(redis_client) -> None:
    """Four entries at known ids (a second apart, from the epoch on), and a group `audit` that read them all."""
    for entry_id in IDS:
        redis_client.xadd(STREAM, {"event": b"{}"}, id=entry_id)
    redis_client.xgroup_create(STREAM, "audit", id="0")
    assert read(redis_client, "audit") == IDS


def read(client, group: str) -> list[bytes]:
    """What the group is handed now (and acknowledges), as a worker would."""
    response = client.xreadgroup(group, "test", {STREAM: ">"}, count=100)
    entries = [entry_id for entry_id, _ in response[0][1]] if response else []
    if entries:
        client.xack(STREAM, group, *entries)
    return entries


@pytest.mark.parametrize(
    ("start", "again"),
    [
        ("start", IDS),
        ("3000-0", IDS[2:]),  # the entry named comes again too
        ("3000", IDS[2:]),
        ("1970-01-01T00:00:02.500Z", IDS[2:]),  # a time: the first entry at or after it
        ("1970-01-01T01:00:02+01:00", IDS[1:]),
        ("0-1", IDS),
    ],
)
def test_a_group_moved_back_is_handed_again_everything_from_there(redis_client, stream_of_four, start, again):
    output = replay(group="audit", start=start)
    assert read(redis_client, "audit") == again
    assert f"{len(again)} entries to process again" in output or "unknown number" in output


def test_moving_back_to_the_start_leaves_the_lag_exact_after_a_trim(redis_client, stream_of_four):
    redis_client.xtrim(STREAM, minid="2000-0", approximate=False)  # the first entry is gone: it was read before
    assert "3 entries to process again" in replay(group="audit", start="start")
    assert read(redis_client, "audit") == IDS[1:]


def test_a_new_group_from_the_start_reads_everything_the_stream_holds(redis_client, stream_of_four):
    assert "created at the start of" in replay(group="newcomer", start="start")
    assert read(redis_client, "newcomer") == IDS


@pytest.mark.parametrize(
    ("topic", "group", "start", "message"),
    [
        ("no-such-topic", "audit", "start", "unknown topic 'no-such-topic'"),
        (DRIVER_LOCATION.name, "locations", "start", "is live only"),
        (DRIVER_STATUS.name, "nobody", "1000-0", "no consumer group 'nobody'"),
        (DRIVER_STATUS.name, "audit", "yesterday", "--from 'yesterday' is not"),
        (DRIVER_STATUS.name, "audit", "2026-02-01T12:00:00", "--from '2026-02-01T12:00:00' is not"),  # no zone
        (DRIVER_STATUS.name, "audit", "9-9-9", "--from '9-9-9' is not"),
    ],
)
def test_what_cannot_be_replayed_is_a_clear_error_and_changes_nothing(
    redis_client, stream_of_four, topic, group, start, message
):
    groups_before = redis_client.xinfo_groups(STREAM)
    with pytest.raises(CommandError, match=message) as raised:
        replay(topic=topic, group=group, start=start)
    assert raised.value.returncode == 1
    assert redis_client.xinfo_groups(STREAM) == groups_before


def test_a_replay_never_moves_a_group_forward(redis_client, stream_of_four):
    replay(group="audit", start="1000-0")
    redis_client.xreadgroup("audit", "test", {STREAM: ">"}, count=1)  # read 1000-0 only
    with pytest.raises(CommandError, match="only moves back"):
        replay(group="audit", start="4000-0")
    assert read(redis_client, "audit") == IDS[1:]  # nothing skipped


@pytest.mark.django_db(transaction=True)
def test_replaying_the_locations_group_leaves_its_state_equal_to_the_database(redis_client, start_worker):
    redis_client.delete(metrics.HANDLED)  # counts of earlier tests out of the way
    worker = start_worker("locations", "--transport", "stream")
    drivers = make_drivers(4)
    for driver in drivers:
        set_driver_availability(driver_id=driver.id, available=True)
    for driver in drivers[:2]:
        set_driver_availability(driver_id=driver.id, available=False)
    events = 6

    def handled() -> int:
        return metrics.read_handled(redis_client).get(("locations", DRIVER_STATUS.name), 0)

    def caught_up(count: int) -> bool:
        group = next(g for g in redis_client.xinfo_groups(STREAM) if g["name"] == b"locations")
        return handled() >= count and group["lag"] == 0 and group["pending"] == 0

    wait_until(lambda: caught_up(events), what="the worker handled every event")
    assert TRACKED_DRIVERS.members(redis_client) == online_in_database()
    versions = TRACKED_DRIVERS.versions(redis_client, [driver.id for driver in drivers])

    assert f"{events} entries to process again" in replay(group="locations", start="start")

    wait_until(lambda: caught_up(2 * events), what="the worker handled every event again")
    assert handled() == 2 * events
    assert TRACKED_DRIVERS.members(redis_client) == online_in_database()
    assert TRACKED_DRIVERS.versions(redis_client, [driver.id for driver in drivers]) == versions
    assert "trimmed" not in worker.output  # the replay is not taken for a gap (no rebuild)
