"""The dashboard in real headless Chromium: sign in, the map, rides turning assigned, the workers'
health, a server restart, a session that ends, a phone's width, the Content-Security-Policy, and
the map of a simulated city (`make demo`), which is the README's first picture."""

import os
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connections
from playwright.sync_api import Browser, Page, expect, sync_playwright

from conftest import PASSWORD, make_drivers, make_user
from locations.positions import TRACKED_DRIVERS
from rides.events import Point
from rides.models import Ride
from rides.services import Trip, request_ride
from tests.processes import wait_until
from tests.servers import AsgiServer, manage_py
from users.models import Role, User
from users.services import set_driver_availability

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = "/usr/bin/chromium"
# `make screenshots` (RIDEHAIL_SCREENSHOTS=1) refreshes the README's picture; a plain test run
# leaves tracked files alone and writes to a temporary folder.
DOCS = Path(settings.BASE_DIR) / "docs"


def screenshot_path(name: str, tmp_path: Path) -> Path:
    return (DOCS if os.environ.get("RIDEHAIL_SCREENSHOTS") == "1" else tmp_path) / name


# Without the background-networking flags Chromium keeps dialling out of a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser(monkeypatch) -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.skip("needs Debian's chromium (apt-get install chromium); .ci/run installs it")
    # Playwright's sync API runs an event loop in this thread; our ORM calls here are plain sync ones.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
        # ORM calls made while Playwright's loop ran used connections of their own context.
        connections.close_all()


# No tiles in tests: this machine has no internet, and the page must work without them anyway.
NO_TILES = {"RIDEHAIL_MAP_TILES": ""}


def token_of(server: AsgiServer, username: str) -> str:
    login = requests.post(f"{server.url}/api/auth/login", json={"username": username, "password": PASSWORD}, timeout=5)
    return login.json()["token"]


def api(server: AsgiServer, method: str, path: str, username: str, body: dict | None = None) -> dict:
    headers = {"Authorization": f"Token {token_of(server, username)}"}
    response = requests.request(method, f"{server.url}{path}", json=body, headers=headers, timeout=5)
    assert response.status_code < 300, response.text
    return response.json()


def toggle_through_the_api(server: AsgiServer, username: str) -> dict:
    return api(server, "PUT", "/api/users/driver-status", username)


def sign_in(page: Page, server: AsgiServer) -> None:
    page.goto(f"{server.url}/dashboard/")
    expect(page).to_have_url(f"{server.url}/accounts/login/?next=/dashboard/")
    page.fill("input[name=username]", "operator")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{server.url}/dashboard/")


def badge(page: Page, driver) -> object:
    return page.locator(f'li[data-driver-id="{driver.id}"] .badge')


def test_staff_watch_a_driver_go_online_and_the_page_resyncs_after_a_restart(browser, redis_client, tmp_path):
    make_user("operator", is_staff=True)
    drivers = [make_user(name, role=Role.DRIVER) for name in ("amara", "bruno", "chen", "dana")]
    amara = drivers[0]
    set_driver_availability(driver_id=drivers[2].id, available=True)
    server = AsgiServer(env=NO_TILES).start()
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 760})
        sign_in(page, server)
        connection = page.locator("#connection-state")
        expect(connection).to_have_attribute("data-state", "live")
        expect(page.locator("#online-count")).to_have_text("1")
        expect(badge(page, amara)).to_have_text("offline")

        toggle_through_the_api(server, "amara")

        expect(badge(page, amara)).to_have_text("online")  # no reload: it came over the websocket
        expect(page.locator("#online-count")).to_have_text("2")
        expect(page.locator("#feed li").first).to_contain_text("amara went online")
        for name in ("bruno", "dana", "bruno"):
            toggle_through_the_api(server, name)
        expect(page.locator("#feed li")).to_have_count(4)
        expect(page.locator("#event-count")).to_have_text("4")

        server.signal(signal.SIGKILL)
        server.wait_exit(timeout=5)
        expect(connection).to_have_attribute("data-state", "offline")
        set_driver_availability(driver_id=amara.id, available=False)  # missed while the page is cut off
        server = AsgiServer(port=server.port, env=NO_TILES).start()

        expect(connection).to_have_attribute("data-state", "live", timeout=20_000)
        expect(badge(page, amara)).to_have_text("offline")  # resynced from a fresh snapshot
        expect(page.locator("#online-count")).to_have_text("2")
    finally:
        server.stop()


def test_a_driver_who_comes_online_after_the_page_loaded_is_listed_by_name(browser, redis_client):
    make_user("operator", is_staff=True)
    server = AsgiServer(env=NO_TILES).start()
    try:
        page = browser.new_page()
        sign_in(page, server)
        expect(page.locator("#connection-state")).to_have_attribute("data-state", "live")
        drivers_card = page.locator(".drivers-card")
        expect(drivers_card).to_contain_text("No drivers yet.", use_inner_text=True)  # the snapshot held no driver

        zoe = make_user("zoe", role=Role.DRIVER)  # registered after the page loaded: not in its snapshot
        set_driver_availability(driver_id=zoe.id, available=True)

        row = page.locator(f'li[data-driver-id="{zoe.id}"]')
        expect(row.locator(".driver-name")).to_have_text("zoe")  # her name, not an id prefix
        expect(row.locator(".badge")).to_have_text("online")
        expect(drivers_card).not_to_contain_text("No drivers yet.", use_inner_text=True)  # as shown
        expect(page.locator("#feed li").first).to_contain_text("zoe went online")
    finally:
        server.stop()


def test_the_map_falls_back_to_its_grid_when_tiles_fail_to_load(browser, redis_client):
    make_user("operator", is_staff=True)
    make_user("amara", role=Role.DRIVER)
    with socket.socket() as probe:  # a port nothing listens on: every tile is refused, as offline
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    server = AsgiServer(env={"RIDEHAIL_MAP_TILES": f"https://127.0.0.1:{closed}/{{z}}/{{x}}/{{y}}.png"}).start()
    try:
        page = browser.new_page()
        tile_errors: list[str] = []
        page.on(
            "requestfailed", lambda request: tile_errors.append(request.url) if str(closed) in request.url else None
        )
        sign_in(page, server)
        expect(page.locator("#connection-state")).to_have_attribute("data-state", "live")
        expect(page.locator("#map")).to_have_class(re.compile(r"\bno-tiles\b"))  # the grid, not a blank map
        expect(page.locator("#map .leaflet-tile-pane img")).to_have_count(0)  # the failed layer is gone
        assert tile_errors, "the test's tiles were never requested"
    finally:
        server.stop()


def test_an_operator_reads_the_rides_list_the_driver_rows_and_the_update_count(browser, redis_client, start_worker):
    make_user("operator", is_staff=True)
    amara, bruno = (make_user(name, role=Role.DRIVER) for name in ("amara", "bruno"))
    set_driver_availability(driver_id=bruno.id, available=True)
    for n in range(12):  # more waiting rides than the card shows at once (no rides worker: they wait)
        rider = make_user(f"rider-{n:02d}")
        request_ride(rider_id=rider.id, trip=Trip(Point(52.5 + n / 1000, 13.4), Point(52.6, 13.5)))
    start_worker("locations")  # a position is taken from drivers it tracks
    server = AsgiServer(env=NO_TILES).start()
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(page, server)
        expect(page.locator("#connection-state")).to_have_attribute("data-state", "live")
        # Words an operator reads, not "v0 · never".
        expect(page.locator(f'li[data-driver-id="{amara.id}"]')).to_contain_text("never online")
        expect(page.locator(f'li[data-driver-id="{bruno.id}"]')).to_contain_text(re.compile(r"online since \d"))
        expect(page.locator("#drivers")).not_to_contain_text(re.compile(r"\bv\d"))

        # The Rides card says that rows are hidden below its edge, and how many, until scrolled.
        more = page.locator("#rides-more")
        expect(more).to_be_visible()
        expect(more).to_contain_text(re.compile(r"\d+ more"))
        page.locator("#rides").evaluate("list => { list.scrollTop = list.scrollHeight; }")
        expect(more).to_be_hidden()

        # Every update the page receives is counted, positions included, and the label says so.
        set_driver_availability(driver_id=amara.id, available=True)
        wait_until(lambda: str(amara.id) in TRACKED_DRIVERS.members(redis_client), what="amara tracked")
        report_position(server, "amara", 52.52, 13.40)
        expect(page.locator(f'li[data-driver-id="{amara.id}"]')).to_contain_text("online since")
        expect(page.locator("#event-kinds")).to_have_text("1 driver status · 0 rides · 1 positions")
        expect(page.locator("#event-count")).to_have_text("2")
        expect(page.locator(".stats")).to_contain_text("Updates this session")
    finally:
        server.stop()


def test_the_dashboard_fits_a_phone_screen(browser, redis_client):
    make_user("operator", is_staff=True)
    make_user("amara", role=Role.DRIVER)
    server = AsgiServer(env=NO_TILES).start()
    try:
        page = browser.new_page(viewport={"width": 390, "height": 844})
        sign_in(page, server)
        expect(page.locator("#connection-state")).to_have_attribute("data-state", "live")
        expect(page.locator("#map")).to_be_visible()
        assert page.locator("#map").bounding_box()["width"] <= 390
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px on a phone"
    finally:
        server.stop()


def test_no_page_breaks_the_content_security_policy(browser, redis_client):
    operator = make_user("operator", is_staff=True)
    operator.is_superuser = True
    operator.save(update_fields=["is_superuser"])
    make_user("amara", role=Role.DRIVER)
    server = AsgiServer(env=NO_TILES).start()
    try:
        page = browser.new_page()
        violations: list[str] = []
        page.on(
            "console", lambda message: violations.append(message.text) if "Security Policy" in message.text else None
        )
        page.on("pageerror", lambda error: violations.append(str(error)))
        unprotected: list[str] = []
        page.on(
            "response",
            lambda response: (
                unprotected.append(response.url)
                if response.request.resource_type == "document" and "content-security-policy" not in response.headers
                else None
            ),
        )
        sign_in(page, server)  # the login page, then the dashboard
        expect(page.locator("#connection-state")).to_have_attribute("data-state", "live")  # the websocket too
        page.goto(f"{server.url}/admin/users/user/")
        expect(page.locator("#result_list")).to_contain_text("amara")
        page.goto(f"{server.url}/admin/users/user/add/")
        expect(page.locator("input[name=username]")).to_be_visible()
        page.goto(f"{server.url}/api/docs/")
        expect(page.locator(".swagger-ui .title")).to_contain_text("ridehail API")  # rendered by its script
        page.locator(".opblock-summary").first.click()
        expect(page.locator(".opblock-body").first).to_be_visible()
    finally:
        server.stop()
    assert unprotected == []
    assert violations == []


def report_position(server: AsgiServer, username: str, lat: float, lng: float) -> None:
    api(server, "PUT", "/api/locations/driver-location", username, {"lat": lat, "lng": lng})


def marker_state(page: Page, driver) -> str | None:
    return page.evaluate(f"window.ridehailDashboard.markerState('{driver.id}')")


def test_the_map_shows_drivers_and_a_ride_that_turns_assigned(browser, redis_client, start_worker, tmp_path):
    make_user("operator", is_staff=True)
    names = ["amara", "bruno", "chen", "dana", "emil", "farah"]
    drivers = {name: make_user(name, role=Role.DRIVER) for name in names}
    make_user("rosa")
    start_worker("locations")
    start_worker("rides", env={"RIDEHAIL_MATCH_RETRY_SECONDS": "0.3"})
    server = AsgiServer(env=NO_TILES).start()
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(page, server)
        expect(page.locator("#connection-state")).to_have_attribute("data-state", "live")
        for n, name in enumerate(names):
            toggle_through_the_api(server, name)
            wait_until(lambda d=drivers[name]: str(d.id) in TRACKED_DRIVERS.members(redis_client), what="tracked")
            report_position(server, name, 52.515 + (n % 3) * 0.006, 13.39 + (n // 3) * 0.012)
        wait_until(lambda: page.evaluate("window.ridehailDashboard.markerCount()") == 6, what="six markers")
        assert marker_state(page, drivers["amara"]) == "free"

        ride = api(
            server,
            "POST",
            "/api/rides",
            "rosa",
            {"pickup": {"lat": 52.5151, "lng": 13.3901}, "dropoff": {"lat": 52.53, "lng": 13.42}},
        )

        row = page.locator(f'#rides li[data-ride-id="{ride["rideId"]}"]')
        expect(row).to_have_attribute("data-status", "assigned", timeout=10_000)  # requested, then assigned
        expect(row).to_contain_text("rosa")
        # The pickup distance the matcher chose amara at, as the ride's event carried it (~13 m).
        km = Ride.objects.get(pk=ride["rideId"]).pickup_distance_km
        assert km is not None and km < 0.05
        expect(row).to_contain_text(f"amara on the way · pickup {int(km * 1000 + 0.5)} m")  # as Math.round
        expect(page.locator("#busy-count")).to_have_text("1")
        expect(page.locator("#feed")).to_contain_text("ride for rosa requested")
        expect(page.locator("#feed")).to_contain_text("ride for rosa assigned")
        assert marker_state(page, drivers["amara"]) == "busy"  # the nearest
        # The matcher's last batch (the default window batches), with the rides process's next beat.
        matching = page.locator("#health-items li[data-matcher]")
        expect(matching).to_contain_text(
            re.compile(r"matching: last batch 1 → 1 assigned, solve (< 0\.1|\d+\.\d) ms at \d"), timeout=20_000
        )
        page.screenshot(path=screenshot_path("dashboard.png", tmp_path))

        toggle_through_the_api(server, "farah")  # goes offline
        wait_until(lambda: marker_state(page, drivers["farah"]) == "offline", what="farah's marker offline")
        expect(page.locator("#online-count")).to_have_text("5")
    finally:
        server.stop()


def test_the_health_strip_shows_a_stopped_workers_lag_rising(browser, redis_client, start_worker):
    make_user("operator", is_staff=True)
    [driver] = make_drivers(1)
    start_worker("locations")
    worker = start_worker("rides", "--transport", "stream", env={"RIDEHAIL_MATCH_WINDOW_SECONDS": "0"})
    server = AsgiServer(env=NO_TILES).start()
    try:
        page = browser.new_page()
        sign_in(page, server)
        group = page.locator("#health-items li", has_text="driver-status-changed · rides")
        expect(group).to_contain_text("lag 0", timeout=10_000)
        assert worker.process is not None
        rides = page.locator("#health-items li[data-worker=rides]")
        expect(rides).to_have_text(f"rides: alive (stream · {socket.gethostname()}/{worker.process.pid})")
        expect(page.locator("#health-items li[data-worker=locations]")).to_contain_text("locations: alive (pubsub")
        expect(page.locator("#health-items li[data-matcher]")).to_have_text(  # window 0: no batches to show
            "matching: greedy (window 0), each request at once"
        )
        expect(page.locator("#health")).to_have_attribute("data-state", "ok")

        worker.signal(signal.SIGSTOP)  # stuck: reads nothing, acknowledges nothing
        try:
            for _ in range(120):
                set_driver_availability(driver_id=driver.id)
            # 120 events behind, give or take the one the worker had read when it stopped.
            expect(group).to_contain_text(re.compile(r"lag 1[12]\d"), timeout=10_000)
            expect(group).to_have_class("red")
            expect(page.locator("#health")).to_have_attribute("data-state", "bad")
        finally:
            worker.signal(signal.SIGCONT)

        worker.signal(signal.SIGTERM)  # a worker that is gone says so, whatever its transport
        expect(rides).to_have_text("rides: not running", timeout=15_000)
        expect(rides).to_have_class("red")
    finally:
        server.stop()


def test_a_page_whose_session_ended_says_so_instead_of_retrying(browser, redis_client):
    make_user("operator", is_staff=True)
    server = AsgiServer(env={**NO_TILES, "RIDEHAIL_DASHBOARD_ACCESS_CHECK_SECONDS": "0.5"}).start()
    try:
        page = browser.new_page()
        sign_in(page, server)
        expect(page.locator("#connection-state")).to_have_attribute("data-state", "live")

        Session.objects.all().delete()  # the session is gone (expired, or flushed by an admin)

        expect(page.locator("#connection-state")).to_have_attribute("data-state", "signed-out", timeout=10_000)
        expect(page.locator("#signed-out")).to_be_visible()
        expect(page.locator("#signed-out a")).to_have_attribute("href", "/accounts/login/?next=/dashboard/")
        page.reload()  # and a fresh page is sent to sign in
        expect(page).to_have_url(f"{server.url}/accounts/login/?next=/dashboard/")
    finally:
        server.stop()


def test_a_non_staff_user_is_told_why_there_is_no_dashboard(browser, redis_client):
    make_user("amara", role=Role.DRIVER)
    server = AsgiServer(env=NO_TILES).start()
    try:
        page = browser.new_page()
        page.goto(f"{server.url}/accounts/login/?next=/dashboard/")
        page.fill("input[name=username]", "amara")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{server.url}/accounts/login/?next=/dashboard/")  # sent back, and told why
        expect(page.locator("#not-staff")).to_contain_text("You are signed in as amara, a driver")
        expect(page.locator("#not-staff")).to_contain_text("the live dashboard is for operators")
    finally:
        server.stop()


def test_the_map_of_a_simulated_city(browser, redis_client, start_worker, tmp_path):
    """What `make demo` shows: `manage.py simulate` driving a fleet through the API, the map alive."""
    make_user("operator", is_staff=True)
    start_worker("locations")
    start_worker("rides", env={"RIDEHAIL_MATCH_RETRY_SECONDS": "0.3"})
    server = AsgiServer(env={**NO_TILES, "RIDEHAIL_THROTTLE_AUTH": "1000/minute"}).start()
    city = ("--drivers", "20", "--riders", "8", "--seconds", "120", "--seed", "13")
    simulator = manage_py("simulate", *city, "--base-url", server.url).start()
    try:
        # Signed in once the fleet is out, so the map's first view frames all of it.
        online = User.objects.filter(username__startswith="sim-driver-", is_available=True)
        wait_until(lambda: online.count() == 20, timeout=60, interval=0.5, what="20 simulated drivers online")
        wait_until(lambda: len(TRACKED_DRIVERS.members(redis_client)) == 20, what="all 20 tracked")
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        sign_in(page, server)
        expect(page.locator("#connection-state")).to_have_attribute("data-state", "live")
        wait_until(lambda: page.evaluate("window.ridehailDashboard.markerCount()") >= 20, what="20 markers")
        assigned = page.locator("#rides li[data-status=assigned]")
        expect(assigned.first).to_be_visible(timeout=30_000)
        expect(page.locator("#online-count")).not_to_have_text("0")
        expect(page.locator("#health")).to_have_attribute("data-state", "ok", timeout=10_000)
        wait_until(lambda: page.locator("#feed li").count() >= 3, timeout=30, what="rides in the live feed")
        page.screenshot(path=screenshot_path("demo-map.png", tmp_path))

        simulator.signal(signal.SIGINT)  # Ctrl-C: it stops and sums up
        assert simulator.wait_exit(timeout=15) == 0, simulator.output
        assert re.search(r"errors 0 \(5xx or no answer\)", simulator.output), simulator.output
    finally:
        simulator.stop()
        server.stop()
