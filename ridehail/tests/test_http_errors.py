"""405 with Allow (JSON, never a CSRF page) for a method a path does not answer, and JSON 404s under /api/."""

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser_of(staff):
    """A signed-in browser: session cookie, and CSRF checked as in production."""
    staff.is_superuser = True
    staff.save(update_fields=["is_superuser"])
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff)
    return browser


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/healthz/", "GET, HEAD"),
        ("PUT", "/readyz", "GET, HEAD"),
        ("POST", "/dashboard/", "GET, HEAD"),
        ("DELETE", "/api/users/me", "GET, HEAD, OPTIONS"),
        ("POST", "/api/users/driver-status", "GET, PUT, HEAD, OPTIONS"),
        ("GET", "/api/auth/login", "POST, OPTIONS"),
        ("GET", "/api/auth/register", "POST, OPTIONS"),
        ("GET", "/api/auth/logout", "POST, OPTIONS"),
        ("POST", "/api/rides/matching-pool", "GET, HEAD, OPTIONS"),
        ("PATCH", "/api/locations/tracking", "GET, HEAD, OPTIONS"),
        ("POST", "/api/schema/", "GET, HEAD, OPTIONS"),
        ("DELETE", "/api/docs/", "GET, HEAD, OPTIONS"),
        ("DELETE", "/accounts/login/", "GET, POST, PUT, HEAD, OPTIONS"),
        ("GET", "/accounts/logout/", "POST, OPTIONS"),
    ],
)
@pytest.mark.parametrize("who", ["anonymous", "signed-in browser"])
def test_another_method_is_a_json_405_with_allow(browser_of, who, method, path, allow):
    client = browser_of if who == "signed-in browser" else Client(enforce_csrf_checks=True)

    response = client.generic(method, path)

    assert response.status_code == 405
    assert response["Allow"] == allow
    assert response.json() == {"detail": f'Method "{method}" not allowed.'}


def test_head_answers_where_get_does(client):
    assert client.head("/healthz").status_code == 200


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
@pytest.mark.parametrize("path", ["/api/nope", "/api/users/nope/", "/api/", "/api/users/me/extra"])
def test_an_unknown_path_under_api_is_a_json_404(method, path):
    response = Client(enforce_csrf_checks=True).generic(method, path)

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_an_unknown_page_elsewhere_is_still_a_page(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")
