"""What every benchmark hands to `python -m bench` (make bench): a titled Markdown table."""

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field


@dataclass
class Target:
    """One ratio against its target, for the summary table."""

    name: str
    ratio: float
    target: str
    met: bool


@dataclass
class Section:
    title: str
    command: str
    table: str
    notes: str = ""
    targets: list[Target] = field(default_factory=list)


Progress = Callable[[str], None]
_started = time.monotonic()


def progress(message: str) -> None:
    elapsed = int(time.monotonic() - _started)
    print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {message}", flush=True)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def cli(run: Callable[..., Section], doc: str, options: dict[str, type]) -> None:
    """The command line every benchmark module shares: its options, --full, --section-json."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    for name, kind in options.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind)  # http_workers: --http-workers
    parser.add_argument("--full", action="store_true", help="longer runs, more rounds")
    parser.add_argument("--section-json", help="also write the result here (used by python -m bench)")
    arguments = vars(parser.parse_args())
    section_json = arguments.pop("section_json")
    section = run(**arguments)
    print(section.table, flush=True)
    if section_json:
        with open(section_json, "w") as out:
            json.dump(asdict(section), out)


def load_section(path: str) -> Section:
    with open(path) as source:
        data = json.load(source)
    return Section(**{**data, "targets": [Target(**target) for target in data["targets"]]})
