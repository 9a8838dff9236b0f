"""A deactivated driver is out of matching at once, by any means, and a ride assigned to them
goes back to matching (requested) to be given to another driver."""

from datetime import UTC, datetime

import pytest
from django.test import Client

from conftest import make_drivers, make_user
from rides.matching import Outcome, match
from rides.models import Ride, RideStatus
from rides.pool import MATCHING_POOL
from rides.selectors import ride_state
from rides.services import DriverUnavailable, assign_ride
from rides.subscribers import MatchingPoolHandler, RideMatcher
from rides.tests.test_matching import online_at as online_through_workers
from rides.tests.test_matching_reach import METRE, PICKUP, online_at, riders, rides_for
from tests.processes import wait_until
from users.models import User
from users.services import deactivate_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _retry_rounds_take_every_waiting_ride(settings) -> None:
    """These call a retry round in-process right after making or giving back a ride. With a
    matching window, a round leaves rides younger than it to the stream loop (which gathers
    them with their window), so here the window is off: the rounds are what is tested."""
    settings.RIDEHAIL_MATCH_WINDOW_SECONDS = 0


def test_a_driver_deactivated_by_a_queryset_update_is_never_assigned(redis_client):
    """Failed before: nothing heard the .update(), and the next ride was assigned to them."""
    (driver,) = make_drivers(1)
    online_at(redis_client, [driver], [PICKUP])
    User.objects.filter(pk=driver.pk).update(is_active=False)
    (ride,) = rides_for(riders(1, "rider"), PICKUP)

    assert match(redis_client, ride_state(ride)).outcome is Outcome.NO_DRIVER
    with pytest.raises(DriverUnavailable):  # the database refuses them, whoever asks
        assign_ride(ride_id=ride.pk, driver_id=driver.pk, pickup_distance_km=0.0)
    assert Ride.objects.get(pk=ride.pk).status == RideStatus.REQUESTED


def test_a_retry_round_gives_their_ride_to_another_driver_and_a_rebuild_drops_them(redis_client):
    """Failed before: their assigned ride stayed theirs, and the pool kept them."""
    gone, other = make_drivers(2)
    online_at(redis_client, [gone, other], [PICKUP, (PICKUP[0] + 300 * METRE, PICKUP[1])])
    (ride,) = rides_for(riders(1, "rider"), PICKUP, drivers=[gone])
    User.objects.filter(pk=gone.pk).update(is_active=False)  # nothing hears it

    RideMatcher(redis_client).retry_waiting()  # what the rides worker does every RETRY_SECONDS

    ride = Ride.objects.get(pk=ride.pk)
    # given back (version 2), matched again (3)
    assert (ride.status, ride.driver_id, ride.version) == (RideStatus.ASSIGNED, other.id, 3)
    assert ride.pickup_distance_km == pytest.approx(0.3, abs=0.005)  # the other's, set as it was assigned
    MatchingPoolHandler(redis_client).rebuild()
    assert MATCHING_POOL.members(redis_client) == [str(other.id)]


def test_a_driver_deactivated_by_save_is_never_assigned_and_their_ride_goes_back(redis_client):
    """Failed before: a plain save() of is_active=False left them matched (nothing hears it either)."""
    gone, other = make_drivers(2)
    online_at(redis_client, [gone, other], [PICKUP, (PICKUP[0] + 300 * METRE, PICKUP[1])])
    (assigned,) = rides_for(riders(1, "first"), PICKUP, drivers=[gone])
    gone.is_active = False
    gone.save()

    RideMatcher(redis_client).retry_waiting()
    (later,) = rides_for(riders(1, "later"), PICKUP)
    attempt = match(redis_client, ride_state(later))

    assert Ride.objects.get(pk=assigned.pk).driver_id == other.id  # given back, then to the other
    assert attempt.outcome is Outcome.NO_DRIVER  # the other is busy now; the deactivated one is not offered
    assert Ride.objects.get(pk=later.pk).status == RideStatus.REQUESTED


def test_a_ride_given_back_waits_anew_for_the_matching_timeout(redis_client, settings):
    settings.RIDEHAIL_MATCH_TIMEOUT_SECONDS = 60
    (gone,) = make_drivers(1)
    online_at(redis_client, [gone], [PICKUP])
    (ride,) = rides_for(riders(1, "rider"), PICKUP, drivers=[gone])
    Ride.objects.filter(pk=ride.pk).update(requested_at=datetime(2020, 1, 1, tzinfo=UTC))  # asked long ago
    User.objects.filter(pk=gone.pk).update(is_active=False)

    RideMatcher(redis_client).rebuild()

    assert Ride.objects.get(pk=ride.pk).status == RideStatus.REQUESTED  # not expired: waiting since now


def test_deactivating_through_the_service_gives_the_ride_to_another_driver_at_once(start_worker, redis_client, rider):
    """Failed before: there was no way to end a driver's access that also took them out of matching."""
    start_worker("locations")
    rides = start_worker("rides", env={"RIDEHAIL_MATCH_RETRY_SECONDS": "0.2"})
    gone, other = make_drivers(2)
    online_through_workers(gone, *PICKUP, redis_client)
    (ride,) = rides_for([rider], PICKUP, drivers=[gone])
    online_through_workers(other, PICKUP[0] + 300 * METRE, PICKUP[1], redis_client)

    deactivate_user(user_id=gone.pk)

    reassigned = wait_until(  # within a retry round (0.2 s here)
        lambda: Ride.objects.filter(pk=ride.pk, status=RideStatus.ASSIGNED, driver=other).first(),
        timeout=5,
        what="the ride given to the other driver",
    )
    assert reassigned.version == 3  # created assigned (1), given back (2), assigned again (3)
    rides.wait_for_output(f"ride {ride.pk} back to matching: its driver was deactivated")
    assert str(gone.id) not in MATCHING_POOL.members(redis_client)
    gone.refresh_from_db()
    assert (gone.is_active, gone.is_available) == (False, False)


def signed_in_admin() -> Client:
    """A browser signed in to the admin as a superuser."""
    operator = make_user("admin")
    User.objects.filter(pk=operator.pk).update(is_staff=True, is_superuser=True)
    browser = Client()
    browser.force_login(User.objects.get(pk=operator.pk))
    return browser


def test_the_admin_deactivates_through_the_service(redis_client):
    (driver,) = make_drivers(1)
    online_at(redis_client, [driver], [PICKUP])
    browser = signed_in_admin()

    response = browser.post("/admin/users/user/", {"action": "deactivate", "_selected_action": [str(driver.pk)]})

    assert response.status_code == 302
    driver.refresh_from_db()
    assert (driver.is_active, driver.is_available, driver.status_version) == (False, False, 2)


def test_unticking_active_on_the_admin_change_form_deactivates_through_the_service(redis_client):
    """Failed before: the form saved is_active=False and left the driver online."""
    (driver,) = make_drivers(1)
    online_at(redis_client, [driver], [PICKUP])
    browser = signed_in_admin()
    url = f"/admin/users/user/{driver.pk}/change/"
    form = browser.get(url).context["adminform"].form
    # The form as the page shows it, "active" unticked (an unticked checkbox is not sent).
    data = {name: value for name, value in form.initial.items() if name in form.fields and value is not None}
    data |= {"groups": [], "user_permissions": []}
    del data["is_active"]
    joined = data.pop("date_joined")  # a split date/time widget
    data |= {"date_joined_0": joined.date().isoformat(), "date_joined_1": joined.time().isoformat()}

    response = browser.post(url, data)

    assert response.status_code == 302
    driver.refresh_from_db()
    assert (driver.is_active, driver.is_available, driver.status_version) == (False, False, 2)
