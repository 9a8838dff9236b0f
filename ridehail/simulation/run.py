"""One simulated run: check the server, start everyone, print progress, stop, summarise."""

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import IO

import httpx

from ridehail.simulation.agents import City, Config, Driver, Rider
from ridehail.simulation.client import Api, Recorder, check_ready
from ridehail.simulation.stats import Stats

PROGRESS_EVERY = 5.0
LEAVE_TIMEOUT = 5.0
RESTART_AFTER = 2.0

logger = logging.getLogger("simulate")


def simulate(config: Config, *, write: Callable[[str], None], record: IO[str] | None = None) -> Stats:
    """Run the city until `config.seconds` pass (0: until Ctrl-C or SIGTERM); raises Unreachable first if
    there is no server to talk to."""
    return asyncio.run(_simulate(config, write=write, record=record))


async def _simulate(config: Config, *, write: Callable[[str], None], record: IO[str] | None) -> Stats:
    stats = Stats(drivers=config.drivers, riders=config.riders)
    stop = _stop_on_signals()
    # Enough connections that a slow answer (a password hash) does not hold up everyone's reports.
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=config.base_url, limits=limits, timeout=httpx.Timeout(10.0)) as http:
        await check_ready(http)
        city = City(config, Api(http, stats, Recorder(record) if record else None))
        people = _interleaved(
            [Driver(city, n) for n in range(1, config.drivers + 1)],
            [Rider(city, n) for n in range(1, config.riders + 1)],
        )
        tasks = [asyncio.create_task(_keep_going(person, stats), name=person.name) for person in people]
        tasks.append(asyncio.create_task(_progress(stats, write)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), config.seconds or None)
        await _cancel(tasks)
        stats.stop_clock()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(person.leave() for person in people)), LEAVE_TIMEOUT)
    return stats


def _stop_on_signals() -> asyncio.Event:
    """Ctrl-C or SIGTERM ends the run, with the summary, instead of a KeyboardInterrupt traceback."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def _keep_going(person: Driver | Rider, stats: Stats) -> None:
    """A bug in one simulated person is logged, counted as an error and that person starts over:
    it must not end the run for everyone, nor pass unnoticed."""
    while True:
        try:
            return await person.run()
        except Exception as exc:
            logger.exception("%s failed; starting over in %s s", person.name, RESTART_AFTER)
            stats.failures[f"simulator {type(exc).__name__}"] += 1
            await asyncio.sleep(RESTART_AFTER)


def _interleaved(drivers: list[Driver], riders: list[Rider]) -> list[Driver | Rider]:
    """Drivers and riders mixed evenly: sign-ins queue (each costs the server a password hash, ~0.3 s
    a core), and with everyone's turn spread out the first rides are requested while the fleet grows."""
    share = {id(person): n / len(group) for group in (drivers, riders) for n, person in enumerate(group)}
    return sorted([*drivers, *riders], key=lambda person: share[id(person)])


async def _cancel(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _progress(stats: Stats, write: Callable[[str], None]) -> None:
    while True:
        await asyncio.sleep(PROGRESS_EVERY)
        write(stats.progress_line())
