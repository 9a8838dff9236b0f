"""Batched matching (RIDEHAIL_MATCH_WINDOW_SECONDS > 0): the requests of one window share the free
drivers by the least total pickup distance, with real workers, Redis and PostgreSQL; window 0
is greedy; two matchers never give a driver twice; a matcher killed mid-batch loses nothing."""

import json
import random
import signal
import uuid
from collections import Counter
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from conftest import make_drivers, make_user
from locations.positions import TRACKED_DRIVERS, Position, apply_positions
from ridehail.dashboard.health import worker_processes
from ridehail.events.heartbeat import alive_workers
from ridehail.events.models import OutboxEvent
from rides.assignment import Ask, greedy, least_total_distance
from rides.events import RIDE_STATUS, Point
from rides.models import Ride, RideStatus
from rides.pool import MATCHING_POOL
from rides.services import Trip, release_ride, request_ride
from rides.subscribers import RideMatcher
from rides.tests.test_matching_reach import riders, rides_for
from tests.processes import wait_until
from users.models import User
from users.selectors import DriverState

pytestmark = pytest.mark.django_db(transaction=True)

KM = 0.009  # degrees of latitude per km
ORIGIN = (52.5200, 13.4050)
FAST = {"RIDEHAIL_MATCH_RETRY_SECONDS": "0.2"}


def at_km(north_km: float) -> tuple[float, float]:
    return ORIGIN[0] + north_km * KM, ORIGIN[1]


def place(redis_client, drivers: list[User], spots: list[tuple[float, float]]) -> None:
    """Drivers online in the database, in the pool and tracked, with fresh positions (as bench/ places them)."""
    User.objects.filter(pk__in=[d.id for d in drivers]).update(is_available=True, status_version=1)
    states = [DriverState(d.id, True, 1) for d in drivers]
    MATCHING_POOL.merge(redis_client, states)
    TRACKED_DRIVERS.merge(redis_client, states)
    now = timezone.now()
    apply_positions(redis_client, [Position(d.id, lat, lng, now) for d, (lat, lng) in zip(drivers, spots, strict=True)])


def ask_at(rider: User, spot: tuple[float, float]) -> uuid.UUID:
    return request_ride(rider_id=rider.id, trip=Trip(Point(*spot), Point(*ORIGIN))).id


def driver_of(ride_id: uuid.UUID) -> uuid.UUID | None:
    ride = Ride.objects.get(pk=ride_id)
    return ride.driver_id if ride.status == RideStatus.ASSIGNED else None


def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL: run with DATABASE_URL=postgres://...")


# Two drivers on a line, A at 0 km and B at 3 km; the first request at 1 km, the second at -1 km.
# Greedy gives the first A (1 km) and the second B (4 km): 5 km. Together: first B (2 km),
# second A (1 km): 3 km.
LINE = {"A": 0.0, "B": 3.0}
FIRST, SECOND = 1.0, -1.0


def test_the_assignment_beats_greedy_on_a_seeded_scarce_city():
    rng = random.Random(26)
    drivers = {n: (rng.uniform(0, 6), rng.uniform(0, 6)) for n in range(50)}
    asks = []
    for ride in range(50):  # as many requests as free drivers: where greedy is poor
        x, y = rng.uniform(0, 6), rng.uniform(0, 6)
        near = sorted((((x - a) ** 2 + (y - b) ** 2) ** 0.5, d) for d, (a, b) in drivers.items())
        asks.append(Ask(ride, [(d, km) for km, d in near]))
    batched, first_come = least_total_distance(asks), greedy(asks)

    assert len(batched) >= len(first_come)  # never fewer served
    assert len({pair.driver for pair in batched}) == len(batched)  # a driver once
    assert all(pair.driver in dict(asks[pair.ride].candidates) for pair in batched)  # only in reach
    mean = sum(p.distance_km for p in batched) / len(batched)
    greedy_mean = sum(p.distance_km for p in first_come) / len(first_come)
    assert mean <= 0.85 * greedy_mean


def test_a_request_with_nobody_in_reach_is_left_out_and_the_others_still_served():
    asks = [Ask("lonely", []), Ask("r1", [("a", 1.0), ("b", 2.0)]), Ask("r2", [("a", 1.0)])]

    pairs = least_total_distance(asks)

    assert {(p.ride, p.driver) for p in pairs} == {("r1", "b"), ("r2", "a")}


def test_when_not_every_request_can_be_served_the_most_are_then_the_least_distance():
    # r1 and r2 both have only A: no full matching, the solver's "nobody" columns decide. Served
    # most: two (r3 taking its nearer A would serve one); of those, the least total: r2 on A.
    asks = [Ask("r1", [("A", 1.0)]), Ask("r2", [("A", 0.5)]), Ask("r3", [("B", 2.0), ("A", 0.1)])]

    pairs = least_total_distance(asks)

    assert {(p.ride, p.driver, p.distance_km) for p in pairs} == {("r2", "A", 0.5), ("r3", "B", 2.0)}


def test_more_requests_than_drivers_every_driver_goes_where_the_total_is_least():
    asks = [Ask("r1", [("A", 1.0), ("B", 1.0)]), Ask("r2", [("A", 0.2)]), Ask("r3", [("B", 0.0)])]

    pairs = least_total_distance(asks)

    assert {(p.ride, p.driver, p.distance_km) for p in pairs} == {("r2", "A", 0.2), ("r3", "B", 0.0)}


@pytest.mark.parametrize(
    ("window", "expected"),
    [("0", {"first": "A", "second": "B"}), ("3", {"first": "B", "second": "A"})],
    ids=["window 0 is greedy", "one window: least total distance"],
)
def test_requests_of_one_window_share_the_drivers_window_zero_is_greedy(start_worker, redis_client, window, expected):
    postgres_only()
    a, b = make_drivers(2)
    place(redis_client, [a, b], [at_km(LINE["A"]), at_km(LINE["B"])])
    names = {a.id: "A", b.id: "B"}
    rides = start_worker("rides", env={**FAST, "RIDEHAIL_MATCH_WINDOW_SECONDS": window})

    riders = make_user("first"), make_user("second")  # before: hashing a password takes a while

    first = ask_at(riders[0], at_km(FIRST))
    if window == "0":  # greedy: the first is assigned before the second asks
        wait_until(lambda: driver_of(first), what="the first assigned")
    second = ask_at(riders[1], at_km(SECOND))

    got = {name: wait_until(lambda r=r: driver_of(r), what=name) for name, r in [("first", first), ("second", second)]}
    assert {name: names[driver] for name, driver in got.items()} == expected
    if window != "0":
        rides.wait_for_output("matched a batch of 2: 2 assigned")
        rides.wait_for_output(f"ride {second} assigned to driver {a.id} (driver-000, rider second), pickup 1.00 km")


def test_a_batch_keeps_each_pickup_distance_and_tells_the_heartbeat(redis_client, settings):
    """What the dashboard shows: each assignment's pickup distance (on the ride, in its event) and
    the matcher's last batch (what its process's heartbeat reports), from one retry round in-process."""
    postgres_only()
    settings.RIDEHAIL_MATCH_WINDOW_SECONDS = 1
    a, b = make_drivers(2)
    place(redis_client, [a, b], [at_km(LINE["A"]), at_km(LINE["B"])])
    (first,) = rides_for(riders(1, "first"), at_km(FIRST))  # waited longer than a window: a retry round's
    (second,) = rides_for(riders(1, "second"), at_km(SECOND))
    matcher = RideMatcher(redis_client)
    assert matcher.heartbeat() == {"matcher": {"window_s": 1, "last_batch": None}}

    matcher.retry_waiting()

    first, second = Ride.objects.get(pk=first.pk), Ride.objects.get(pk=second.pk)
    assert (first.driver_id, second.driver_id) == (b.id, a.id)  # together: 2 km + 1 km, not greedy's 1 + 4
    assert first.pickup_distance_km == pytest.approx(2.0, abs=0.01)
    assert second.pickup_distance_km == pytest.approx(1.0, abs=0.01)
    # The events as committed (these rides were made in the database, so the relay publishes them).
    events = [json.loads(row.payload) for row in OutboxEvent.objects.filter(topic=RIDE_STATUS.name)]
    assigned = {event["rideId"]: event["pickupDistanceKm"] for event in events if event["status"] == "assigned"}
    assert assigned == {str(first.pk): first.pickup_distance_km, str(second.pk): second.pickup_distance_km}
    last = matcher.heartbeat()["matcher"]["last_batch"]
    assert (last["size"], last["assigned"]) == (2, 2)
    assert 0 <= last["solve_ms"] < 1000

    User.objects.filter(pk=a.pk).update(is_active=False)
    release_ride(ride_id=second.pk)  # given back: no driver, no distance
    assert Ride.objects.get(pk=second.pk).pickup_distance_km is None


def test_window_zero_tells_the_heartbeat_it_is_greedy(redis_client, settings):
    settings.RIDEHAIL_MATCH_WINDOW_SECONDS = 0
    assert RideMatcher(redis_client).heartbeat() == {"matcher": {"window_s": 0, "last_batch": None}}


def test_the_rides_worker_heartbeat_carries_its_last_batch_to_the_health_strip(start_worker, redis_client):
    """A real rides process: its batch reaches Redis with its next beat, and the dashboard's frame reads it."""
    postgres_only()
    a, b = make_drivers(2)
    place(redis_client, [a, b], [at_km(LINE["A"]), at_km(LINE["B"])])
    start_worker("rides", env={**FAST, "RIDEHAIL_MATCH_WINDOW_SECONDS": "2"})
    people = make_user("first"), make_user("second")
    rides = [ask_at(people[0], at_km(FIRST)), ask_at(people[1], at_km(SECOND))]
    for ride_id in rides:
        wait_until(lambda r=ride_id: driver_of(r), what="assigned")

    def matcher() -> dict | None:
        processes = next(w for w in worker_processes(redis_client) if w["name"] == "rides")["processes"]
        return processes[0]["matcher"] if len(processes) == 1 else None

    wait_until(lambda: (matcher() or {}).get("lastBatch"), timeout=15, what="the batch in a heartbeat")
    reported = matcher()
    assert reported is not None and reported["windowSeconds"] == 2
    assert (reported["lastBatch"]["size"], reported["lastBatch"]["assigned"]) == (2, 2)
    assert reported["lastBatch"]["solveMs"] >= 0
    [beat] = [w for w in alive_workers(redis_client) if w["name"] == "rides"]
    assert beat["matcher"]["last_batch"]["at"].endswith("Z")
    out = StringIO()
    call_command("events", "status", stdout=out)  # the operator's view prints what the handlers report
    assert '    matcher: {"last_batch": {"assigned": 2, ' in out.getvalue()


def test_two_matchers_never_give_a_driver_twice(start_worker, redis_client):
    postgres_only()
    rng = random.Random(7)
    drivers = make_drivers(60)
    place(redis_client, drivers, [at_km(rng.uniform(-2, 2)) for _ in drivers])
    env = {**FAST, "RIDEHAIL_MATCH_WINDOW_SECONDS": "0.3"}
    workers = [start_worker("rides", env=env), start_worker("rides", env=env)]
    riders = User.objects.bulk_create([User(username=f"many-{n}", password="!") for n in range(200)])

    ride_ids = [ask_at(rider, at_km(rng.uniform(-2, 2))) for rider in riders]

    wait_until(
        lambda: Ride.objects.filter(status=RideStatus.ASSIGNED).count() == 60, timeout=30, what="every driver busy"
    )
    assigned = Ride.objects.filter(pk__in=ride_ids, status=RideStatus.ASSIGNED).values_list("driver_id", flat=True)
    assert sorted(Counter(assigned).values()) == [1] * 60  # each driver exactly once
    assert Ride.objects.filter(status=RideStatus.REQUESTED).count() == 140

    # Each worker logs its assignments after they commit: wait for the lines, then count them.
    def lines() -> list[str]:
        return [line for worker in workers for line in worker.output.splitlines() if " assigned to driver " in line]

    wait_until(lambda: len(lines()) >= 60, timeout=10, what="the assignments logged")
    assert len(lines()) == 60


def test_a_matcher_killed_mid_batch_loses_no_request(start_worker, redis_client):
    postgres_only()
    drivers = make_drivers(4)
    place(redis_client, drivers, [at_km(n / 2) for n in range(4)])
    # A long window: the worker is killed while it holds the batch, read but not acknowledged.
    # No retry round before the kill either (a round matches every waiting ride at once).
    slow = {"RIDEHAIL_MATCH_RETRY_SECONDS": "60", "RIDEHAIL_MATCH_WINDOW_SECONDS": "8"}
    first = start_worker("rides", "--claim-idle", "1", env=slow)
    ride_ids = [ask_at(make_user(f"held-{n}"), at_km(n / 3)) for n in range(4)]

    def held() -> bool:
        return redis_client.xpending(RIDE_STATUS.stream, "rides")["pending"] == 4

    wait_until(held, timeout=15, what=f"the batch gathered: read, not acknowledged ({first.output[-2000:]})")
    first.signal(signal.SIGKILL)
    first.wait_exit(timeout=5)
    assert all(driver_of(ride_id) is None for ride_id in ride_ids)  # nothing assigned before the kill

    start_worker("rides", "--claim-idle", "1", env={**FAST, "RIDEHAIL_MATCH_WINDOW_SECONDS": "1"})

    assigned = [wait_until(lambda r=r: driver_of(r), timeout=20, what="assigned after the kill") for r in ride_ids]
    assert sorted(assigned) == sorted(d.id for d in drivers)
    # The dead worker's entries were claimed and acknowledged once their batch committed.
    wait_until(lambda: redis_client.xpending(RIDE_STATUS.stream, "rides")["pending"] == 0, timeout=20, what="acked")
