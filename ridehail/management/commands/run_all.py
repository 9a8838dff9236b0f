"""`python manage.py run_all` (what `make run` calls): the web server and both workers together.

Their output is interleaved with a name prefix; Ctrl-C (or SIGTERM) stops all of them.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Migrate, create the demo accounts, then run the web server and the rides and locations workers."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--addrport", default="127.0.0.1:8000", help="where the web server listens")

    def handle(self, *args: Any, addrport: str, **options: Any) -> None:
        call_command("check_services", stdout=self.stdout)
        call_command("migrate", verbosity=0)
        call_command("create_demo_accounts", stdout=self.stdout)
        host = addrport if ":" in addrport else f"127.0.0.1:{addrport}"
        self.stdout.write(
            f"\nDashboard: http://{host}/dashboard/   Admin: http://{host}/admin/   API: http://{host}/api/\n"
            f"Try:  curl -s -X POST http://{host}/api/auth/login -H 'Content-Type: application/json' "
            '-d \'{"username":"driver1","password":"driver-demo-pass"}\'\n'
            f"then: curl -s -X PUT http://{host}/api/users/driver-status -H 'Authorization: Token <token>'\n"
            "Ctrl-C stops everything.\n"
        )
        self._run_together(
            {
                "web": ["runserver", addrport],
                "rides": ["run_subscriber", "rides"],
                "locations": ["run_subscriber", "locations"],
            }
        )

    def _run_together(self, commands: dict[str, list[str]]) -> None:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        width = max(map(len, commands))
        children = {}
        for name, command in commands.items():
            child = subprocess.Popen(
                [sys.executable, sys.argv[0], *command],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                text=True,
            )
            threading.Thread(target=self._relay, args=(name.ljust(width), child.stdout), daemon=True).start()
            children[name] = child
        while not stop.is_set() and all(child.poll() is None for child in children.values()):
            stop.wait(0.5)
        self._stop_all(children)

    def _relay(self, prefix: str, stream: IO[str]) -> None:
        for line in stream:
            self.stdout.write(f"{prefix} | {line.rstrip()}")

    def _stop_all(self, children: dict[str, subprocess.Popen]) -> None:
        for name, child in children.items():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
            else:
                self.stderr.write(f"{name} exited with code {child.returncode}; stopping the others")
        deadline = time.monotonic() + 10
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
