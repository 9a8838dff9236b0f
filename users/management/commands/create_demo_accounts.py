"""`python manage.py create_demo_accounts`: the accounts `make run` prints, safe to run again.

An account that exists is left exactly as it is: resetting its password on every start would
also sign out every open dashboard (a session is tied to the password it was made with).
"""

from typing import Any, NamedTuple

from django.core.management.base import BaseCommand
from django.db import IntegrityError, transaction

from users.models import Role, User


class DemoAccount(NamedTuple):
    username: str
    password: str
    role: Role
    staff: bool

    @property
    def label(self) -> str:
        return "operator: staff, dashboard and admin" if self.staff else self.role.label.lower()


DEMO_ACCOUNTS = [
    DemoAccount("operator", "operator-demo-pass", Role.RIDER, staff=True),
    DemoAccount("driver1", "driver-demo-pass", Role.DRIVER, staff=False),
    DemoAccount("driver2", "driver-demo-pass", Role.DRIVER, staff=False),
    DemoAccount("driver3", "driver-demo-pass", Role.DRIVER, staff=False),
    DemoAccount("rider1", "rider-demo-pass", Role.RIDER, staff=False),
]


def create_if_missing(account: DemoAccount) -> bool:
    """Create the account unless its username is taken (in any case); True if it was created."""
    if User.objects.filter(username__iexact=account.username).exists():
        return False  # saves hashing a password on every start; the insert below still decides a race
    user = User(username=account.username, role=account.role, is_staff=account.staff, is_superuser=account.staff)
    user.set_password(account.password)
    try:
        with transaction.atomic():
            user.save(force_insert=True)
    except IntegrityError:  # it exists (users_username_ci_unique), perhaps made a moment ago by another start
        return False
    return True


class Command(BaseCommand):
    help = "Create the demo operator, drivers and rider that do not exist yet; existing accounts are left alone."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write("Demo accounts (username / password):")
        for account in DEMO_ACCOUNTS:
            if create_if_missing(account):
                state = "created"
            else:
                state = "already existed; password not changed"
            self.stdout.write(f"  {account.username:<9} / {account.password:<19} ({account.label}; {state})")
