from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from ridehail.web.http import allow_methods
from users.permissions import is_operator


@allow_methods("GET")
def dashboard(request: HttpRequest) -> HttpResponse:
    """The page; everything on it arrives over the websocket (ridehail/dashboard/consumers.py).

    Anyone but an operator goes to the sign-in page, which tells a signed-in rider or driver
    why they were sent there (registration/login.html).
    """
    if not is_operator(request.user):
        return redirect_to_login(request.get_full_path())
    return render(request, "dashboard/index.html", {"map_tiles": settings.RIDEHAIL_MAP_TILES})
