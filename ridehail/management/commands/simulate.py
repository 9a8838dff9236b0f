"""`python manage.py simulate`: a city's worth of drivers and riders through the public HTTP API.

The command only parses options and prints; the city lives in `ridehail/simulation/`.
"""

import argparse
import contextlib
import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, DjangoHelpFormatter

from ridehail.simulation.agents import BERLIN, Config
from ridehail.simulation.client import Unreachable
from ridehail.simulation.geo import Point, parse_point
from ridehail.simulation.run import simulate


def center(text: str) -> Point:
    try:
        return parse_point(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--center wants LAT,LNG: {exc}") from None


DESCRIPTION = """\
A simulated city against a running ridehail, through its public HTTP API only (asyncio +
httpx, keep-alive; the code is in ridehail/simulation/).

Drivers (sim-driver-0001, ...) sign up on a first run and log in again on later ones, go
online, drive at 30-50 km/h towards random waypoints within --area-km of the centre and
report their position every ~2.5 s (waiting out a 429's Retry-After). A driver that
GET /api/rides/current hands a ride drives to the pickup, then to the dropoff (each leg at
most --trip-seconds), and completes it; now and then one goes offline for a while. Riders
(sim-rider-0001, ...) request rides in the area, watch them, and one in ten cancels.

Every 5 s a progress line; at the end (--seconds, or Ctrl-C) a summary: requests by status,
errors (5xx or no answer), rides requested / assigned / completed / cancelled / expired,
and the mean time from request to assignment. On leaving, drivers go offline and riders
cancel the rides they still wait for (counted as cancelled). Exits 1 if the server does not
answer at start."""

EPILOG = """\
Each sign-in costs the server a password hash or two (~0.3 s of a core each), so a fleet
comes online over its first minutes: 50 drivers and 20 riders in about half a minute, 200
and 100 in about three on a 2-core machine. The whole city signs in from one address: give
the server a higher RIDEHAIL_THROTTLE_AUTH (make demo does).

--record writes one JSON line per HTTP response: t, method, path, status and elapsedMs,
rideId for a ride's 201, error (and status null) when no answer came.

Example: manage.py simulate --drivers 200 --riders 100 --seconds 60 --seed 1"""


class ParagraphsHelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Django's option order, with the description's and epilog's paragraphs kept as written."""


class Command(BaseCommand):
    requires_system_checks = []  # a client of a server elsewhere: this checkout's settings are not its business
    help = DESCRIPTION

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        kwargs.setdefault("formatter_class", ParagraphsHelpFormatter)
        return super().create_parser(prog_name, subcommand, epilog=EPILOG, **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--drivers", type=int, default=50, help="how many simulated drivers (default 50)")
        parser.add_argument("--riders", type=int, default=20, help="how many simulated riders (default 20)")
        parser.add_argument(
            "--seconds", type=float, default=0, help="how long to run, in seconds; 0 (default): until Ctrl-C or SIGTERM"
        )
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="the ridehail server to drive (default http://127.0.0.1:8000, what make run serves)",
        )
        parser.add_argument(
            "--center", type=center, default=BERLIN, help="LAT,LNG of the city's centre (default 52.52,13.405: Berlin)"
        )
        parser.add_argument(
            "--area-km", type=float, default=2.5, help="everyone stays within this many km of the centre (default 2.5)"
        )
        parser.add_argument(
            "--trip-seconds",
            type=float,
            default=30,
            help="the most seconds a leg of a ride (to the pickup, to the dropoff) takes: a sped-up city (default 30)",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=None,
            help="the same paths and choices on every run with the same seed (default: random)",
        )
        parser.add_argument(
            "--record", metavar="PATH", help="write one JSON line per HTTP response to PATH (see below)"
        )

    def handle(self, *args: Any, record: str | None, **options: Any) -> None:
        for name in ("drivers", "riders", "seconds"):
            if options[name] < 0:
                raise CommandError(f"--{name} must not be negative")
        if options["area_km"] <= 0 or options["trip_seconds"] <= 0:
            raise CommandError("--area-km and --trip-seconds must be positive")
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would bury the progress line
        config = Config(
            drivers=options["drivers"],
            riders=options["riders"],
            seconds=options["seconds"],
            base_url=options["base_url"],
            center=options["center"],
            area_km=options["area_km"],
            trip_seconds=options["trip_seconds"],
            seed=options["seed"],
        )
        self.stdout.write(
            f"simulating {config.drivers} drivers and {config.riders} riders around "
            f"{config.center.lat},{config.center.lng} against {config.base_url}"
            + (f" for {config.seconds:g} s" if config.seconds else " until Ctrl-C")
        )
        with open(record, "w") if record else contextlib.nullcontext() as recording:
            try:
                stats = simulate(config, write=self.stdout.write, record=recording)
            except Unreachable as exc:
                raise CommandError(str(exc)) from None
        for line in stats.summary():
            self.stdout.write(line)
