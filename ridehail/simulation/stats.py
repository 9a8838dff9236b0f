"""What the simulator counts, and the two ways it says so: a progress line and a summary."""

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

FINAL = ("completed", "cancelled", "expired")


@dataclass
class Stats:
    drivers: int
    riders: int
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # no HTTP answer at all, by exception name
    online: set[str] = field(default_factory=set)  # simulated drivers' usernames
    requested: set[str] = field(default_factory=set)  # rides this run requested (201)
    rides: dict[str, str] = field(default_factory=dict)  # rideId → last status seen
    assigned: set[str] = field(default_factory=set)  # rides seen with a driver
    assignment_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return self.statuses.total() + self.failures.total()

    @property
    def errors(self) -> int:
        """5xx and requests with no answer: what the server must never do to a well-behaved client."""
        return sum(n for status, n in self.statuses.items() if status >= 500) + self.failures.total()

    unsigned: list[str] = field(default_factory=list)  # people who could not sign in, and so did nothing

    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def stop_clock(self) -> None:
        self.ended = time.monotonic()

    def note_ride(self, ride: dict) -> None:
        """Remember a ride's state as the API showed it, and how long its assignment took."""
        ride_id, status = ride["rideId"], ride["status"]
        self.rides[ride_id] = status
        if ride.get("driverId"):
            self.assigned.add(ride_id)
        # While it is `assigned` and at version 2, its timestamp is the moment of the assignment.
        if status == "assigned" and ride.get("version") == 2 and ride_id not in self.assignment_seconds:
            waited = parse_time(ride["timestamp"]) - parse_time(ride["requestedAt"])
            self.assignment_seconds[ride_id] = waited.total_seconds()

    def count(self, status: str) -> int:
        return sum(1 for ride_id in self.requested if self.rides.get(ride_id) == status)

    def rides_line(self) -> str:
        matched = len(self.requested & self.assigned)
        finals = " ".join(f"{status} {self.count(status)}" for status in FINAL)
        return f"rides requested {len(self.requested)} assigned {matched} {finals}"

    def progress_line(self) -> str:
        return (
            f"t={self.elapsed():.0f}s drivers online {len(self.online)}/{self.drivers}, {self.rides_line()}, "
            f"requests {self.requests:,} errors {self.errors:,}"
        )

    def summary(self) -> list[str]:
        seconds = max(self.elapsed(), 0.001)
        by_status = ", ".join(f"{status}: {n:,}" for status, n in sorted(self.statuses.items())) or "none"
        errors = [f"{status}: {n:,}" for status, n in sorted(self.statuses.items()) if status >= 500]
        errors += [f"{name}: {n:,}" for name, n in sorted(self.failures.items())]
        waits = list(self.assignment_seconds.values())
        mean = f"{sum(waits) / len(waits):.2f} s over {len(waits)} rides" if waits else "no ride seen assigned"
        return [
            f"simulated {seconds:.0f} s: {self.drivers} drivers, {self.riders} riders",
            f"requests {self.requests:,} ({self.requests / seconds:,.0f}/s) by status: {by_status}",
            f"errors {self.errors:,} (5xx or no answer){': ' + ', '.join(errors) if errors else ''}",
            self.rides_line(),
            f"request to assignment: mean {mean}",
        ] + ([f"could not sign in: {', '.join(self.unsigned)}"] if self.unsigned else [])


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)
