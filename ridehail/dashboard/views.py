from django.contrib.auth.decorators import user_passes_test
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from ridehail.http import allow_methods
from users.permissions import is_operator


@allow_methods("GET")
@user_passes_test(is_operator)
def dashboard(request: HttpRequest) -> HttpResponse:
    """The page; everything on it arrives over the websocket (ridehail/dashboard/consumers.py)."""
    return render(request, "dashboard/index.html")
