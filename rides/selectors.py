"""Reads on rides: for the API, the matcher and the dashboard."""

import uuid
from collections.abc import Iterator
from datetime import timedelta

from django.db.models import Count, DurationField, Exists, ExpressionWrapper, F, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from rides.events import Point, RideState
from rides.models import ACTIVE, Ride, RideStatus
from users.models import Role, User
from users.permissions import is_operator


def ride_state(ride: Ride) -> RideState:
    return RideState(
        ride_id=ride.id,
        rider_id=ride.rider_id,
        driver_id=ride.driver_id,
        status=RideStatus(ride.status),
        pickup=Point(ride.pickup_lat, ride.pickup_lng),
        dropoff=Point(ride.dropoff_lat, ride.dropoff_lng),
        requested_at=ride.requested_at,
        timestamp=ride.status_changed_at,
        version=ride.version,
        pickup_distance_km=ride.pickup_distance_km,
    )


def current_ride(user: User) -> Ride | None:
    """The caller's requested or assigned ride: as its rider, or (a driver) the one they drive."""
    if user.is_driver:
        return Ride.objects.filter(driver=user, status=RideStatus.ASSIGNED).first()
    return Ride.objects.filter(rider=user, status__in=ACTIVE).first()


def ride_visible_to(user: User, ride_id: uuid.UUID) -> Ride | None:
    """The ride if the caller may see it (its rider, its driver, staff); None otherwise, as if unknown."""
    rides = Ride.objects.filter(pk=ride_id)
    if not is_operator(user):
        rides = rides.filter(Q(rider=user) | Q(driver=user))
    return rides.first()


def recent_rides(*, status: RideStatus | None = None, limit: int = 100) -> QuerySet[Ride]:
    rides = Ride.objects.order_by("-requested_at")
    if status is not None:
        rides = rides.filter(status=status)
    return rides[:limit]


def active_rides() -> list[RideState]:
    """Every requested or assigned ride, oldest first (the dashboard's snapshot)."""
    return [ride_state(ride) for ride in Ride.objects.filter(status__in=ACTIVE).order_by("requested_at")]


def waiting_rides(*, page_size: int, waiting_for: float = 0.0) -> Iterator[RideState]:
    """Every requested ride, oldest first, read a page at a time: what the matcher tries again.

    Keyset pages on (requested_at, id), so a ride is read once however many share an instant,
    and a round reaches every waiting ride however many wait before it. `waiting_for`: only
    rides requested (again) at least that many seconds ago.
    """
    rides = Ride.objects.filter(status=RideStatus.REQUESTED).order_by("requested_at", "id")
    if waiting_for > 0:
        rides = rides.filter(status_changed_at__lte=timezone.now() - timedelta(seconds=waiting_for))
    page = list(rides[:page_size])
    while page:
        yield from (ride_state(ride) for ride in page)
        last = page[-1]
        after = Q(requested_at__gt=last.requested_at) | Q(requested_at=last.requested_at, id__gt=last.id)
        page = list(rides.filter(after)[:page_size]) if len(page) == page_size else []


def overdue_ride_ids(*, timeout_seconds: float) -> list[uuid.UUID]:
    """Requested rides waiting for a driver longer than the matching timeout: to expire.

    Waiting since they last became requested (a ride given back by a deactivated driver waits
    anew); requested_at is never later, so the ride_waiting index still narrows the search.
    """
    deadline = timezone.now() - timedelta(seconds=timeout_seconds)
    rides = Ride.objects.filter(
        status=RideStatus.REQUESTED, requested_at__lte=deadline, status_changed_at__lte=deadline
    )
    return list(rides.values_list("id", flat=True))


def rides_of_inactive_drivers() -> list[uuid.UUID]:
    """Assigned rides whose driver was deactivated: to give back to matching."""
    rides = Ride.objects.filter(status=RideStatus.ASSIGNED, driver__is_active=False).order_by()
    return list(rides.values_list("id", flat=True))


def still_requested(ride_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these rides still wait for a driver, in one query (a batch skips the others)."""
    return set(Ride.objects.filter(pk__in=ride_ids, status=RideStatus.REQUESTED).values_list("id", flat=True))


def _free_drivers() -> QuerySet[User]:
    """Drivers who may be offered a ride now: active, online, no assigned ride (the one definition)."""
    assigned = Ride.objects.filter(driver=OuterRef("pk"), status=RideStatus.ASSIGNED)
    return User.objects.filter(role=Role.DRIVER, is_active=True, is_available=True).exclude(Exists(assigned))


def free_driver_ids(driver_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these drivers may be offered a ride now, in one query."""
    return set(_free_drivers().filter(pk__in=driver_ids).values_list("id", flat=True))


def any_free_driver() -> bool:
    """Whether any driver at all may be offered a ride now, in one query (a busy city's shortcut)."""
    return _free_drivers().exists()


def ride_versions(ride_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[int, str]]:
    """The current version and the rider's username of each of these rides that exists, in one query."""
    rows = Ride.objects.filter(pk__in=ride_ids).values_list("id", "version", "rider__username")
    return {ride_id: (version, rider) for ride_id, version, rider in rows}


def rides_by_status() -> dict[str, int]:
    """How many rides are in each status (every status, zero included): /metrics."""
    counts = dict(Ride.objects.order_by().values_list("status").annotate(n=Count("id")))
    return {status: counts.get(status, 0) for status in RideStatus.values}


def assignment_latency_histogram(buckets: list[float]) -> tuple[list[int], int, float]:
    """Seconds from request to assignment over every ride ever assigned, in one query.

    Returns the cumulative count at or under each bucket bound, the total and the sum in
    seconds (a Prometheus histogram: the database is the source, so every web process agrees).
    """
    assigned = Ride.objects.filter(assigned_at__isnull=False).order_by()
    waited = ExpressionWrapper(F("assigned_at") - F("requested_at"), output_field=DurationField())
    counts = assigned.aggregate(
        total=Count("id"),
        waited=Sum(waited),
        **{
            f"le_{index}": Count("id", filter=Q(assigned_at__lte=F("requested_at") + timedelta(seconds=bound)))
            for index, bound in enumerate(buckets)
        },
    )
    total_waited = counts["waited"] or timedelta()
    return [counts[f"le_{index}"] for index in range(len(buckets))], counts["total"], total_waited.total_seconds()
