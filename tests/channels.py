"""Listening on a topic's channel from a test, subscribed before the test acts."""

import os
import time
from typing import Any

import redis

from ridehail.events.topic import Topic
from tests.catalogue import assert_matches_catalogue
from users.events import DRIVER_STATUS


class ChannelListener:
    """Subscribes to the event channel before the test acts, so no message can slip by."""

    def __init__(self, client: redis.Redis, topic: Topic = DRIVER_STATUS) -> None:
        self.client = client
        self.channel = topic.channel
        self.pubsub = client.pubsub()
        self.pubsub.subscribe(self.channel)
        confirmation = self.pubsub.get_message(timeout=5)
        assert confirmation and confirmation["type"] == "subscribe", confirmation

    def next_message(self, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=0.1)
            if message and message["type"] == "message":
                return message["data"]
        raise AssertionError(f"no message on {self.channel} within {timeout}s")

    def next_event(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next message, which must be what the event catalogue (AsyncAPI) says the channel carries."""
        return assert_matches_catalogue(self.channel, self.next_message(timeout))

    def assert_nothing_published(self) -> None:
        """Publish a marker; Pub/Sub keeps order, so if it comes first nothing came before it."""
        marker = b"marker-" + os.urandom(8).hex().encode()
        self.client.publish(self.channel, marker)
        assert self.next_message() == marker, "an event was published"

    def close(self) -> None:
        self.pubsub.close()
