"""ASGI entry point: HTTP goes to Django (websockets join with the dashboard)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ridehail.settings")
application = get_asgi_application()
