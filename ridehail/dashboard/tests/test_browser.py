"""The dashboard in real headless Chromium: sign in, watch a toggle arrive, survive a server restart."""

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connections
from playwright.sync_api import Browser, Page, expect, sync_playwright

from conftest import PASSWORD, make_user
from tests.servers import AsgiServer
from users.models import Role
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


def toggle_through_the_api(server: AsgiServer, username: str) -> dict:
    login = requests.post(f"{server.url}/api/auth/login", json={"username": username, "password": PASSWORD}, timeout=5)
    token = login.json()["token"]
    response = requests.put(
        f"{server.url}/api/users/driver-status", headers={"Authorization": f"Token {token}"}, timeout=5
    )
    assert response.status_code == 200, response.text
    return response.json()


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
    server = AsgiServer().start()
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
        page.screenshot(path=screenshot_path("dashboard.png", tmp_path))

        server.signal(signal.SIGKILL)
        server.wait_exit(timeout=5)
        expect(connection).to_have_attribute("data-state", "offline")
        set_driver_availability(driver_id=amara.id, available=False)  # missed while the page is cut off
        server = AsgiServer(port=server.port).start()

        expect(connection).to_have_attribute("data-state", "live", timeout=20_000)
        expect(badge(page, amara)).to_have_text("offline")  # resynced from a fresh snapshot
        expect(page.locator("#online-count")).to_have_text("2")
    finally:
        server.stop()


def test_the_dashboard_fits_a_phone_screen(browser, redis_client):
    make_user("operator", is_staff=True)
    make_user("amara", role=Role.DRIVER)
    server = AsgiServer().start()
    try:
        page = browser.new_page(viewport={"width": 390, "height": 844})
        sign_in(page, server)
        expect(page.locator("#connection-state")).to_have_attribute("data-state", "live")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px on a phone"
    finally:
        server.stop()


def test_no_page_breaks_the_content_security_policy(browser, redis_client):
    operator = make_user("operator", is_staff=True)
    operator.is_superuser = True
    operator.save(update_fields=["is_superuser"])
    make_user("amara", role=Role.DRIVER)
    server = AsgiServer().start()
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
