from django.apps import AppConfig


class RidehailConfig(AppConfig):
    name = "ridehail"

    def ready(self) -> None:
        from ridehail import checks  # noqa: F401  (registers the system checks)
        from ridehail.dashboard import control  # noqa: F401  (sign-out and lost access close dashboards)
