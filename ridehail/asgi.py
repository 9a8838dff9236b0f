"""ASGI entry point: HTTP goes to Django, `/ws/dashboard/` to the dashboard consumer.

Websockets pass the origin check (the page's own scheme, host and port, the host in
DJANGO_ALLOWED_HOSTS; a missing Origin is refused: ridehail/dashboard/origin.py) and session
authentication before the consumer sees them.
"""

import os

from django.core.asgi import get_asgi_application

from ridehail.events.runner import fewer_gc_pauses
from ridehail.events.tracing import configure as configure_tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ridehail.settings")
# Before the middleware chain is built: the tracing middleware stays out of it when tracing is off.
configure_tracing("ridehail-web")
django_application = get_asgi_application()  # sets Django up before the imports below

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from ridehail.checks import log_development_secret_key  # noqa: E402
from ridehail.dashboard.auth import SessionUserMiddleware  # noqa: E402
from ridehail.dashboard.origin import SameOriginValidator  # noqa: E402
from ridehail.dashboard.routing import websocket_urlpatterns  # noqa: E402

log_development_secret_key()  # once, by the server (not by every management command)

application = ProtocolTypeRouter(
    {
        "http": django_application,
        "websocket": SameOriginValidator(SessionUserMiddleware(URLRouter(websocket_urlpatterns))),
    }
)

# Garbage-collector pauses were the dashboard's p99: a full collection walks every object
# of a thousand open sockets and stalled all of them for 100-200 ms (bench/fanout.py).
# Freezing what start-up allocated (Django, the URLconf, the apps) takes it out of every
# future collection, and a larger first threshold makes collections rarer; p99 went from
# ~180 ms to ~40 ms at 1,000 sockets x 20 events/s. See BENCHMARKS.md.
fewer_gc_pauses()
