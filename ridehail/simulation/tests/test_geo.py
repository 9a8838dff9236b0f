"""The simulated drivers' paths: inside the area, at a car's speed, the same with the same seed."""

import itertools
import random

import pytest

from ridehail.simulation.agents import City, Config, Driver, Rider
from ridehail.simulation.geo import Point, advance, distance_km, parse_point, point_near, random_point

CENTER = Point(52.52, 13.405)


def drive(rng: random.Random, *, radius_km: float, kmh: float, tick_seconds: float, ticks: int) -> list[Point]:
    """What a free simulated driver does: towards a random waypoint, a new one on arrival."""
    position, waypoint = random_point(CENTER, radius_km, rng), random_point(CENTER, radius_km, rng)
    path = [position]
    for _ in range(ticks):
        position = advance(position, waypoint, kmh * tick_seconds / 3600)
        if position == waypoint:
            waypoint = random_point(CENTER, radius_km, rng)
        path.append(position)
    return path


def test_a_driver_never_leaves_the_area():
    path = drive(random.Random(7), radius_km=2.5, kmh=50, tick_seconds=2.5, ticks=5000)
    assert max(distance_km(point, CENTER) for point in path) <= 2.5 + 1e-6


def test_a_driver_moves_at_a_cars_speed():
    path = drive(random.Random(8), radius_km=3, kmh=40, tick_seconds=2.5, ticks=2000)
    steps_km = [distance_km(a, b) for a, b in itertools.pairwise(path)]
    assert max(steps_km) <= 40 * 2.5 / 3600 * 1.01  # never faster than 40 km/h
    assert sum(steps_km) / len(steps_km) > 40 * 2.5 / 3600 * 0.8  # and rarely stopped (only at waypoints)


def test_the_area_is_covered_not_just_its_centre():
    rng = random.Random(9)
    distances = [distance_km(random_point(CENTER, 2.0, rng), CENTER) for _ in range(4000)]
    outer_ring = sum(1 for d in distances if d > 2.0 / 2**0.5)  # half the disc's area lies beyond r/√2
    assert 0.45 < outer_ring / len(distances) < 0.55


def test_a_trip_ends_near_its_start_and_inside_the_area():
    rng = random.Random(10)
    for _ in range(500):
        pickup = random_point(CENTER, 2.5, rng)
        dropoff = point_near(pickup, CENTER, min_km=0.5, max_km=2.5, radius_km=2.5, rng=rng)
        assert distance_km(dropoff, CENTER) <= 2.5 + 1e-6


def test_advance_stops_on_the_target_instead_of_overshooting():
    target = Point(52.53, 13.405)
    assert advance(CENTER, target, 100) == target
    halfway = advance(CENTER, target, distance_km(CENTER, target) / 2)
    assert distance_km(halfway, target) == pytest.approx(distance_km(CENTER, target) / 2, rel=1e-3)


def test_the_same_seed_gives_the_same_drivers_and_trips():
    def city(seed: int | None) -> tuple:
        town = City(Config(seed=seed), api=None)  # type: ignore[arg-type]  # no request is made: positions and trips only
        driver, rider = Driver(town, 1), Rider(town, 1)
        return driver.position, driver.waypoint, driver.cruise_kmh, rider.trip()

    assert city(42) == city(42)
    assert city(42) != city(43)


@pytest.mark.parametrize("text", ["52.52", "91,13", "north,south", "52.5,200"])
def test_a_bad_centre_is_refused(text):
    with pytest.raises(ValueError):
        parse_point(text)
