import logging

from django.conf import settings
from django.core.checks import Warning, register

# Said where it matters, once: by the web server as it starts (ridehail/asgi.py calls
# log_development_secret_key) and by `manage.py check --deploy`, the deployment checklist. As
# an ordinary system check it was printed by every management command (`events status`,
# `migrate`, ...), where it is noise: settings refuse the key outright without DEBUG anyway.


@register("security", deploy=True)
def development_secret_key(app_configs: object, **kwargs: object) -> list[Warning]:
    """Say loudly that the built-in key is in use; settings refuse it outright without DEBUG."""
    if settings.SECRET_KEY != settings.DEVELOPMENT_SECRET_KEY:
        return []
    return [
        Warning(
            "DJANGO_SECRET_KEY is not set: using the built-in development key.",
            hint="Set DJANGO_SECRET_KEY to a long random value outside development.",
            id="ridehail.W001",
        )
    ]


def log_development_secret_key() -> None:
    """The same warning, as a log line of the server that starts with the key."""
    for warning in development_secret_key(None):
        logging.getLogger("ridehail").warning("%s (%s) %s", warning.msg, warning.id, warning.hint)
