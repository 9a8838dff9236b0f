"""`python manage.py create_demo_accounts`: the accounts `make run` prints, safe to run again."""

from typing import Any

from django.core.management.base import BaseCommand

from users.models import Role, User

DEMO_ACCOUNTS = [
    # username, password, role, staff
    ("operator", "operator-demo-pass", Role.RIDER, True),
    ("driver1", "driver-demo-pass", Role.DRIVER, False),
    ("driver2", "driver-demo-pass", Role.DRIVER, False),
    ("driver3", "driver-demo-pass", Role.DRIVER, False),
    ("rider1", "rider-demo-pass", Role.RIDER, False),
]


class Command(BaseCommand):
    help = "Create (or reset the passwords of) the demo operator, drivers and rider."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write("Demo accounts (username / password):")
        for username, password, role, staff in DEMO_ACCOUNTS:
            user, _ = User.objects.get_or_create(
                username=username, defaults={"role": role, "is_staff": staff, "is_superuser": staff}
            )
            user.set_password(password)
            user.save(update_fields=["password"])
            label = "staff, dashboard and admin" if staff else role
            self.stdout.write(f"  {username:<9} / {password:<19} ({label})")
