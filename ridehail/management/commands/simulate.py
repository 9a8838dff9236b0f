"""`python manage.py simulate`: a city's worth of drivers and riders through the public HTTP API.

The command only parses options and prints; the city lives in `ridehail/simulation/`.
"""

import argparse
import contextlib
import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ridehail.simulation.agents import BERLIN, Config
from ridehail.simulation.client import Unreachable
from ridehail.simulation.geo import Point, parse_point
from ridehail.simulation.run import simulate


def center(text: str) -> Point:
    try:
        return parse_point(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--center wants LAT,LNG: {exc}") from None


class Command(BaseCommand):
    requires_system_checks = []  # a client of a server elsewhere: this checkout's settings are not its business
    help = (
        "Simulated drivers and riders against a running ridehail (through its HTTP API only): drivers "
        "sign up, go online and report positions; riders request rides; drivers complete them. "
        "Prints a progress line every few seconds and a summary at the end (Ctrl-C ends early)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--drivers", type=int, default=50, help="simulated drivers (default 50)")
        parser.add_argument("--riders", type=int, default=20, help="simulated riders (default 20)")
        parser.add_argument("--seconds", type=float, default=0, help="how long to run; 0 (default): until Ctrl-C")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="the ridehail server")
        parser.add_argument("--center", type=center, default=BERLIN, help="LAT,LNG of the city (default Berlin)")
        parser.add_argument("--area-km", type=float, default=2.5, help="everyone stays this close to the centre")
        parser.add_argument(
            "--trip-seconds", type=float, default=30, help="the most a leg of a ride takes (a sped-up city)"
        )
        parser.add_argument("--seed", type=int, default=None, help="the same paths and choices on every run")
        parser.add_argument("--record", metavar="PATH", help="write one JSON line per HTTP response to PATH")

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
