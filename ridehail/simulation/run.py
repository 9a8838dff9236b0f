"""One simulated run: check the server, start everyone, print progress, stop, summarise."""

import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import IO

import httpx

from ridehail.simulation.agents import City, Config, Driver, Rider
from ridehail.simulation.client import Api, Recorder, check_ready
from ridehail.simulation.stats import Stats

PROGRESS_EVERY = 5.0
LEAVE_TIMEOUT = 5.0


def simulate(config: Config, *, write: Callable[[str], None], record: IO[str] | None = None) -> Stats:
    """Run the city until `config.seconds` pass (0: until Ctrl-C or SIGTERM); raises Unreachable first if
    there is no server to talk to."""
    return asyncio.run(_simulate(config, write=write, record=record))


async def _simulate(config: Config, *, write: Callable[[str], None], record: IO[str] | None) -> Stats:
    stats = Stats(drivers=config.drivers, riders=config.riders)
    # Enough connections that a slow answer (a password hash) does not hold up everyone's reports.
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=config.base_url, limits=limits, timeout=httpx.Timeout(10.0)) as http:
        await check_ready(http)
        city = City(config, Api(http, stats, Recorder(record) if record else None))
        people = _interleaved(
            [Driver(city, n) for n in range(1, config.drivers + 1)],
            [Rider(city, n) for n in range(1, config.riders + 1)],
        )
        tasks = [asyncio.create_task(person.run(), name=person.name) for person in people]
        tasks.append(asyncio.create_task(_progress(stats, write)))
        await _until_done(config.seconds, tasks)
        await _stop(tasks)
        stats.stop_clock()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(person.leave() for person in people)), LEAVE_TIMEOUT)
    return stats


def _interleaved(drivers: list[Driver], riders: list[Rider]) -> list[Driver | Rider]:
    """Drivers and riders mixed evenly: sign-ins queue (each costs the server a password hash, ~0.3 s
    a core), and with everyone's turn spread out the first rides are requested while the fleet grows."""
    share = {id(person): n / len(group) for group in (drivers, riders) for n, person in enumerate(group)}
    return sorted([*drivers, *riders], key=lambda person: share[id(person)])


async def _until_done(seconds: float, tasks: list[asyncio.Task]) -> None:
    """Wait for the time to pass, or for Ctrl-C / SIGTERM; a person that crashes ends the run (a bug)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    crashed: list[BaseException] = []

    def on_done(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            crashed.append(task.exception())
            stop.set()

    for task in tasks:
        task.add_done_callback(on_done)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds or None)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        for task in tasks:
            task.remove_done_callback(on_done)
    if crashed:
        raise crashed[0]


async def _stop(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _progress(stats: Stats, write: Callable[[str], None]) -> None:
    while True:
        await asyncio.sleep(PROGRESS_EVERY)
        write(stats.progress_line())
