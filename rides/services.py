"""Writes on rides: one function per transition, the only way a ride's status changes.

Each locks the ride's row, checks the transition is allowed from the status it finds, bumps
the version, saves, and writes the `ride-status-changed` event to the outbox in the same
transaction (published once it commits). What the database refuses (a second active ride
for a rider, a second assigned ride for a driver) ends in a clean exception, never a 500.

    requested ──► assigned ──► completed
        │    \\  ◄──┘ │      (back to requested: its driver was deactivated)
        ▼     ▼       ▼
     expired  cancelled
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from ridehail.events.publisher import publish_on_commit
from ridehail.events.tracing import traced
from rides.events import Point, RideStatusChanged
from rides.models import Ride, RideStatus
from rides.selectors import ride_state
from users.models import Role, User


class RideConflict(Exception):
    """The change is not possible from the ride's status (or the rider already has a ride)."""

    def __init__(self, detail: str, status: str) -> None:
        super().__init__(detail)
        self.detail, self.status = detail, status


class DriverUnavailable(Exception):
    """The driver went offline, or has an assigned ride already: try another one."""


@dataclass(frozen=True)
class Assignment:
    """One ride of a batch given to one driver, `pickup_distance_km` apart (as the matcher measured)."""

    ride_id: uuid.UUID
    driver_id: uuid.UUID
    pickup_distance_km: float


# What assigning a ride writes besides its status, and what giving it back clears: one UPDATE.
ASSIGNMENT_FIELDS = ["driver", "assigned_at", "pickup_distance_km"]


@dataclass(frozen=True)
class Trip:
    pickup: Point
    dropoff: Point


@traced
def request_ride(*, rider_id: uuid.UUID, trip: Trip) -> Ride:
    """A rider asks for a ride; raises RideConflict if they already have a requested or assigned one."""
    now = timezone.now()
    ride = Ride(
        rider_id=rider_id,
        pickup_lat=trip.pickup.lat,
        pickup_lng=trip.pickup.lng,
        dropoff_lat=trip.dropoff.lat,
        dropoff_lng=trip.dropoff.lng,
        requested_at=now,
        status_changed_at=now,
    )
    try:
        with transaction.atomic():
            ride.save(force_insert=True)  # the partial unique index: one active ride per rider
            _announce(ride)
    except IntegrityError:
        active = Ride.objects.filter(rider_id=rider_id, status__in=[RideStatus.REQUESTED, RideStatus.ASSIGNED]).first()
        raise RideConflict("You already have a ride.", active.status if active else RideStatus.REQUESTED) from None
    return ride


@traced
def assign_ride(*, ride_id: uuid.UUID, driver_id: uuid.UUID, pickup_distance_km: float) -> Ride | None:
    """Give a requested ride to a driver; None if the ride is no longer waiting (or another
    worker holds it right now). Raises DriverUnavailable if the driver cannot take it.

    `pickup_distance_km`: how far the driver is from the pickup, as the matcher measured it
    when it chose them; kept with the assignment, in the same write."""
    try:
        with transaction.atomic():
            # SKIP LOCKED: a ride another worker is assigning is theirs; this one moves on.
            ride = Ride.objects.select_for_update(skip_locked=True).filter(pk=ride_id).first()
            if ride is None or ride.status != RideStatus.REQUESTED:
                return None
            # The driver's row too, in the order status changes take it: going offline and
            # being assigned a ride cannot cross.
            # Active too: a driver deactivated by any means (a queryset .update() included, which
            # nothing hears) is never given a ride.
            available = (
                User.objects.select_for_update()
                .filter(pk=driver_id, role=Role.DRIVER, is_active=True)
                .values_list("is_available", flat=True)
                .first()
            )
            if not available:
                raise DriverUnavailable(f"driver {driver_id} is not available")
            ride.driver_id, ride.assigned_at, ride.pickup_distance_km = driver_id, timezone.now(), pickup_distance_km
            _change(ride, RideStatus.ASSIGNED, extra_fields=ASSIGNMENT_FIELDS)
    except IntegrityError:
        # The partial unique index: the driver was given another ride a moment ago. The whole
        # transaction is rolled back; nothing of it happened.
        raise DriverUnavailable(f"driver {driver_id} has an assigned ride already") from None
    return ride


@traced
def assign_rides(pairs: Sequence[Assignment]) -> list[Ride]:
    """A batch's assignments in one transaction; returns the rides assigned.

    The same checks as `assign_ride`, for many at once: rides still requested and not being
    assigned elsewhere (SKIP LOCKED), drivers active and online (their rows locked in id order,
    so two batches never wait on each other in a cycle) with no assigned ride (read after the
    locks: every assignment locks its driver first). A pair that fails a check is left out, its
    ride still requested, for the caller to try elsewhere. Should the database still refuse
    (the partial unique indexes), nothing of the batch happened and each pair is tried alone.
    """
    if not pairs:
        return []
    chosen = {pair.ride_id: pair for pair in pairs}
    try:
        with transaction.atomic():
            rides = list(
                Ride.objects.select_for_update(skip_locked=True)
                .filter(pk__in=list(chosen), status=RideStatus.REQUESTED)
                .order_by("pk")
            )
            wanted = [chosen[ride.id].driver_id for ride in rides]
            available = set(
                User.objects.select_for_update()
                .filter(pk__in=wanted, role=Role.DRIVER, is_active=True, is_available=True)
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            busy = Ride.objects.filter(driver_id__in=available, status=RideStatus.ASSIGNED)
            available -= set(busy.values_list("driver_id", flat=True))
            assigned = [ride for ride in rides if chosen[ride.id].driver_id in available]
            now = timezone.now()
            for ride in assigned:
                ride.driver_id, ride.pickup_distance_km = chosen[ride.id].driver_id, chosen[ride.id].pickup_distance_km
                ride.assigned_at = now
                _change(ride, RideStatus.ASSIGNED, extra_fields=ASSIGNMENT_FIELDS)
    except IntegrityError:
        assigned = []
        for pair in pairs:
            try:
                alone = assign_ride(
                    ride_id=pair.ride_id, driver_id=pair.driver_id, pickup_distance_km=pair.pickup_distance_km
                )
                if alone is not None:
                    assigned.append(alone)
            except DriverUnavailable:
                continue
    return assigned


@traced
def release_ride(*, ride_id: uuid.UUID) -> Ride | None:
    """Give an assigned ride back to matching (requested, no driver) if its driver was deactivated.

    Their token is refused, so they could never complete it. None if the ride is no longer
    assigned or its driver is active. It waits for a driver anew: the matching timeout counts
    from now (status_changed_at), not from requested_at.
    """
    with transaction.atomic():
        ride = Ride.objects.select_for_update().filter(pk=ride_id, status=RideStatus.ASSIGNED).first()
        if ride is None or (
            ride.driver_id is not None and User.objects.filter(pk=ride.driver_id, is_active=True).exists()
        ):
            return None
        ride.driver_id, ride.assigned_at, ride.pickup_distance_km = None, None, None
        _change(ride, RideStatus.REQUESTED, extra_fields=ASSIGNMENT_FIELDS)
    return ride


@traced
def cancel_ride(*, ride_id: uuid.UUID) -> Ride:
    """Cancel a requested or assigned ride (its rider, or staff: the view checks who)."""
    return _transition(ride_id, to=RideStatus.CANCELLED, allowed_from=[RideStatus.REQUESTED, RideStatus.ASSIGNED])


@traced
def complete_ride(*, ride_id: uuid.UUID) -> Ride:
    """The driver dropped the rider off; the driver is free for the next match."""
    return _transition(ride_id, to=RideStatus.COMPLETED, allowed_from=[RideStatus.ASSIGNED])


@traced
def expire_ride(*, ride_id: uuid.UUID) -> Ride | None:
    """No driver in time: None if the ride was assigned or cancelled meanwhile."""
    try:
        return _transition(ride_id, to=RideStatus.EXPIRED, allowed_from=[RideStatus.REQUESTED])
    except RideConflict:
        return None


def _transition(ride_id: uuid.UUID, *, to: RideStatus, allowed_from: list[RideStatus]) -> Ride:
    with transaction.atomic():
        ride = Ride.objects.select_for_update().get(pk=ride_id)
        if ride.status not in allowed_from:
            raise RideConflict(f"A {ride.status} ride cannot become {to}.", ride.status)
        _change(ride, to)
    return ride


def _change(ride: Ride, status: RideStatus, *, extra_fields: tuple[str, ...] | list[str] = ()) -> None:
    ride.status = status
    ride.version += 1
    ride.status_changed_at = timezone.now()
    ride.save(update_fields=["status", "version", "status_changed_at", *extra_fields])
    _announce(ride)


def _announce(ride: Ride) -> None:
    publish_on_commit(RideStatusChanged(ride=ride_state(ride), event_id=uuid.uuid4()))
