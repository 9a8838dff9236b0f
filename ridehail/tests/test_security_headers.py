"""Content-Security-Policy (no inline script), X-Frame-Options, nosniff and Referrer-Policy on every page.

That the pages still work under the policy is checked in Chromium: test_dashboard_browser.py."""

import pytest

pytestmark = pytest.mark.django_db

PAGES = ["/dashboard/", "/accounts/login/", "/admin/", "/admin/login/", "/api/docs/", "/api/users/me", "/healthz"]


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


@pytest.mark.parametrize("path", PAGES)
def test_every_page_has_a_policy_without_inline_script(client, staff, path):
    staff.is_superuser = True
    staff.save(update_fields=["is_superuser"])
    if "login" not in path:
        client.force_login(staff)

    response = client.get(path)

    assert response.status_code == 200
    policy = directives(response)
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "https:" in policy["img-src"]  # map tiles come from another host
    assert "'unsafe-inline'" not in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_the_api_docs_have_no_inline_script(client):
    page = client.get("/api/docs/").content.decode()
    script = client.get("/api/docs/?script=")

    assert "<script>" not in page
    assert "<style>" not in page
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
