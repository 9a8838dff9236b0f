"""`manage.py simulate` against a real uvicorn and both workers: it signs people up, rides get
matched and completed, nothing answers 5xx, and `--record` has a line for every request."""

import json
import re
from pathlib import Path

import pytest

from ridehail.simulation.stats import Stats
from rides.models import Ride, RideStatus
from tests.processes import free_port
from tests.servers import AsgiServer, manage_py
from users.models import User

pytestmark = pytest.mark.django_db(transaction=True)

# Seven people sign up and log in from one address; the default auth limit is 20 a minute.
SERVER_ENV = {"RIDEHAIL_MAP_TILES": "", "RIDEHAIL_THROTTLE_AUTH": "1000/minute"}


def summary_number(output: str, pattern: str) -> int:
    """The number in the summary: the last match, as progress lines print the same words earlier."""
    found = re.findall(pattern, output)
    assert found, f"no {pattern!r} in:\n{output}"
    return int(found[-1].replace(",", ""))


def test_simulate_drives_a_small_city_through_the_api(redis_deployment, redis_client, start_worker, tmp_path: Path):
    """On a single Redis and on a cluster deployment (`redis_deployment`): the server side the
    simulator exercises (sign-up, status, positions, nearby, rides, matching) runs on either."""
    start_worker("locations")
    start_worker("rides", env={"RIDEHAIL_MATCH_RETRY_SECONDS": "0.3"})
    server = AsgiServer(env=SERVER_ENV).start()
    record = tmp_path / "requests.jsonl"
    simulator = manage_py(
        "simulate",
        *("--drivers", "4", "--riders", "3", "--seconds", "18", "--trip-seconds", "2", "--seed", "1"),
        *("--base-url", server.url, "--record", str(record)),
    )
    try:
        simulator.start()
        assert simulator.wait_exit(timeout=60) == 0, simulator.output
        output = simulator.output
    finally:
        simulator.stop()
        server.stop()

    assert re.search(r"t=\d+s drivers online", output)  # the progress line (t=6s on a busy machine)
    assert summary_number(output, r"rides requested \d+ assigned (\d+)") >= 1
    assert summary_number(output, r"errors (\d+) \(5xx or no answer\)") == 0
    assert User.objects.filter(username__startswith="sim-driver-", role="driver").count() == 4
    assert Ride.objects.filter(rider__username__startswith="sim-rider-").exclude(driver=None).exists()
    assert not User.objects.filter(username__startswith="sim-driver-", is_available=True).exists()  # went offline

    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(lines) == summary_number(output, r"requests ([\d,]+) \(")
    assert set(lines[0]) >= {"t", "method", "path", "status", "elapsedMs"}
    assert not [line for line in lines if line["status"] is None or line["status"] >= 500]
    created = {line["rideId"] for line in lines if line["path"] == "/api/rides" and line["status"] == 201}
    assert created == {str(pk) for pk in Ride.objects.values_list("id", flat=True)}


def test_simulate_runs_again_with_the_same_accounts(redis_client, start_worker):
    start_worker("locations")
    start_worker("rides")
    server = AsgiServer(env=SERVER_ENV).start()
    outputs = []
    try:
        for _ in range(2):
            simulator = manage_py(
                "simulate", "--drivers", "2", "--riders", "1", "--seconds", "3", "--base-url", server.url
            )
            simulator.start()
            assert simulator.wait_exit(timeout=30) == 0, simulator.output
            assert "could not sign in" not in simulator.output
            assert summary_number(simulator.output, r"errors (\d+) \(5xx or no answer\)") == 0
            outputs.append(simulator.output)
            simulator.stop()
    finally:
        server.stop()
    # The second run logs in first: no refused sign-up (400) or log-in (401), each a warning in the server's log.
    assert not re.search(r"by status: .*\b40[01]: ", outputs[1]), outputs[1]
    assert User.objects.filter(username__startswith="sim-").count() == 3
    assert not Ride.objects.filter(
        status__in=[RideStatus.REQUESTED, RideStatus.ASSIGNED]
    ).exists()  # cancelled on leaving


def test_the_summary_counts_the_rides_cancelled_on_leaving():
    """No drivers: every ride still waits at the end, and the riders cancel them as they leave."""
    server = AsgiServer(env=SERVER_ENV).start()
    simulator = manage_py("simulate", "--drivers", "0", "--riders", "3", "--seconds", "8", "--base-url", server.url)
    try:
        simulator.start()
        assert simulator.wait_exit(timeout=60) == 0, simulator.output
        output = simulator.output
    finally:
        simulator.stop()
        server.stop()
    cancelled = Ride.objects.filter(status=RideStatus.CANCELLED).count()
    assert cancelled == 3  # each rider requested one within 5 s
    assert summary_number(output, r"rides requested \d+ assigned \d+ completed \d+ cancelled (\d+)") == cancelled


def test_simulate_says_so_when_there_is_no_server():
    simulator = manage_py("simulate", "--base-url", f"http://127.0.0.1:{free_port()}", "--seconds", "5").start()
    try:
        assert simulator.wait_exit(timeout=30) != 0
        assert "cannot reach http://127.0.0.1:" in simulator.output
        assert "Traceback" not in simulator.output
    finally:
        simulator.stop()


def test_a_rides_assignment_time_is_read_from_the_servers_timestamps():
    stats = Stats(drivers=1, riders=1)
    ride = {"rideId": "r1", "driverId": "d1", "status": "assigned", "version": 2}
    stats.note_ride({**ride, "requestedAt": "2026-01-01T12:00:00Z", "timestamp": "2026-01-01T12:00:01.5Z"})
    stats.note_ride({**ride, "status": "completed", "version": 3, "requestedAt": "x", "timestamp": "y"})
    assert stats.assignment_seconds == {"r1": 1.5}
    assert stats.rides == {"r1": "completed"}
