"""The short chaos run (tests/chaos.py) in the suite, so CI keeps the README's promises under faults:
60 s of a small simulated city, a fixed seed, three faults (a worker killed, Redis restarted empty,
a web process killed), then every check. `make chaos` is the long one."""

import os
import subprocess
import sys

import pytest

from tests.processes import ROOT

SEED = 31  # kill-worker, redis-restart, kill-web


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
    reason="the chaos run needs PostgreSQL: run with DATABASE_URL=postgres://...",
)
def test_a_short_chaos_run_keeps_every_promise(tmp_path):
    args = ["--seconds", "60", "--seed", str(SEED), "--max-faults", "3", "--drivers", "40", "--riders", "20"]
    run = subprocess.run(
        [sys.executable, "-m", "tests.chaos", *args, "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-4000:]
    assert "chaos: PASSED" in run.stdout
    assert run.stdout.count("fault: ") == 3
