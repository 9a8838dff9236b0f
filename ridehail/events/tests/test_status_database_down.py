"""`events status` with PostgreSQL unreachable: the Redis figures an on-call person needs, and exit 1."""

import json

from ridehail.events.topic import STREAM_FIELD
from tests.processes import free_port
from tests.servers import manage_py
from users.events import DRIVER_STATUS

NOWHERE = f"postgres://postgres@127.0.0.1:{free_port()}/ridehail"  # nothing listens there


def events_status(*options: str) -> tuple[int, str]:
    command = manage_py(
        "events", "status", *options, env={"DATABASE_URL": NOWHERE, "DATABASE_POOL_TIMEOUT": "0.5"}
    ).start()
    try:
        return command.wait_exit(timeout=30), command.output
    finally:
        command.stop()


def test_status_prints_the_redis_figures_says_the_database_is_unreachable_and_exits_1(redis_client):
    redis_client.xadd(DRIVER_STATUS.stream, {STREAM_FIELD: b"{}"})
    redis_client.xadd(DRIVER_STATUS.dead_letters, {STREAM_FIELD: b"{}", "error": "failed", "group": "rides"})

    code, output = events_status()

    assert code == 1, output
    assert "Traceback" not in output
    assert f"stream   {DRIVER_STATUS.stream}: 1 entries" in output
    assert f"dead     {DRIVER_STATUS.dead_letters}: 1 entries" in output
    assert "The database is unreachable" in output


def test_status_json_says_the_same(redis_client):
    redis_client.xadd(DRIVER_STATUS.dead_letters, {STREAM_FIELD: b"{}", "error": "failed", "group": "rides"})

    code, output = events_status("--json")

    assert code == 1, output
    status = json.loads(output[output.index("{") : output.rindex("}") + 1])
    assert status["database"].startswith("unreachable")
    assert status["outbox"] is None
    assert status["redis"] == "ok"
    [topic] = [topic for topic in status["topics"] if topic["name"] == DRIVER_STATUS.name]
    assert topic["dead_letters"]["length"] == 1
