"""The rides endpoints: every rule of the contract, with personas; events on channel and stream."""

import json
import uuid

import pytest

from conftest import client_for, make_user
from ridehail.events.topic import STREAM_FIELD
from rides.events import RIDE_STATUS
from rides.models import Ride, RideStatus
from rides.services import RideConflict, assign_ride, complete_ride
from tests.channels import ChannelListener
from users.models import Role
from users.services import set_driver_availability

pytestmark = pytest.mark.django_db(transaction=True)

TRIP = {"pickup": {"lat": 52.52, "lng": 13.405}, "dropoff": {"lat": 52.5, "lng": 13.3}}
RIDE_FIELDS = {
    "rideId",
    "riderId",
    "driverId",
    "pickupDistanceKm",
    "status",
    "pickup",
    "dropoff",
    "requestedAt",
    "timestamp",
    "version",
}


def request_ride(user, body=TRIP):
    return client_for(user).post("/api/rides", json.dumps(body), content_type="application/json")


def requested(user) -> dict:
    response = request_ride(user)
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def rides_channel(redis_client):
    listener = ChannelListener(redis_client, RIDE_STATUS)
    yield listener
    listener.close()


@pytest.fixture
def assigned_ride(rider, driver, redis_client) -> dict:
    ride = requested(rider)
    set_driver_availability(driver_id=driver.id, available=True)
    assert assign_ride(ride_id=uuid.UUID(ride["rideId"]), driver_id=driver.id, pickup_distance_km=1.25) is not None
    return ride


def stream_events(client) -> list[dict]:
    return [json.loads(fields[STREAM_FIELD.encode()]) for _, fields in client.xrange(RIDE_STATUS.stream)]


# -- request -------------------------------------------------------------------------------


def test_a_rider_requests_a_ride_and_it_is_announced(rider, rides_channel, redis_client):
    ride = requested(rider)

    assert set(ride) == RIDE_FIELDS
    assert (ride["riderId"], ride["driverId"], ride["status"], ride["version"]) == (str(rider.id), None, "requested", 1)
    assert ride["pickupDistanceKm"] is None  # until assigned
    assert (ride["pickup"], ride["dropoff"]) == (TRIP["pickup"], TRIP["dropoff"])
    event = rides_channel.next_event()
    assert event == {**ride, "eventId": event["eventId"]}
    assert stream_events(redis_client) == [event]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"pickup": {"lat": 91, "lng": 0}, "dropoff": TRIP["dropoff"]}, "pickup"),
        ({"pickup": {"lat": "52", "lng": 0}, "dropoff": TRIP["dropoff"]}, "pickup"),
        ({"pickup": TRIP["pickup"]}, "dropoff"),
        ({"pickup": TRIP["pickup"], "dropoff": None}, "dropoff"),
        ({"pickup": TRIP["pickup"], "dropoff": [52, 13]}, "dropoff"),
        ({**TRIP, "note": "hi"}, "note"),
        ({"pickup": {"lat": 1, "lng": 2, "alt": 3}, "dropoff": TRIP["dropoff"]}, "pickup"),
    ],
)
def test_invalid_coordinates_or_unknown_fields_are_a_400(rider, rides_channel, body, field):
    response = request_ride(rider, body)
    assert response.status_code == 400
    assert field in response.json()
    assert not Ride.objects.exists()
    rides_channel.assert_nothing_published()


def test_a_rider_with_an_active_ride_gets_409_with_its_status(rider, rides_channel):
    requested(rider)
    rides_channel.next_event()

    response = request_ride(rider)

    assert response.status_code == 409
    assert response.json()["status"] == "requested"
    assert set(response.json()) == {"detail", "status"}
    assert Ride.objects.count() == 1
    rides_channel.assert_nothing_published()


@pytest.mark.parametrize(("persona", "status"), [("anonymous", 401), ("driver", 403)])
def test_only_riders_request_rides(request, persona, status):
    user = None if persona == "anonymous" else request.getfixturevalue(persona)
    assert request_ride(user).status_code == status


# -- reading -----------------------------------------------------------------------------


def test_current_ride_for_its_rider_and_its_driver(rider, driver, other_driver, assigned_ride):
    for user in (rider, driver):
        assert client_for(user).get("/api/rides/current").json()["ride"]["rideId"] == assigned_ride["rideId"]
    assert client_for(other_driver).get("/api/rides/current").json() == {"ride": None}
    assert client_for(None).get("/api/rides/current").status_code == 401


def test_a_ride_is_visible_to_its_rider_its_driver_and_staff_only(rider, driver, staff, other_driver, assigned_ride):
    path = f"/api/rides/{assigned_ride['rideId']}"
    for user in (rider, driver, staff):
        response = client_for(user).get(path)
        assert (response.status_code, response.json()["status"]) == (200, "assigned")
        assert response.json()["pickupDistanceKm"] == 1.25  # as the matcher measured it when it assigned
    assert client_for(other_driver).get(path).status_code == 404
    assert client_for(make_user("stranger")).get(path).status_code == 404
    assert client_for(rider).get(f"/api/rides/{uuid.uuid4()}").status_code == 404
    assert client_for(rider).get("/api/rides/not-a-uuid").status_code == 404


def test_staff_list_rides_newest_first_with_a_status_filter(staff, rider, assigned_ride):
    second_rider = make_user("second-rider")
    newest = requested(second_rider)

    everything = client_for(staff).get("/api/rides").json()["rides"]
    only_requested = client_for(staff).get("/api/rides", {"status": "requested"}).json()["rides"]

    assert [ride["rideId"] for ride in everything] == [newest["rideId"], assigned_ride["rideId"]]
    assert [ride["rideId"] for ride in only_requested] == [newest["rideId"]]
    assert client_for(staff).get("/api/rides", {"status": "lost"}).status_code == 400
    assert client_for(rider).get("/api/rides").status_code == 403


# -- cancel and complete -------------------------------------------------------------------


def test_a_rider_cancels_a_requested_ride(rider, rides_channel):
    ride = requested(rider)

    response = client_for(rider).post(f"/api/rides/{ride['rideId']}/cancel")

    assert (response.status_code, response.json()["status"], response.json()["version"]) == (200, "cancelled", 2)
    assert [rides_channel.next_event()["version"] for _ in range(2)] == [1, 2]
    assert request_ride(rider).status_code == 201  # free to ask again


def test_staff_may_cancel_an_assigned_ride_which_frees_the_driver(staff, driver, assigned_ride):
    response = client_for(staff).post(f"/api/rides/{assigned_ride['rideId']}/cancel")
    assert response.json()["status"] == "cancelled"
    assert client_for(driver).get("/api/rides/current").json() == {"ride": None}


def test_who_may_cancel(rider, driver, other_driver, assigned_ride):
    path = f"/api/rides/{assigned_ride['rideId']}/cancel"
    assert client_for(driver).post(path).status_code == 403  # the driver sees it, but may not cancel it
    assert client_for(other_driver).post(path).status_code == 404
    assert client_for(make_user("stranger", role=Role.RIDER)).post(path).status_code == 404
    assert Ride.objects.get().status == RideStatus.ASSIGNED


def test_the_driver_completes_an_assigned_ride(rider, driver, assigned_ride, redis_client):
    path = f"/api/rides/{assigned_ride['rideId']}/complete"
    assert client_for(rider).post(path).status_code == 403

    response = client_for(driver).post(path)

    assert (response.status_code, response.json()["status"], response.json()["version"]) == (200, "completed", 3)
    assert [event["version"] for event in stream_events(redis_client)] == [1, 2, 3]  # contiguous, one each
    assert [event["status"] for event in stream_events(redis_client)] == ["requested", "assigned", "completed"]


@pytest.mark.parametrize(
    ("first", "then", "status"),
    [("complete", "cancel", "completed"), ("cancel", "complete", "cancelled"), ("cancel", "cancel", "cancelled")],
)
def test_a_change_the_status_does_not_allow_is_a_409_with_the_status(rider, driver, assigned_ride, first, then, status):
    by = {"cancel": rider, "complete": driver}
    path = f"/api/rides/{assigned_ride['rideId']}"
    assert client_for(by[first]).post(f"{path}/{first}").status_code == 200

    response = client_for(by[then]).post(f"{path}/{then}")

    assert (response.status_code, response.json()["status"]) == (409, status)


def test_the_services_refuse_transitions_the_status_does_not_allow(rider):
    ride_id = uuid.UUID(requested(rider)["rideId"])
    with pytest.raises(RideConflict) as refused:
        complete_ride(ride_id=ride_id)
    assert refused.value.status == "requested"
    assert Ride.objects.get().version == 1


# -- rate limit ----------------------------------------------------------------------------


def test_ride_requests_and_cancels_are_rate_limited_per_rider_with_retry_after(rider, settings, redis_client):
    """Failed before: requests and cancels were not limited at all."""
    settings.RIDEHAIL_THROTTLE_RATES = {**settings.RIDEHAIL_THROTTLE_RATES, "rides": "3/minute"}
    ride = requested(rider)
    assert client_for(rider).post(f"/api/rides/{ride['rideId']}/cancel").status_code == 200
    second = requested(rider)  # the third in the window: requests and cancels count together

    cancel = client_for(rider).post(f"/api/rides/{second['rideId']}/cancel")
    again = request_ride(make_user("other-rider"))

    assert cancel.status_code == 429
    assert 0 < int(cancel["Retry-After"]) <= 60
    assert Ride.objects.get(pk=second["rideId"]).status == RideStatus.REQUESTED  # nothing changed
    assert request_ride(rider).status_code == 429
    assert again.status_code == 201  # another rider has a window of their own
    assert client_for(rider).get(f"/api/rides/{second['rideId']}").status_code == 200  # reads are not limited
