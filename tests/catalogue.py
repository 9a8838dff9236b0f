"""Checking messages against the event catalogue (the AsyncAPI document), from tests.

Every event a test reads off a channel (`ChannelListener.next_event`) or a stream goes through
`assert_matches_catalogue`: the suite's real events are what the document promises, or a test fails.
"""

import functools
import json
from typing import Any

import jsonschema

from ridehail.catalogue import event_catalogue


@functools.cache
def _payload_validators() -> dict[str, jsonschema.Draft7Validator]:
    """By address (a channel or a stream): the validator of the message it carries."""
    catalogue = event_catalogue()
    messages = catalogue["components"]["messages"]
    validators = {}
    for channel in catalogue["channels"].values():
        for ref in channel["messages"].values():
            payload = messages[ref["$ref"].rsplit("/", 1)[1]].get("payload")
            if payload is not None:
                checker = jsonschema.FormatChecker()
                validators[channel["address"]] = jsonschema.Draft7Validator(payload, format_checker=checker)
    return validators


def assert_matches_catalogue(address: str, raw: bytes | str) -> dict[str, Any]:
    """The message, decoded, after checking it against what the document says `address` carries."""
    validators = _payload_validators()
    assert address in validators, f"{address!r} is not in the event catalogue: {sorted(validators)}"
    event = json.loads(raw)
    errors = [
        f"{'/'.join(map(str, e.absolute_path)) or '(message)'}: {e.message}"
        for e in validators[address].iter_errors(event)
    ]
    assert not errors, f"a message on {address} does not match the event catalogue: {errors}\n{event}"
    return event
