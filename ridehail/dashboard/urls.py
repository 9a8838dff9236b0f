from django.contrib.auth import views as auth_views
from django.urls import path

from ridehail.dashboard.views import dashboard
from ridehail.web.api import optional_slash_path
from ridehail.web.throttling import limit_login_attempts

urlpatterns = [
    optional_slash_path("dashboard", dashboard, name="dashboard"),
    path(
        "accounts/login/",
        limit_login_attempts(auth_views.LoginView.as_view(redirect_authenticated_user=False)),
        name="login-page",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="/accounts/login/"), name="logout"),
]
