"""A frozen PostgreSQL (it accepts bytes and answers nothing, closing nothing): requests answer 503
within seconds, /readyz names the database within its own bound, workers log it and recover.

Refused connections are the easy case (ridehail/events/tests/test_faults.py); a stalled server or a
partition leaves every socket open, and only timeouts end the wait.
"""

import time
from collections.abc import Iterator

import pytest
import requests
from django.db import connection
from django.test import Client

from conftest import LISTENING, online_in_database, token_of
from ridehail.events.connection import shared_redis
from ridehail.health import READY_CHECK_TIMEOUT
from rides.subscribers import MATCHING_POOL
from tests.faults import TcpProxy
from tests.processes import wait_until
from tests.servers import AsgiServer, child_database_url
from users.services import set_driver_availability

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

# Seconds; short, so the test is.
STATEMENT_TIMEOUT, POOL_TIMEOUT = 0.5, 1.0
# A request's worst case: the pool's wait for a connection, a pooled connection's check and then
# its query (each waiting the statement timeout plus a second for the server's own answer).
REQUEST_DEADLINE = POOL_TIMEOUT + 2 * (STATEMENT_TIMEOUT + 1)
METRICS_TOKEN = "stall-test-token"


@pytest.fixture
def frozen_database() -> Iterator[tuple[TcpProxy, str]]:
    """A proxy in front of the test database, and a DATABASE_URL that goes through it."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: run with DATABASE_URL=postgres://...")
    port = int(connection.settings_dict["PORT"] or 5432)
    proxy = TcpProxy(port).start()
    yield proxy, child_database_url().replace(f":{port}/", f":{proxy.port}/")
    proxy.thaw()
    proxy.stop()


def timed(method: str, url: str, **kwargs) -> tuple[requests.Response, float]:
    started = time.monotonic()
    try:
        response = requests.request(method, url, timeout=REQUEST_DEADLINE + 5, **kwargs)
    except requests.Timeout:
        pytest.fail(f"{method} {url} hung on the frozen database")
    return response, time.monotonic() - started


def test_requests_and_readyz_answer_503_in_seconds_while_the_database_is_frozen(
    frozen_database, redis_client, driver, staff
):
    proxy, through_proxy = frozen_database
    env = {
        "DATABASE_URL": through_proxy,
        "RIDEHAIL_DB_STATEMENT_TIMEOUT": str(STATEMENT_TIMEOUT),
        "DATABASE_POOL_TIMEOUT": str(POOL_TIMEOUT),
        "RIDEHAIL_METRICS_TOKEN": METRICS_TOKEN,
    }
    web = AsgiServer(env=env).start()
    driver_auth = {"Authorization": f"Token {token_of(driver)}"}
    browser = Client()
    browser.force_login(staff)
    session = {"sessionid": browser.cookies["sessionid"].value}
    try:
        assert timed("GET", f"{web.url}/readyz")[0].status_code == 200
        assert timed("PUT", f"{web.url}/api/users/driver-status", headers=driver_auth)[0].status_code == 200
        proxy.freeze()

        for method, path, kwargs in [
            ("PUT", "/api/users/driver-status", {"headers": driver_auth}),  # DRF
            ("GET", "/metrics", {"headers": {"Authorization": f"Bearer {METRICS_TOKEN}"}}),  # a plain view
            ("GET", "/dashboard/", {"cookies": session}),  # a page: the session is in the database
        ]:
            response, took = timed(method, f"{web.url}{path}", **kwargs)
            assert response.status_code == 503, (path, response.status_code, response.text[:300])
            assert response.headers["Content-Type"] == "application/json"
            assert "database is unavailable" in response.json()["detail"]
            assert took < REQUEST_DEADLINE, f"{path} took {took:.1f}s"

        ready, took = timed("GET", f"{web.url}/readyz")
        assert (ready.status_code, list(ready.json()["failed"])) == (503, ["database"])
        assert took < READY_CHECK_TIMEOUT + 1, f"/readyz took {took:.1f}s"

        proxy.thaw()
        wait_until(lambda: timed("GET", f"{web.url}/readyz")[0].status_code == 200, timeout=15, what="/readyz back")
        change, _ = timed("PUT", f"{web.url}/api/users/driver-status", headers=driver_auth)
        assert change.status_code == 200
        assert change.json()["available"] is False  # online, then this toggle: the 503 changed nothing
    finally:
        web.stop()


def test_a_worker_logs_a_frozen_database_backs_off_and_recovers(frozen_database, redis_client, driver, start_worker):
    proxy, through_proxy = frozen_database
    env = {
        "DATABASE_URL": through_proxy,
        "RIDEHAIL_DB_STATEMENT_TIMEOUT": str(STATEMENT_TIMEOUT),
        "RIDEHAIL_RESYNC_SECONDS": "0.5",  # the reconcile is what meets the frozen database
    }
    worker = start_worker("rides", env=env)
    proxy.freeze()
    worker.wait_for_output("database unavailable", timeout=10)
    # Committed while the worker cannot read the database (this process does not go through the
    # proxy); its message may find the worker away: the rebuild after the outage must bring it.
    set_driver_availability(driver_id=driver.id, available=True)

    proxy.thaw()
    worker.wait_for_output(LISTENING, count=2, timeout=15)  # reconnected, rebuilt, listening again
    client = shared_redis()
    wait_until(lambda: MATCHING_POOL.members(client) == online_in_database() == [str(driver.id)], what="pool")


def test_the_server_holds_every_session_to_the_timeouts():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: run with DATABASE_URL=postgres://...")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout')"
        )
        assert cursor.fetchone() == ("3s", "30s")
