"""Simulated drivers and riders: each one a coroutine that behaves like a person with an app.

A driver signs in, goes online, drives towards random waypoints and reports where it is every
few seconds; when `GET /api/rides/current` hands it a ride it drives to the pickup, then to the
dropoff, and completes it. Now and then a free driver takes a break (offline, then back online).
A rider signs in, waits a while, requests a ride somewhere in the area, watches it, sometimes
cancels, and once it ends waits and requests another.
"""

import asyncio
import random
import time
from dataclasses import dataclass, field

from ridehail.simulation.client import Api, retry_after
from ridehail.simulation.geo import Point, advance, distance_km, point_near, random_point

PASSWORD = "simulated-city-pass"
BERLIN = Point(52.52, 13.405)  # Alexanderplatz: the default centre


@dataclass(frozen=True)
class Config:
    drivers: int = 50
    riders: int = 20
    seconds: float = 0  # 0: until Ctrl-C
    base_url: str = "http://127.0.0.1:8000"
    center: Point = BERLIN
    area_km: float = 2.5  # everyone stays this close to the centre: any two points within matching's 5 km
    report_every: float = 2.5  # seconds between a driver's position reports
    poll_every: float = 2.0  # seconds between a rider's looks at their ride
    trip_seconds: float = 30.0  # the most a leg of a ride (to the pickup, to the dropoff) takes: a sped-up city
    rider_wait: tuple[float, float] = (5.0, 30.0)  # seconds a rider waits before the next request
    cancel_chance: float = 0.1  # of a ride, that its rider cancels it
    break_chance: float = 0.004  # per report, that a free driver goes offline for a while
    seed: int | None = None


@dataclass
class City:
    """What every simulated person shares: the settings, the API and the counters."""

    config: Config
    api: Api
    sign_ins: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))  # hashing is the server's cost
    # Whether the accounts are probably new (a first run): then register before logging in, else
    # log in first. Each wrong guess flips it, so a run has a few refused sign-ins (each a 4xx
    # warning in the server's log) where trying one way for everyone had one per person.
    new_accounts: bool = False

    def rng(self, name: str) -> random.Random:
        """Each person's own generator: with --seed, the same paths whatever the scheduling."""
        seed = self.config.seed
        return random.Random(f"{seed}:{name}") if seed is not None else random.Random()

    async def sign_in(self, username: str, role: str) -> str | None:
        """Log in, registering first if the account is new: runs again reuse the accounts."""
        async with self.sign_ins:
            credentials = {"username": username, "password": PASSWORD}
            registered = self.new_accounts and await self.register(credentials, role)
            login = await self.api.patiently("POST", "/api/auth/login", body=credentials)
            if login is not None and login.status_code == 401 and not registered:
                self.new_accounts = True
                await self.register(credentials, role)
                login = await self.api.patiently("POST", "/api/auth/login", body=credentials)
        if login is None or login.status_code != 200:
            self.api.stats.unsigned.append(username)
            return None
        return login.json()["token"]

    async def register(self, credentials: dict[str, str], role: str) -> bool:
        """Sign up; False if the account existed already (a 400), which turns the guess back to logging in."""
        response = await self.api.patiently("POST", "/api/auth/register", body={**credentials, "role": role})
        if response is not None and response.status_code == 400:
            self.new_accounts = False
        return response is not None and response.status_code == 201


class Driver:
    def __init__(self, city: City, number: int) -> None:
        self.city, self.config, self.api = city, city.config, city.api
        self.name = f"sim-driver-{number:04d}"
        self.rng = city.rng(self.name)
        self.token = ""
        self.position = random_point(self.config.center, self.config.area_km, self.rng)
        self.waypoint = random_point(self.config.center, self.config.area_km, self.rng)
        self.cruise_kmh = self.rng.uniform(30, 50)
        self.leg_kmh = self.cruise_kmh
        self.ride: dict | None = None
        self.picked_up = False
        self.back_at: float | None = None  # on a break until then
        self.moved_at = time.monotonic()
        self.reports = 0

    @property
    def online(self) -> bool:
        return self.name in self.city.api.stats.online

    async def run(self) -> None:
        self.token = await self.city.sign_in(self.name, "driver") or ""
        if not self.token:
            return
        await self.set_online(True)
        while True:
            await asyncio.sleep(await self.step())

    async def step(self) -> float:
        """One tick: move, report, look for work; returns the seconds until the next tick."""
        if self.back_at is not None:
            return await self.end_break() if time.monotonic() >= self.back_at else self.config.report_every
        if self.ride is None and self.rng.random() < self.config.break_chance:
            return await self.take_break()
        self.move()
        delay = await self.report()
        self.reports += 1
        if self.ride is not None and self.picked_up and self.position == self.target():
            await self.complete()
        elif self.ride is None and self.reports % 2 == 0:
            await self.look_for_ride()
        elif self.ride is not None and self.reports % 4 == 0:
            await self.check_ride_still_mine()
        return delay * self.rng.uniform(0.9, 1.1)  # jitter: reports do not arrive in lockstep

    def move(self) -> None:
        now = time.monotonic()
        hours, self.moved_at = (now - self.moved_at) / 3600, now
        self.position = advance(self.position, self.target(), self.leg_kmh * hours)
        if self.position == self.target():
            self.arrive()

    def target(self) -> Point:
        if self.ride is None:
            return self.waypoint
        place = self.ride["dropoff"] if self.picked_up else self.ride["pickup"]
        return Point(place["lat"], place["lng"])

    def arrive(self) -> None:
        if self.ride is None:
            self.waypoint = random_point(self.config.center, self.config.area_km, self.rng)
        elif not self.picked_up:
            self.picked_up = True
            self.start_leg()
        # At the dropoff the driver stays put until `complete` succeeds.

    def start_leg(self) -> None:
        """Drive at cruising speed, or faster if the leg would take longer than `trip_seconds`."""
        needed_kmh = distance_km(self.position, self.target()) / self.config.trip_seconds * 3600
        self.leg_kmh = max(self.cruise_kmh, needed_kmh)

    async def report(self) -> float:
        response = await self.api.call(
            "PUT", "/api/locations/driver-location", token=self.token, body=self.position.as_json()
        )
        if response is None:
            return self.config.report_every
        if response.status_code == 429:
            return max(self.config.report_every, retry_after(response))
        if response.status_code == 409:  # the server has us offline (a restart, an operator): go online again
            await self.set_online(True)
        return self.config.report_every

    async def set_online(self, available: bool) -> bool:
        response = await self.api.patiently(
            "PUT", "/api/users/driver-status", token=self.token, body={"available": available}
        )
        if response is None or response.status_code != 200:
            return False
        (self.city.api.stats.online.add if available else self.city.api.stats.online.discard)(self.name)
        return True

    async def look_for_ride(self) -> None:
        response = await self.api.call("GET", "/api/rides/current", token=self.token)
        if response is None or response.status_code != 200 or not response.json()["ride"]:
            return
        self.take(response.json()["ride"])

    def take(self, ride: dict) -> None:
        self.city.api.stats.note_ride(ride)
        self.ride, self.picked_up = ride, False
        self.start_leg()

    async def check_ride_still_mine(self) -> None:
        """A rider may cancel while we drive: the current ride tells."""
        response = await self.api.call("GET", "/api/rides/current", token=self.token)
        if response is None or response.status_code != 200 or self.ride is None:
            return
        current = response.json()["ride"]
        if current is None or current["rideId"] != self.ride["rideId"]:
            self.drop_ride()

    async def complete(self) -> None:
        assert self.ride is not None
        response = await self.api.call("POST", f"/api/rides/{self.ride['rideId']}/complete", token=self.token)
        if response is None or response.status_code not in (200, 409):
            return  # tried again at the next tick
        if response.status_code == 200:
            self.city.api.stats.note_ride(response.json())
        self.drop_ride()  # done, or not ours to complete any more (409: its rider cancelled it)

    def drop_ride(self) -> None:
        self.ride, self.picked_up, self.leg_kmh = None, False, self.cruise_kmh

    async def take_break(self) -> float:
        if await self.set_online(False):
            self.back_at = time.monotonic() + self.rng.uniform(10, 30)
        return self.config.report_every

    async def end_break(self) -> float:
        if await self.set_online(True):
            self.back_at = None
            self.moved_at = time.monotonic()  # parked during the break
        return self.config.report_every

    async def leave(self) -> None:
        """At the end of the run: go offline, so the map is not left with drivers that stopped reporting."""
        if self.token and self.online:
            await self.set_online(False)


class Rider:
    def __init__(self, city: City, number: int) -> None:
        self.city, self.config, self.api = city, city.config, city.api
        self.name = f"sim-rider-{number:04d}"
        self.rng = city.rng(self.name)
        self.token = ""
        self.ride_id: str | None = None

    async def run(self) -> None:
        self.token = await self.city.sign_in(self.name, "rider") or ""
        if not self.token:
            return
        await asyncio.sleep(self.rng.uniform(1, self.config.rider_wait[0]))  # not all at once
        while True:
            if ride := await self.request():
                await self.follow(ride)
            await asyncio.sleep(self.rng.uniform(*self.config.rider_wait))

    def trip(self) -> dict:
        center, area = self.config.center, self.config.area_km
        pickup = random_point(center, area, self.rng)
        dropoff = point_near(pickup, center, min_km=0.5, max_km=2.5, radius_km=area, rng=self.rng)
        return {"pickup": pickup.as_json(), "dropoff": dropoff.as_json()}

    async def request(self) -> dict | None:
        response = await self.api.call("POST", "/api/rides", token=self.token, body=self.trip())
        if response is None:
            return None
        if response.status_code == 201:
            ride = response.json()
            self.city.api.stats.requested.add(ride["rideId"])
            return ride
        if response.status_code == 409:  # a ride left from an earlier run: see it through first
            current = await self.api.call("GET", "/api/rides/current", token=self.token)
            if current is not None and current.status_code == 200:
                return current.json()["ride"]
        return None

    async def follow(self, ride: dict) -> None:
        """Watch the ride until it ends; cancel it along the way if this rider is the cancelling kind."""
        self.ride_id = ride["rideId"]
        cancel_at = (
            time.monotonic() + self.rng.uniform(3, 20) if self.rng.random() < self.config.cancel_chance else None
        )
        self.city.api.stats.note_ride(ride)
        while ride["status"] in ("requested", "assigned"):
            await asyncio.sleep(self.config.poll_every)
            if cancel_at is not None and time.monotonic() >= cancel_at:
                ride = await self.cancel() or ride
                cancel_at = None
            else:
                ride = await self.look(ride)
        self.ride_id = None

    async def look(self, ride: dict) -> dict:
        response = await self.api.call("GET", f"/api/rides/{ride['rideId']}", token=self.token)
        if response is None or response.status_code != 200:
            return ride
        seen = response.json()
        self.city.api.stats.note_ride(seen)
        return seen

    async def cancel(self) -> dict | None:
        response = await self.api.call("POST", f"/api/rides/{self.ride_id}/cancel", token=self.token)
        if response is None or response.status_code not in (200, 409):
            return None
        if response.status_code == 409:  # it ended first (completed or expired): look at it
            return None
        ride = response.json()
        self.city.api.stats.note_ride(ride)
        return ride

    async def leave(self) -> None:
        """At the end of the run: cancel a waiting ride, so the next run's rider can request one.

        Counted like any other cancellation (the summary is printed after everyone left). A 409
        means it ended first, or a cancel that the end of the run cut short got there: look.
        """
        if self.token and self.ride_id and await self.cancel() is None:
            await self.look({"rideId": self.ride_id})
