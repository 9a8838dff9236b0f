"""`make demo` as a newcomer runs it (scripts/demo, REDIS_URL unset): it serves, the operator sees
a city of drivers online and rides, and Ctrl-C stops it all."""

import os
import signal
import sys

import pytest
import requests

from tests.processes import ManagedProcess, free_port, processes_with, wait_until
from tests.servers import child_database_url

pytestmark = pytest.mark.django_db(transaction=True)

CITY = ("--drivers", "12", "--riders", "4", "--trip-seconds", "5", "--seed", "1")


def test_make_demo_serves_a_moving_city_and_ctrl_c_stops_everything(tmp_path):
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    run_dir = str(tmp_path)
    demo = ManagedProcess(
        ["bash", "scripts/demo", *CITY],
        env={
            "PY": sys.executable,
            "PORT": str(port),
            "RIDEHAIL_RUN_DIR": run_dir,
            "DATABASE_URL": child_database_url(),
        },
    )
    demo.env.pop("REDIS_URL", None)  # a fresh clone's shell: no Redis configured
    demo.start()
    seen = {"online": 0, "rides": 0}
    try:
        demo.wait_for_output("simulating 12 drivers", timeout=120)
        login = {"username": "operator", "password": "operator-demo-pass"}
        token = requests.post(f"{site}/api/auth/login", json=login, timeout=10).json()["token"]
        operator = {"Authorization": f"Token {token}"}

        def city_moves() -> bool:
            pool = requests.get(f"{site}/api/rides/matching-pool", headers=operator, timeout=10).json()["drivers"]
            rides = requests.get(f"{site}/api/rides", headers=operator, timeout=10).json()["rides"]
            seen["online"] = max(seen["online"], len(pool))
            seen["rides"] = max(seen["rides"], sum(1 for ride in rides if ride.get("driverId")))
            return seen["online"] >= 10 and seen["rides"] >= 1

        wait_until(city_moves, timeout=180, interval=1, what=f"10 drivers online and an assigned ride ({seen})")
    finally:
        os.killpg(demo.process.pid, signal.SIGINT)  # Ctrl-C: the terminal's process group (the server has its own)
        code = demo.wait_exit(timeout=60)
        output = demo.output
        left = wait_until(lambda: not processes_with("RIDEHAIL_RUN_DIR", run_dir), timeout=30, what="all stopped")
        demo.stop()
    assert code == 0, output
    assert left
    assert "REDIS_URL is not set: started" in output and "operator  / operator-demo-pass" in output
    assert "rides requested" in output  # the simulator's summary, printed on Ctrl-C
