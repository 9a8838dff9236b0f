"""Dead letters on the command line and in the admin (inspect, replay one), and the outbox in the admin."""

import json
import threading

import pytest
from django.core.management import call_command
from django.test import Client

from conftest import make_drivers, make_user
from ridehail.events.connection import worker_redis
from ridehail.events.models import OutboxEvent
from ridehail.events.stream import StreamRunner
from ridehail.events.topic import STREAM_FIELD
from rides.subscribers import MatchingPoolHandler
from users.events import DRIVER_STATUS
from users.services import set_driver_availability

pytestmark = pytest.mark.django_db(transaction=True)

POISON = b'{"driverId": "not-a-uuid"}'


@pytest.fixture
def poisoned(redis_client) -> bytes:
    """A poison entry on the stream, dead-lettered by a real group read; returns its dead letter's id."""
    runner = StreamRunner(MatchingPoolHandler(worker_redis()), read_client=worker_redis(), stop=threading.Event())
    runner.ensure_group()
    redis_client.xadd(DRIVER_STATUS.stream, {STREAM_FIELD: POISON})
    runner.read_new()
    [(letter_id, _)] = redis_client.xrange(DRIVER_STATUS.dead_letters)
    return letter_id


@pytest.fixture
def staff_session(db) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("operator", is_staff=True))
    return client


def test_events_dead_letters_lists_the_poison_entry_with_its_error(poisoned, capsys):
    call_command("events", "dead-letters", "--topic", "driver-status-changed", "--json")
    [letter] = json.loads(capsys.readouterr().out)
    assert letter["id"] == poisoned.decode()
    assert letter["group"] == "rides"
    assert letter["deliveries"] == 1
    assert "driverId" in letter["error"]
    assert letter["event"] == {"driverId": "not-a-uuid"}

    call_command("events", "dead-letters")
    text = capsys.readouterr().out
    assert f"driver-status-changed {poisoned.decode()}" in text and "group rides" in text


def test_the_admin_shows_dead_letters_to_staff_only(poisoned, staff_session):
    page = staff_session.get("/admin/dead-letters/")
    assert page.status_code == 200
    assert poisoned.decode() in page.content.decode()
    assert "not-a-uuid" in page.content.decode()

    rider = Client()
    rider.force_login(make_user("rider"))
    assert rider.get("/admin/dead-letters/").status_code == 302  # to the admin's sign-in
    assert Client().get("/admin/dead-letters/").status_code == 302


def test_replay_in_the_admin_puts_the_event_back_once(poisoned, staff_session, redis_client):
    page = staff_session.get("/admin/dead-letters/")
    form = {"topic": "driver-status-changed", "letter": poisoned.decode()}
    assert staff_session.post("/admin/dead-letters/", form).status_code == 403  # no CSRF token: refused
    assert redis_client.xlen(DRIVER_STATUS.dead_letters) == 1
    form["csrfmiddlewaretoken"] = page.context["csrf_token"]
    length = redis_client.xlen(DRIVER_STATUS.stream)

    first = staff_session.post("/admin/dead-letters/", form, follow=True)
    second = staff_session.post("/admin/dead-letters/", form, follow=True)

    assert "put back on stream:{driver-status-changed}, once" in first.content.decode()
    assert "is not there (already replayed?)" in second.content.decode()
    assert redis_client.xlen(DRIVER_STATUS.dead_letters) == 0
    assert redis_client.xlen(DRIVER_STATUS.stream) == length + 1
    assert redis_client.xrevrange(DRIVER_STATUS.stream, count=1)[0][1][STREAM_FIELD.encode()] == POISON


def test_the_outbox_in_the_admin_is_read_only_and_filters_the_backlog(staff_session, redis_unreachable):
    [driver] = make_drivers(1)
    set_driver_availability(driver_id=driver.id, available=True)  # Redis down: the row waits
    row = OutboxEvent.objects.get()

    waiting = staff_session.get("/admin/events/outboxevent/?published=no&topic=driver-status-changed")
    published = staff_session.get("/admin/events/outboxevent/?published=yes")

    assert str(driver.id) in waiting.content.decode()
    assert str(driver.id) not in published.content.decode()
    assert "Dead letters" in waiting.content.decode()  # the link to the other half
    assert staff_session.get(f"/admin/events/outboxevent/{row.id}/change/").status_code == 200
    assert staff_session.get("/admin/events/outboxevent/add/").status_code == 403


def test_the_admin_index_links_to_dead_letters(staff_session):
    index = staff_session.get("/admin/").content.decode()
    assert 'href="/admin/dead-letters/"' in index
    assert "Events in Redis" in index


def test_the_outbox_list_keeps_its_columns_short(staff_session, redis_unreachable):
    [driver] = make_drivers(1)
    set_driver_availability(driver_id=driver.id, available=True)  # Redis down: the row waits
    long_error = "ConnectionError: " + "x" * 2000 + "\nTraceback line two"
    OutboxEvent.objects.update(last_error=long_error, attempts=3)

    listing = staff_session.get("/admin/events/outboxevent/").content.decode()

    assert str(driver.id) in listing
    assert "x" * 100 not in listing  # the list shows the error's start, its row page all of it
    assert "ConnectionError: xxx" in listing and "Traceback line two" not in listing
    assert "waiting" in listing  # not published yet, said in a word
