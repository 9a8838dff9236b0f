"""`make run` (`manage.py run_all`) as a newcomer meets it: the port, what it prints, what it logs."""

import re
import signal
import socket

import pytest
import redis
import requests

from tests.processes import free_port, port_open, processes_with, wait_until
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


def test_port_from_the_environment_serves_there_and_says_useful_things_once(redis_client):
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
    assert output.count("ridehail.W001") == 1  # the secret-key warning, by the web server
    assert output.count("/no-such-page") == 1  # a 4xx is logged once
    assert output.count("rides: stopped") == 1 and output.count("locations: stopped") == 1  # one per worker
    # Redis was emptied (redis_client): a brand-new stream is no gap, and said so at INFO.
    assert "ride-status-changed: a new stream: state read from the database" in output
    assert "does not hold every event" not in output
    assert not re.search(r"WARNING +(rides|locations):", output)  # the workers warned of nothing


def test_the_printed_metrics_curl_reads_metrics():
    port = free_port()
    run = manage_py("run_all", "--port", str(port), env={"RIDEHAIL_METRICS_TOKEN": ""}).start()
    try:
        run.wait_for_output(READY, timeout=60)
        curl = re.search(r"curl -s -H \"Authorization: Bearer ([^\"]+)\" (\S+/metrics)", run.output)
        assert curl, run.output
        token, url = curl.groups()
        answer = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        wrong = requests.get(url, headers={"Authorization": "Bearer not-the-token"}, timeout=10)
    finally:
        run.stop()
    assert url == f"http://127.0.0.1:{port}/metrics"
    assert answer.status_code == 200 and "ridehail_redis_up 1.0" in answer.text
    assert wrong.status_code == 403


def test_the_pages_have_a_favicon():
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    run = manage_py("run_all", "--port", str(port)).start()
    try:
        run.wait_for_output(READY, timeout=60)
        page = requests.get(f"{site}/accounts/login/", timeout=10)
        link = re.search(r'<link rel="icon" href="([^"]+)"', page.text)
        assert link, page.text[:1000]
        icon = requests.get(site + link.group(1), timeout=10)
    finally:
        run.stop()
    assert icon.status_code == 200
    assert icon.headers["Content-Type"].startswith("image/svg+xml") and b"<svg" in icon.content


def test_without_redis_url_it_runs_a_redis_of_its_own_and_ctrl_c_stops_it_all(tmp_path):
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    run = manage_py("run_all", "--port", str(port), env={"RIDEHAIL_RUN_DIR": str(tmp_path)})
    del run.env["REDIS_URL"]
    run.start()
    try:
        run.wait_for_output(READY, timeout=90)
        run.wait_for_output("listening on driver-status-changed", count=2)  # both workers
        redis_url = re.search(r"REDIS_URL is not set: started \S+ \S+ at (redis://\S+) ", run.output).group(1)
        private = redis.Redis.from_url(redis_url)
        assert private.ping()
        login = {"username": "driver1", "password": "driver-demo-pass"}
        token = requests.post(f"{site}/api/auth/login", json=login, timeout=10).json()["token"]
        online = requests.put(
            f"{site}/api/users/driver-status",
            json={"available": True},
            headers={"Authorization": f"Token {token}"},
            timeout=10,
        )
        assert online.status_code == 200, online.text
        run.wait_for_output("added to matching pool")  # the rides worker
        run.wait_for_output("started tracking driver")  # the locations worker
        assert private.dbsize() > 0  # everything wrote to it
    finally:
        run.signal(signal.SIGINT)  # Ctrl-C, to run_all alone
        code = run.wait_exit(timeout=30)
        output = run.output
        run.stop()
    assert code == 0, output
    assert processes_with("RIDEHAIL_RUN_DIR", str(tmp_path)) == []  # no worker, server or Redis left
    assert not port_open(private.connection_pool.connection_kwargs["port"])
    assert (tmp_path / "redis" / "dump.rdb").exists()  # its data, kept for the next run


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


# -- on a Redis Cluster: check_services (what run_all asks first) names the Redis that failed --------


def test_check_services_on_a_cluster_asks_the_cluster_and_the_channel_layers_redis(on_cluster):
    check = manage_py("check_services").start()

    assert check.wait_exit(timeout=30) == 0, check.output
    assert f"Redis Cluster ({on_cluster.url}), the channel layer's Redis (" in check.output


@pytest.mark.parametrize(
    ("unreachable", "named"),
    [
        ("REDIS_URL", "The Redis Cluster at redis://127.0.0.1:1/0 (REDIS_CLUSTER=1) does not serve"),
        ("RIDEHAIL_CHANNEL_LAYER_URL", "The channel layer's Redis is not reachable at redis://127.0.0.1:1/0"),
    ],
)
def test_check_services_on_a_cluster_names_the_redis_that_does_not_answer(on_cluster, unreachable, named):
    check = manage_py("check_services", env={unreachable: "redis://127.0.0.1:1/0"}).start()

    assert check.wait_exit(timeout=30) == 1
    assert named in check.output
    assert "Traceback" not in check.output


def test_with_redis_cluster_but_no_redis_url_it_starts_no_redis_of_its_own_and_says_why():
    run = manage_py("run_all", "--port", str(free_port()), env={"REDIS_CLUSTER": "1"})
    run.env.pop("REDIS_URL")
    run.start()

    assert run.wait_exit(timeout=30) != 0
    assert "REDIS_CLUSTER=1 needs REDIS_URL" in run.output
    assert "started" not in run.output
