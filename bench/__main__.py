"""`make bench` / `python -m bench [--full]`: every benchmark, then BENCHMARKS.md.

Each benchmark runs the project's path and its raw anchor in the same invocation,
alternating, on a Redis of its own, and reports project ÷ anchor: the machine is shared and
noisy, so only ratios measured side by side mean much. Quick by default (about 13 minutes from a fresh clone);
`--full` runs longer and more rounds. `--only NAME` runs one (and does not write the file).
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from bench.report import Section, load_section, markdown_table, progress

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = {
    "publish": [],
    "publish_cluster": [],
    "replica_wait": [],
    "put_status": [],
    "subscriber": [],
    "latency": [],
    "cluster_latency": [],
    "worker_memory": [],
    "stream_worker": [],
    "positions": [],
    "matching": [],
    "matching_quality": [],
    "fanout": [],
    # The same fan-out under daphne, to choose the production server on websockets too.
    "fanout-daphne": ["--server", "daphne"],
}
PACKAGES = [
    "django",
    "djangorestframework",
    "channels",
    "channels-redis",
    "redis",
    "hiredis",
    "uvicorn",
    "websockets",
    "psycopg",
]


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kib = int(
        next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    )
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    packages = ", ".join(f"{name} {version(name)}" for name in PACKAGES)
    return (
        f"{cpu}, {os.cpu_count()} cores, "
        f"{memory_kib / 2**20:.0f} GiB; Python {platform.python_version()}, Redis {redis_version.removeprefix('v=')}; "
        f"{packages}"
    )


def write(sections: list[Section], *, full: bool, failures: list[str]) -> None:
    summary = [
        [t.name, f"{t.ratio:.3f}", t.target, "met" if t.met else "**missed**"]
        for section in sections
        for t in section.targets
    ]
    parts = [
        "# Benchmarks",
        "",
        f"Written by `make bench{' ARGS=--full' if full else ''}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        f"Machine: {machine()}.",
        "",
        "Every benchmark runs the project's path and a raw anchor (redis-py, a bare `websockets` server) in "
        "the same invocation, alternating, on a Redis of its own, and reports the ratio project ÷ anchor. "
        "The machine is shared and noisy (2-2.5x between runs): compare ratios, not absolute figures across "
        "runs. Missed targets are reported as measured.",
        "",
        "## Summary",
        "",
        markdown_table(["what", "ratio / figure", "target", ""], summary),
    ]
    if failures:
        parts += ["", "Benchmarks that failed to run this time: " + ", ".join(failures) + "."]
    for section in sections:
        parts += ["", f"## {section.title}", "", f"`{section.command}`", "", section.table]
        if section.notes:
            parts += ["", section.notes]
    findings = ROOT / "bench" / "FINDINGS.md"
    if findings.exists():
        parts += ["", findings.read_text().rstrip()]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(parts) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="longer runs, more rounds")
    parser.add_argument("--only", choices=BENCHMARKS, help="run one benchmark; BENCHMARKS.md is left alone")
    args = parser.parse_args()
    names = [args.only] if args.only else list(BENCHMARKS)
    sections, failures = [], []
    for number, name in enumerate(names, 1):
        progress(f"benchmark {number}/{len(names)}: {name}")
        # Each in a process of its own: Django is set up once per process, on that benchmark's Redis.
        with tempfile.NamedTemporaryFile(suffix=".json") as result:
            module = name.split("-")[0]
            command = [sys.executable, "-m", f"bench.{module}", *BENCHMARKS[name], "--section-json", result.name]
            if subprocess.run([*command, *(["--full"] if args.full else [])], cwd=ROOT).returncode == 0:
                sections.append(load_section(result.name))
            else:  # one broken benchmark must not hide the others' figures
                failures.append(name)
    if not args.only:
        write(sections, full=args.full, failures=failures)
        progress("BENCHMARKS.md written")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
