"""What tracing costs `PUT /api/users/driver-status` when it is off: this tree against the code before
tracing existed, in the same run (and, for the record, with tracing on).

The same load as bench/put_status.py (wrk, 32 keep-alive connections over 1,000 drivers, every
request a toggle that commits, writes its outbox row and publishes), served by `python -m
ridehail.server` from two trees, alternating round by round on one database and one Redis:

- before tracing: `git archive` of main while main has no tracing, else of the commit before
  ridehail/events/tracing.py was added (or --base REF), unpacked in a temporary directory;
- tracing off: this tree, no OTEL_* variable (what every deployment that does not ask gets);
- tracing on: this tree exporting every span over OTLP/HTTP to a receiver in this process
  (tests/otlp.py), which decodes them on the same two cores: an upper bound, not the target.

    .venv/bin/python -m bench.tracing_cost [--seconds 10] [--rounds 3] [--base REF]
    (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/ridehail_bench)
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, PrivateRedis, free_port, median, production_env, wait_port
from bench.django_env import setup_django
from bench.put_status import CONNECTIONS, DRIVERS, STATUS, drivers_with_tokens, empty_outbox, fresh_database
from bench.report import Progress, Section, Target, cli, markdown_table, progress
from bench.wrk import run_wrk
from tests.otlp import OtlpReceiver

COMMAND = ".venv/bin/python -m bench.tracing_cost"
BEFORE, OFF, ON = "before tracing", "tracing off", "tracing on (OTLP)"


def commit_before_tracing() -> str:
    """main while it has no tracing (the same code but this branch's); once it has, the commit before tracing came."""
    in_main = subprocess.run(
        ["git", "cat-file", "-e", "main:ridehail/events/tracing.py"], cwd=ROOT, capture_output=True, check=False
    )
    if in_main.returncode != 0:
        return "main"
    added = subprocess.run(
        ["git", "log", "-1", "--diff-filter=A", "--format=%H", "--", "ridehail/events/tracing.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return f"{added}^"


def unpack(ref: str, into: Path) -> str:
    """The tree of `ref` in `into`; returns its short hash."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    archive = subprocess.Popen(["git", "archive", sha], cwd=ROOT, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise SystemExit(f"git archive {sha} failed")
    return sha


def serve_from(tree: Path, env: dict[str, str], tokens: list[str], seconds: float) -> dict:
    """The production server run from `tree` (its code, this interpreter and packages) under wrk."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "ridehail.server", "ridehail.asgi:application"],
        cwd=tree,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env, "PORT": str(port)},
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        time.sleep(1.0)  # every worker process up
        result = run_wrk(
            f"http://127.0.0.1:{port}{STATUS}",
            seconds=seconds,
            connections=CONNECTIONS,
            method="PUT",
            body="{}",
            tokens=tokens,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return result.__dict__


def run(
    *,
    full: bool = False,
    seconds: float | None = None,
    rounds: int | None = None,
    base: str | None = None,
    report: Progress = progress,
) -> Section:
    seconds = seconds or (15 if full else 10)
    rounds = rounds or (5 if full else 3)
    database_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ridehail_bench")
    fresh_database(database_url)
    cores = os.cpu_count() or 1
    results: dict[str, list[dict]] = {BEFORE: [], OFF: [], ON: []}
    with tempfile.TemporaryDirectory(prefix="ridehail-before-tracing-") as before, PrivateRedis() as private_redis:
        sha = unpack(base or commit_before_tracing(), Path(before))
        setup_django(database_url, private_redis.url)  # this tree's migrations: the old code ignores the new column
        env = production_env(
            database_url,
            private_redis.url,
            WEB_CONCURRENCY=str(cores),
            RIDEHAIL_THROTTLE_DRIVER_STATUS="1000000/minute",
        )
        with OtlpReceiver() as receiver:
            cases = {BEFORE: (Path(before), env), OFF: (ROOT, env), ON: (ROOT, {**env, **receiver.env()})}
            for round_number in range(1, rounds + 1):
                for name, (tree, case_env) in cases.items():
                    tokens = drivers_with_tokens(database_url, DRIVERS)
                    empty_outbox(database_url)
                    row = serve_from(tree, case_env, tokens, seconds)
                    results[name].append(row)
                    report(
                        f"tracing: round {round_number}/{rounds}: {name}: {row['requests_per_s']:,.0f} req/s, "
                        f"p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, {row['non_2xx']} non-2xx"
                    )
            spans = len(receiver.received())
    summary = {name: {key: median([row[key] for row in rows]) for key in rows[0]} for name, rows in results.items()}
    before_rps = summary[BEFORE]["requests_per_s"]
    off_ratio = summary[OFF]["requests_per_s"] / before_rps
    on_ratio = summary[ON]["requests_per_s"] / before_rps
    table = markdown_table(
        ["PUT /api/users/driver-status, 32 connections", "requests/s", "p50 ms", "p99 ms", "errors", "÷ before"],
        [
            [
                name + (f" ({sha})" if name == BEFORE else ""),
                f"{row['requests_per_s']:,.0f}",
                f"{row['p50_ms']:.1f}",
                f"{row['p99_ms']:.1f}",
                f"{row['non_2xx']:.0f}",
                f"{row['requests_per_s'] / before_rps:.3f}",
            ]
            for name, row in summary.items()
        ],
    )
    table += (
        f"\n\nTracing off ÷ before = **{off_ratio:.3f}** (target ≥ 0.97); tracing on ÷ before = {on_ratio:.3f} "
        f"({spans:,} spans received)."
    )
    return Section(
        title="What tracing costs PUT driver-status when it is off",
        command=f"{COMMAND} --seconds {seconds:g} --rounds {rounds}",
        table=table,
        notes=(
            f"Medians of {rounds} alternating rounds of {seconds:g} s each, `python -m ridehail.server` with "
            f"{cores} processes, the same database, Redis and interpreter; 'before' is the tree of {sha}. "
            "Tracing on exports to a receiver in the benchmark's own process, on the same cores."
        ),
        targets=[Target("PUT driver-status, tracing off ÷ before tracing", off_ratio, "≥ 0.97", off_ratio >= 0.97)],
    )


if __name__ == "__main__":
    cli(run, __doc__, {"seconds": float, "rounds": int, "base": str})
