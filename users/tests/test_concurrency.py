"""Concurrent status changes of one driver: the row lock gives each its own version and event."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from conftest import token_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

TOGGLES = 50


@pytest.fixture(autouse=True)
def _needs_postgres():
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL: run with DATABASE_URL=postgres://...")


def test_concurrent_toggles_of_one_driver_get_distinct_versions_and_events(live_server, driver, listener, start_worker):
    # A change whose older version is still on its way is left to the outbox relay, which runs
    # in every worker (ridehail/events/publisher.py): as in production, one runs.
    start_worker("rides")
    token = f"Token {token_of(driver)}"
    url = f"{live_server.url}/api/users/driver-status"

    def toggle(_: int) -> dict:
        response = requests.put(url, headers={"Authorization": token}, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(max_workers=TOGGLES) as pool:
        results = list(pool.map(toggle, range(TOGGLES)))

    assert sorted(result["version"] for result in results) == list(range(1, TOGGLES + 1))
    events = [listener.next_event() for _ in range(TOGGLES)]
    assert sorted(event["version"] for event in events) == list(range(1, TOGGLES + 1))
    assert len({event["eventId"] for event in events}) == TOGGLES
    # A version's availability follows from the alternation: odd versions are online.
    assert all(event["available"] == (event["version"] % 2 == 1) for event in events)
    listener.assert_nothing_published()
    driver.refresh_from_db()
    assert driver.status_version == TOGGLES


def test_200_concurrent_changes_across_20_drivers_keep_versions_contiguous(live_server, listener, start_worker):
    from rides.subscribers import MATCHING_POOL
    from users.models import Role, User

    drivers = User.objects.bulk_create([User(username=f"c{n:02d}", role=Role.DRIVER, password="!") for n in range(20)])
    tokens = {driver.id: f"Token {token_of(driver)}" for driver in drivers}
    worker = start_worker("rides")
    url = f"{live_server.url}/api/users/driver-status"

    def toggle(n: int) -> dict:
        response = requests.put(url, headers={"Authorization": tokens[drivers[n % 20].id]}, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(toggle, range(200)))

    events = [listener.next_event() for _ in range(200)]
    listener.assert_nothing_published()
    for driver in drivers:
        mine = str(driver.id)
        assert sorted(r["version"] for r in results if r["driverId"] == mine) == list(range(1, 11))
        assert sorted(e["version"] for e in events if e["driverId"] == mine) == list(range(1, 11))
    assert len({event["eventId"] for event in events}) == 200
    worker.wait_for_output("matching pool", count=200, timeout=30)
    online = sorted(
        str(pk) for pk in User.objects.filter(role=Role.DRIVER, is_available=True).values_list("pk", flat=True)
    )
    assert MATCHING_POOL.members(listener.client) == online == []  # ten toggles each: all back offline
