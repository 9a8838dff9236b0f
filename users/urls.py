from ridehail.web.api import optional_slash_path
from users import apis

urlpatterns = [
    optional_slash_path("api/auth/register", apis.RegisterApi.as_view(), name="register"),
    optional_slash_path("api/auth/login", apis.LoginApi.as_view(), name="login"),
    optional_slash_path("api/auth/logout", apis.LogoutApi.as_view(), name="logout-api"),
    optional_slash_path("api/users/me", apis.MeApi.as_view(), name="me"),
    optional_slash_path("api/users/driver-status", apis.DriverStatusApi.as_view(), name="driver-status"),
]
