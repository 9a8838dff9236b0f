"""The project's own processes (manage.py commands, the ASGI server) on the test database and Redis."""

import sys
import urllib.request

from django.conf import settings
from django.db import connection

from ridehail.server import gunicorn_command, uvicorn_command
from tests.processes import ROOT, ManagedProcess, free_port, wait_until

MANAGE_PY = ROOT / "manage.py"


def child_database_url() -> str:
    """A DATABASE_URL that lets a child process reach the test database this test uses."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def redis_env() -> dict[str, str]:
    """The Redis settings of this test (a single Redis or a cluster), as a child process reads them."""
    return {
        "REDIS_URL": settings.REDIS_URL,
        "REDIS_CLUSTER": "1" if settings.REDIS_CLUSTER else "0",
        "RIDEHAIL_CHANNEL_LAYER_URL": settings.RIDEHAIL_CHANNEL_LAYER_URL,
        "RIDEHAIL_POSITION_PARTITIONS": str(settings.RIDEHAIL_POSITION_PARTITIONS),
    }


def manage_py(*args: str, env: dict[str, str] | None = None) -> ManagedProcess:
    """A `manage.py` child process that uses this test's database and Redis."""
    child_env = {"DATABASE_URL": child_database_url(), **redis_env(), "PYTHONUNBUFFERED": "1"}
    return ManagedProcess([sys.executable, str(MANAGE_PY), *args], env={**child_env, **(env or {})})


class AsgiServer(ManagedProcess):
    """The production ASGI server (uvicorn) serving this project on a free port, as the Dockerfile runs it."""

    def __init__(self, *, port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        child_env = {"DATABASE_URL": child_database_url(), **redis_env(), **(env or {})}
        args = ["-m", "uvicorn", *uvicorn_command(host="127.0.0.1", port=self.port), "--no-access-log"]
        super().__init__([sys.executable, *args], env=child_env)

    def start(self) -> "AsgiServer":
        super().start()
        self.wait_for_output("Application startup complete")
        return self


class WsgiServer(ManagedProcess):
    """The production HTTP server (gunicorn, sync workers: `ridehail.server http`) on a free port."""

    def __init__(self, *, workers: int = 2, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        child_env = {
            "DATABASE_URL": child_database_url(),
            **redis_env(),
            "WEB_CONCURRENCY": str(workers),
            **(env or {}),
        }
        args = ["-m", "gunicorn", *gunicorn_command(host="127.0.0.1", port=self.port, workers=workers)]
        super().__init__([sys.executable, *args], env=child_env)
        self.workers = workers

    def start(self) -> "WsgiServer":
        super().start()
        # Bound first, then each worker loads Django on its own (requests wait in the backlog
        # meanwhile): every worker started and one answering is enough.
        self.wait_for_output("Booting worker", count=self.workers, timeout=60)
        wait_until(self._answers, timeout=60, what=f"gunicorn answering /healthz on port {self.port}")
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=10) as answer:
                return answer.status == 200
        except OSError:
            return False
