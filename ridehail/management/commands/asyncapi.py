"""`python manage.py asyncapi [--output docs/asyncapi.json]`: the event catalogue, generated.

Here rather than in `manage.py events`: the catalogue names the dashboard among the consumers,
and `ridehail/events/` (that command's home) imports no app.
"""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ridehail.catalogue import DOCUMENT_PATH, event_catalogue, render_document


class Command(BaseCommand):
    help = "Write the AsyncAPI 3.0 document of every topic (the committed copy: --output docs/asyncapi.json)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output", type=Path, help=f"write it to this file (the committed one: {DOCUMENT_PATH.name} in docs/)"
        )

    def handle(self, *args: Any, output: Path | None, **options: Any) -> None:
        text = render_document(event_catalogue())
        if output is None:
            self.stdout.write(text, ending="")
            return
        output.write_text(text)
        self.stdout.write(f"wrote {output}")
