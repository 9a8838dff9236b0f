"""`GET /metrics`: who may read it, every series the spec names, and counters that move."""

import re
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from conftest import make_user
from ridehail.dashboard.session_sockets import KEY_PREFIX
from ridehail.events import metrics as event_metrics
from ridehail.events.topic import declared_topics
from ridehail.metrics import http
from rides.models import Ride, RideStatus
from tests.processes import wait_until
from users.events import DRIVER_STATUS
from users.models import Role
from users.services import set_driver_availability

pytestmark = pytest.mark.django_db(transaction=True)

# The spec's series: events published per topic, outbox backlog, per group lag and pending, dead
# letters per topic, connected dashboards, rides by status, request→assignment latency, HTTP
# request latency by view.
SPEC_SERIES = [
    "ridehail_events_published",
    "ridehail_outbox_backlog",
    "ridehail_stream_group_lag",
    "ridehail_stream_group_pending",
    "ridehail_dead_letters",
    "ridehail_dashboard_connections",
    "ridehail_rides",
    "ridehail_ride_assignment_seconds",
    "ridehail_http_request_duration_seconds",
    "ridehail_events_handled",
]


@pytest.fixture(autouse=True)
def _no_counts_from_other_tests(redis_client: redis.Redis) -> None:
    http.recorder.flush()  # requests earlier tests made in this process, out of the way first
    published = [event_metrics.published_counter(topic.name) for topic in declared_topics()]
    redis_client.delete(*published, event_metrics.HANDLED, event_metrics.FAILED, http.KEY)


def session_of(username: str, *, is_staff: bool) -> Client:
    client = Client()
    client.force_login(make_user(username, is_staff=is_staff))
    return client


def scrape(client: Client, **headers: Any) -> dict[tuple[str, tuple], float]:
    """Every sample of a 200 answer, by (name, sorted labels)."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def names(samples: dict) -> set[str]:
    return {name for name, _ in samples}


def test_anonymous_callers_are_refused(db):
    assert Client().get("/metrics").status_code == 403


def test_a_signed_in_rider_is_refused():
    assert session_of("rider", is_staff=False).get("/metrics").status_code == 403


def test_a_staff_session_reads_every_series_the_spec_names(redis_client):
    set_driver_availability(driver_id=make_user("d", role=Role.DRIVER).id, available=True)
    redis_client.xgroup_create(DRIVER_STATUS.stream, "rides", id="0", mkstream=True)

    staff = session_of("operator", is_staff=True)

    text = staff.get("/metrics").content.decode()
    samples = scrape(staff)

    for series in SPEC_SERIES:
        assert re.search(rf"^# TYPE {series}(_total)? ", text, re.MULTILINE), f"{series} missing"
    assert samples[("ridehail_events_published_total", (("topic", "driver-status-changed"),))] == 1
    assert samples[("ridehail_stream_group_lag", (("group", "rides"), ("topic", "driver-status-changed")))] == 1
    assert samples[("ridehail_rides", (("status", "requested"),))] == 0
    assert samples[("ridehail_redis_up", ())] == 1


def test_the_bearer_token_is_accepted_when_set_and_a_wrong_one_refused(settings, db):
    settings.RIDEHAIL_METRICS_TOKEN = "s3cret-scraper-token"
    assert "ridehail_outbox_backlog" in names(scrape(Client(), HTTP_AUTHORIZATION="Bearer s3cret-scraper-token"))
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    # A wrong token is refused even on an operator's session: the token, when sent, decides.
    staff = session_of("operator", is_staff=True)
    assert staff.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403


def test_no_bearer_token_is_accepted_while_none_is_configured(settings, db):
    settings.RIDEHAIL_METRICS_TOKEN = ""
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 403


def test_a_workers_handled_counter_moves_when_it_handles_events(start_worker, redis_client):
    driver = make_user("driver", role=Role.DRIVER)
    staff = session_of("operator", is_staff=True)
    handled = ("ridehail_events_handled_total", (("topic", "driver-status-changed"), ("worker", "rides")))
    assert scrape(staff).get(handled, 0) == 0
    worker = start_worker("rides")

    set_driver_availability(driver_id=driver.id, available=True)
    set_driver_availability(driver_id=driver.id, available=False)

    worker.wait_for_output(f"driver {driver.id} removed from matching pool")
    assert wait_until(lambda: scrape(staff).get(handled) == 2, what="two events counted as handled")


def test_request_to_assignment_latency_comes_from_the_rides(db):
    rider, driver = make_user("rider"), make_user("driver", role=Role.DRIVER)
    now = timezone.now()
    Ride.objects.create(
        rider=rider,
        driver=driver,
        status=RideStatus.ASSIGNED,
        pickup_lat=0,
        pickup_lng=0,
        dropoff_lat=0,
        dropoff_lng=0,
        requested_at=now - timedelta(seconds=3),
        assigned_at=now,
    )

    samples = scrape(session_of("operator", is_staff=True))

    bucket = "ridehail_ride_assignment_seconds_bucket"
    assert samples[(bucket, (("le", "2.0"),))] == 0
    assert samples[(bucket, (("le", "5.0"),))] == 1
    assert samples[("ridehail_ride_assignment_seconds_count", ())] == 1
    assert samples[("ridehail_ride_assignment_seconds_sum", ())] == pytest.approx(3.0)
    assert samples[("ridehail_rides", (("status", "assigned"),))] == 1


def test_http_latency_is_counted_by_view_and_dashboards_in_every_process(redis_client):
    staff = session_of("operator", is_staff=True)
    for _ in range(3):
        assert Client().get("/healthz").status_code == 200
    lease = f"{KEY_PREFIX}:test-session"
    redis_client.zadd(lease, {"socket-a": (timezone.now().timestamp() + 30) * 1000, "gone": 1})

    try:
        samples = scrape(staff)
    finally:
        redis_client.delete(lease)

    assert samples[("ridehail_http_request_duration_seconds_count", (("method", "GET"), ("view", "healthz")))] == 3
    assert samples[("ridehail_dashboard_connections", ())] == 1  # the expired lease is not a dashboard


def test_with_redis_down_the_databases_series_are_still_reported(redis_unreachable, db):
    samples = scrape(session_of("operator", is_staff=True))

    assert samples[("ridehail_redis_up", ())] == 0
    assert samples[("ridehail_outbox_backlog", ())] == 0
    assert ("ridehail_rides", (("status", "completed"),)) in samples


def test_on_a_cluster_leases_on_every_master_are_counted_and_the_channel_layer_reported_apart(on_cluster, settings):
    staff = session_of("operator", is_staff=True)
    client = on_cluster.client()
    keys = [f"{KEY_PREFIX}:{n}" for n in range(6)]
    later = int((timezone.now() + timedelta(minutes=1)).timestamp() * 1000)
    for key in keys:
        client.zadd(key, {"a-socket": later})
    assert len({on_cluster.master_of(key).port for key in keys}) > 1  # what a one-node SCAN would miss

    samples = scrape(staff)
    assert samples[("ridehail_dashboard_connections", ())] == 6
    assert (samples[("ridehail_redis_up", ())], samples[("ridehail_channel_layer_up", ())]) == (1, 1)

    settings.RIDEHAIL_CHANNEL_LAYER_URL = "redis://127.0.0.1:1/0"
    samples = scrape(staff)
    assert (samples[("ridehail_redis_up", ())], samples[("ridehail_channel_layer_up", ())]) == (1, 0)
