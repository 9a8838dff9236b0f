import os

from django.core.wsgi import get_wsgi_application

from ridehail.events.tracing import configure as configure_tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ridehail.settings")
configure_tracing("ridehail-web")
application = get_wsgi_application()
