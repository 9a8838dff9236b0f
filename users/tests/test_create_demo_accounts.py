"""`create_demo_accounts` (run by every `make run` and `docker compose up`): creates what is missing, resets nothing."""

from io import StringIO

import pytest
from django.core.management import call_command

from users.models import Role, User

pytestmark = pytest.mark.django_db


def create_demo_accounts() -> str:
    out = StringIO()
    call_command("create_demo_accounts", stdout=out)
    return out.getvalue()


def line_of(output: str, username: str) -> str:
    return next(line for line in output.splitlines() if line.strip().startswith(username + " "))


def test_the_first_run_creates_every_account_and_says_so():
    output = create_demo_accounts()

    assert set(User.objects.values_list("username", flat=True)) == {
        "operator",
        "driver1",
        "driver2",
        "driver3",
        "rider1",
    }
    assert all("created" in line_of(output, name) for name in ("operator", "driver1", "rider1"))
    operator = User.objects.get(username="operator")
    assert (operator.is_staff, operator.is_superuser) == (True, True)
    assert operator.check_password("operator-demo-pass")
    assert User.objects.get(username="driver1").role == Role.DRIVER


def test_the_operator_is_listed_as_staff_not_as_a_rider():
    operator = line_of(create_demo_accounts(), "operator")

    assert "operator: staff" in operator
    assert "rider" not in operator


def test_running_it_again_resets_no_password_and_says_which_existed():
    create_demo_accounts()
    operator = User.objects.get(username="operator")
    operator.set_password("changed-by-the-operator")
    operator.save(update_fields=["password"])

    output = create_demo_accounts()

    operator.refresh_from_db()
    assert operator.check_password("changed-by-the-operator")
    assert "already existed; password not changed" in line_of(output, "operator")
    assert User.objects.count() == 5


def test_an_open_dashboard_session_survives_running_it_again(client):
    create_demo_accounts()
    client.force_login(User.objects.get(username="operator"))
    assert client.get("/dashboard/").status_code == 200

    create_demo_accounts()

    assert client.get("/dashboard/").status_code == 200  # not sent back to the login page


def test_a_missing_account_is_created_next_to_existing_ones():
    create_demo_accounts()
    User.objects.filter(username="driver2").delete()

    output = create_demo_accounts()

    assert "created" in line_of(output, "driver2")
    assert "already existed" in line_of(output, "driver1")
    assert User.objects.count() == 5
