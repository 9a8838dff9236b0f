from django.contrib.auth.decorators import user_passes_test
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from ridehail.http import allow_methods


@allow_methods("GET")
@user_passes_test(lambda user: user.is_active and user.is_staff)
def dashboard(request: HttpRequest) -> HttpResponse:
    """The page; everything on it arrives over the websocket (ridehail/dashboard/consumers.py)."""
    return render(request, "dashboard/index.html")
