"""ridehail/server.py: the web servers' command lines, from the environment alone."""

import pytest

from ridehail.server import serve_command


@pytest.fixture(autouse=True)
def environment(monkeypatch):
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")


def test_the_default_is_uvicorn_serving_http_and_websockets_with_the_project_s_flags():
    command = serve_command()
    assert command[1:4] == ["-m", "uvicorn", "ridehail.asgi:application"]
    assert "--no-proxy-headers" in command
    assert command[command.index("--port") + 1] == "8123"
    assert command[command.index("--workers") + 1] == "3"


def test_http_is_gunicorn_s_sync_workers_trusting_no_peer_s_forwarded_headers():
    command = serve_command("http")
    assert command[1:4] == ["-m", "gunicorn", "ridehail.wsgi:application"]
    assert command[command.index("--worker-class") + 1] == "sync"
    assert command[command.index("--forwarded-allow-ips") + 1] == ""  # Django alone reads them
    assert command[command.index("--bind") + 1] == "0.0.0.0:8123"
    assert command[command.index("--workers") + 1] == "3"


def test_another_asgi_app_is_served_with_the_same_flags():
    assert serve_command(app="bench.bare_asgi:application")[3] == "bench.bare_asgi:application"


def test_an_unknown_role_stops_with_a_clear_message():
    with pytest.raises(SystemExit, match="unknown role 'wsgi'"):
        serve_command("wsgi")
