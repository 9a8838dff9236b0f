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


def test_the_policy_built_once_is_django_csps_and_follows_the_settings(client, settings):
    """ridehail/web/csp.py keeps the header it built; it must be django-csp's own, and a change
    of the setting (as a deployment or a test makes it) must not leave the old one behind."""
    from csp.utils import build_policy

    assert client.get("/healthz")["Content-Security-Policy"] == build_policy()

    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": {"default-src": ["'none'"]}}
    assert client.get("/healthz")["Content-Security-Policy"] == "default-src 'none'"

    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": {"default-src": ["'self'"]}}
    assert client.get("/healthz")["Content-Security-Policy-Report-Only"] == "default-src 'self'"


def test_a_view_that_changes_its_policy_still_gets_its_own(rf):
    """A response carrying a per-view policy (django-csp's decorators) goes through django-csp itself."""
    from csp.decorators import csp_update
    from django.http import HttpResponse

    from ridehail.web.csp import CSPMiddleware

    @csp_update({"img-src": ["tiles.example"]})
    def view(request):
        return HttpResponse("ok")

    request = rf.get("/somewhere")
    response = CSPMiddleware(view)(request)

    assert "tiles.example" in response["Content-Security-Policy"]
    assert "tiles.example" not in CSPMiddleware(lambda r: HttpResponse("ok"))(rf.get("/"))["Content-Security-Policy"]
