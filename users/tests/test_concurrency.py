"""Concurrent status changes of one driver: the row lock gives each its own version and event."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from conftest import client_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

TOGGLES = 50


@pytest.fixture(autouse=True)
def _needs_postgres():
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL: run with DATABASE_URL=postgres://...")


def test_concurrent_toggles_of_one_driver_get_distinct_versions_and_events(live_server, driver, listener):
    token = client_for(driver)._credentials["HTTP_AUTHORIZATION"]
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
