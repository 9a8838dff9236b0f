from django.conf import settings
from django.core.checks import Warning, register


@register("security")
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
