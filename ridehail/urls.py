from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from ridehail import catalogue, health
from ridehail.events.admin import dead_letters_view
from ridehail.metrics.views import metrics
from ridehail.web.api import optional_slash_path
from ridehail.web.http import api_not_found
from ridehail.web.throttling import limit_login_attempts

# The admin's "View site" link leads operators to the live dashboard.
admin.site.site_url = "/dashboard/"
admin.site.site_header = "ridehail operations"

# Swagger UI with its script and style in files of their own: the Content-Security-Policy allows no inline ones.
api_docs = SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="api/swagger_ui.html")

urlpatterns = [
    # Nothing lives at /: operators want the dashboard (which sends anyone else to sign in).
    path("", RedirectView.as_view(url="/dashboard/"), name="home"),
    # Before the admin's own URLs: its login form counts in the same window as every other way in.
    path("admin/login/", limit_login_attempts(admin.site.login)),
    # Dead letters live in Redis, not in a model: a plain admin view (staff only, CSRF-checked).
    path("admin/dead-letters/", admin.site.admin_view(dead_letters_view), name="admin-dead-letters"),
    path("admin/", admin.site.urls),
    optional_slash_path("healthz", health.healthz, name="healthz"),
    optional_slash_path("readyz", health.readyz, name="readyz"),
    optional_slash_path("metrics", metrics, name="metrics"),
    optional_slash_path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    optional_slash_path("api/docs", api_docs, name="docs"),
    optional_slash_path("api/events/schema", catalogue.schema_view, name="events-schema"),
    optional_slash_path("api/events", catalogue.catalogue_page, name="events-catalogue"),
    path("", include("ridehail.dashboard.urls")),
    path("", include("users.urls")),
    path("", include("rides.urls")),
    path("", include("locations.urls")),
    re_path(r"^api/", api_not_found),  # last: whatever else is under /api/ is a JSON 404
]
