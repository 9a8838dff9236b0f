"""Production settings: `check --deploy` is clean, the secret is required, bad values stop start-up."""

import secrets
import subprocess
import sys

import pytest
from django.conf import settings

MANAGE = [sys.executable, str(settings.BASE_DIR / "manage.py")]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "DATABASE_URL": "sqlite:////tmp/ridehail-settings-test.sqlite3"}
    return subprocess.run([*MANAGE, *args], env={**base, **env}, capture_output=True, text=True, timeout=60)


def check_deploy(**env: str) -> subprocess.CompletedProcess:
    return manage("check", "--deploy", "--fail-level", "WARNING", DJANGO_DEBUG="0", DJANGO_HTTPS="1", **env)


def test_check_deploy_is_clean_with_production_settings():
    result = check_deploy(DJANGO_SECRET_KEY=secrets.token_urlsafe(50))
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_the_secret_can_come_from_a_file(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(secrets.token_urlsafe(50) + "\n")
    result = check_deploy(DJANGO_SECRET_KEY_FILE=str(secret_file))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DJANGO_DEBUG": "0"}, "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off"),
        ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG='maybe' is not a boolean"),
        (
            {"DJANGO_SECRET_KEY_FILE": "/nonexistent/secret"},
            "DJANGO_SECRET_KEY_FILE='/nonexistent/secret' cannot be read",
        ),
        ({"RIDEHAIL_STREAM_MAXLEN": "lots"}, "RIDEHAIL_STREAM_MAXLEN='lots' is not an integer"),
        ({"RIDEHAIL_DB_STATEMENT_TIMEOUT": "soon"}, "RIDEHAIL_DB_STATEMENT_TIMEOUT='soon' is not a number"),
        ({"RIDEHAIL_DB_CONNECT_TIMEOUT": "1"}, "RIDEHAIL_DB_CONNECT_TIMEOUT=1 must be at least 2"),
        ({"RIDEHAIL_THROTTLE_AUTH": "20 per minute"}, "RIDEHAIL_THROTTLE_AUTH='20 per minute' is not a rate"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL='localhost:6379' must start with redis://"),
        ({"DATABASE_URL": "mysqlx://nowhere"}, "DATABASE_URL='mysqlx://nowhere' cannot be parsed"),
    ],
)
def test_a_wrong_setting_stops_start_up_naming_the_variable(env, message):
    result = manage("check", **env)
    assert result.returncode != 0
    assert message in result.stderr


def test_debug_pages_are_off_in_production():
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings; print(settings.DEBUG)",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
    )
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr


def test_the_development_key_warning_is_for_check_deploy_not_every_command():
    """The web server logs it as it starts (ridehail/tests/test_run_all.py); other commands stay quiet."""
    ordinary = manage("check")
    deploy = manage("check", "--deploy")
    assert ordinary.returncode == 0, ordinary.stderr
    assert "ridehail.W001" not in ordinary.stdout + ordinary.stderr
    assert "ridehail.W001" in deploy.stdout + deploy.stderr
