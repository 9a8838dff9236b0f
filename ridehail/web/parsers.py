"""The API's JSON parser (DRF's DEFAULT_PARSER_CLASSES); a module of its own, as DRF imports it from its settings."""

from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

# No request body of ours nests more than two levels; a sane margin, far below Python's recursion limit.
MAX_JSON_DEPTH = 32


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser (DEFAULT_PARSER_CLASSES), refusing documents nested deeper than MAX_JSON_DEPTH.

    Python's json module recurses once per level: 2 KB of `[` raised RecursionError, a 500, on
    every endpoint that reads a body. Here it is a 400 like any other unparsable body.
    """

    def parse(self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels") from None
        if json_depth(data) > MAX_JSON_DEPTH:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels")
        return data


def json_depth(data: Any) -> int:
    """How deeply lists and objects nest in parsed JSON (a scalar is 0), without recursing."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in children)
    return deepest
