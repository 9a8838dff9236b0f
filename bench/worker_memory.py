"""Worker memory: the RSS of a real `run_subscriber rides` process after 10,000 events and after
1,000,000 (200,000 in the quick run). Target: the second ≤ the first + 10 MB.

    .venv/bin/python -m bench.worker_memory [--events 1000000]
"""

import json
import subprocess
import tempfile
import time

from bench.common import PrivateRedis, python, rss_bytes, temp_sqlite_url
from bench.django_env import make_drivers, setup_django
from bench.report import Progress, Section, Target, cli, markdown_table, progress

COMMAND = ".venv/bin/python -m bench.worker_memory"
DRIVERS = 1000
WARM_UP = 10_000


def wait_applied(client, driver: str, version: int, timeout: float) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while int(client.hget("rides:matching-pool:versions", driver) or 0) < version:
        if time.monotonic() > deadline:
            raise RuntimeError(f"worker did not reach version {version} of driver {driver} in {timeout}s")
        time.sleep(0.2)


def run(*, full: bool = False, events: int | None = None, report: Progress = progress) -> Section:
    events = events or (1_000_000 if full else 200_000)
    with PrivateRedis("--client-output-buffer-limit", "pubsub", "0", "0", "0") as private_redis:
        database_url = temp_sqlite_url()
        setup_django(database_url, private_redis.url)
        drivers = [str(driver.id) for driver in make_drivers(DRIVERS)]
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as drivers_file:
            json.dump(drivers, drivers_file)
        worker = python(
            "manage.py",
            "run_subscriber",
            "rides",
            env={"DATABASE_URL": database_url, "REDIS_URL": private_redis.url},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while private_redis.client.pubsub_numsub("driver-status-changed")[0][1] < 1:
                time.sleep(0.1)
            time.sleep(1)
            flood = ["-m", "bench.flood", private_redis.url, drivers_file.name]
            python(*flood, str(WARM_UP), "0", stdout=subprocess.DEVNULL).wait()
            wait_applied(private_redis.client, drivers[-1], WARM_UP // DRIVERS, timeout=120)
            after_warm_up = rss_bytes(worker.pid)
            report(
                f"worker memory: RSS {after_warm_up / 2**20:.1f} MiB after {WARM_UP:,} events; "
                f"sending {events - WARM_UP:,} more"
            )
            # Versions continue from where the warm-up left them, so every event is applied.
            python(*flood, str(events - WARM_UP), "0", str(WARM_UP // DRIVERS), stdout=subprocess.DEVNULL).wait()
            wait_applied(private_redis.client, drivers[-1], events // DRIVERS, timeout=1200)
            after_all = rss_bytes(worker.pid)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    growth = (after_all - after_warm_up) / 2**20
    table = markdown_table(
        ["run_subscriber rides", "RSS MiB"],
        [
            [f"after {WARM_UP:,} events", f"{after_warm_up / 2**20:.1f}"],
            [f"after {events:,} events", f"{after_all / 2**20:.1f}"],
            ["growth (target ≤ 10 MB)", f"{growth:+.1f}"],
        ],
    )
    return Section(
        title="Worker memory",
        command=f"{COMMAND} --events {events}",
        table=table,
        targets=[Target("worker RSS growth, MiB", growth, "≤ 10", growth <= 10)],
    )


if __name__ == "__main__":
    cli(run, __doc__, {"events": int})
