from django.apps import AppConfig


class UsersConfig(AppConfig):
    name = "users"

    def ready(self) -> None:
        from users import token_cache  # noqa: F401  (forgets remembered tokens when access changes)
