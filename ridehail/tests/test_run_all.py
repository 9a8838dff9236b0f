"""`make run` (`manage.py run_all`) as a newcomer meets it: the port, what it prints, what it logs."""

import re
import signal
import socket

import pytest
import requests

from tests.processes import free_port, wait_until
from tests.servers import manage_py

pytestmark = pytest.mark.django_db(transaction=True)

READY = "Listening on TCP address"
# The built-in development key, so the secret-key warning is due (once).
DEV_KEY = {"DJANGO_SECRET_KEY": ""}


def test_a_busy_port_stops_it_at_once_with_the_way_out():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = manage_py("run_all", "--port", str(port)).start()
        try:
            assert run.wait_exit(timeout=15) != 0
            assert f"port {port} on 127.0.0.1 is already in use" in run.output
            assert f"make run PORT={port + 1}" in run.output
            assert "listening on" not in run.output  # no worker was left running
        finally:
            run.stop()


def sign_in(site: str) -> requests.Session:
    browser = requests.Session()
    browser.get(f"{site}/accounts/login/", timeout=10)
    token = browser.cookies["csrftoken"]
    form = {"username": "operator", "password": "operator-demo-pass", "csrfmiddlewaretoken": token}
    signed_in = browser.post(f"{site}/accounts/login/?next=/dashboard/", data=form, timeout=10)
    assert signed_in.url == f"{site}/dashboard/", signed_in.text[:500]
    return browser


def test_port_from_the_environment_serves_there_and_says_useful_things_once():
    port = free_port()
    run = manage_py("run_all", env={"PORT": str(port), **DEV_KEY}).start()
    site = f"http://127.0.0.1:{port}"
    try:
        run.wait_for_output(READY, timeout=60)
        home = requests.get(f"{site}/", allow_redirects=False, timeout=10)
        missing = requests.get(f"{site}/no-such-page", timeout=10)
        run.wait_for_output("/no-such-page")
        run.wait_for_output("listening on driver-status-changed", count=2)  # both workers
    finally:
        run.signal(signal.SIGINT)
        assert run.wait_exit(timeout=20) == 0  # Ctrl-C is a clean stop
        output = run.output
        run.stop()

    assert home.status_code == 302 and home.headers["Location"] == "/dashboard/"
    assert missing.status_code == 404
    assert f"Dashboard: {site}/dashboard/" in output
    assert f"API docs:  {site}/api/docs/" in output
    assert not re.search(rf"{site}/api/(\s|$)", output)  # /api/ itself is a 404: never offered
    assert output.count("ridehail.W001") == 1  # the secret-key warning
    assert output.count("/no-such-page") == 1  # a 4xx is logged once


def test_running_it_again_keeps_a_signed_in_dashboard_signed_in():
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    first = manage_py("run_all", "--port", str(port)).start()
    try:
        first.wait_for_output(READY, timeout=60)
        browser = sign_in(site)
    finally:
        first.signal(signal.SIGINT)
        first.wait_exit(timeout=20)
        first.stop()

    again = manage_py("run_all", "--port", str(port)).start()
    try:
        again.wait_for_output(READY, timeout=60)
        dashboard = wait_until(lambda: browser.get(f"{site}/dashboard/", allow_redirects=False, timeout=10))
        assert "already existed; password not changed" in again.output
    finally:
        again.stop()
    assert dashboard.status_code == 200  # not sent to the sign-in page
