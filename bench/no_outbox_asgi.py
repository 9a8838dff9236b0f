"""The project with the outbox switched off, for bench/put_status.py only.

Same app, but a status change publishes straight after the commit (the same one-round-trip
script) without writing an outbox row: what the outbox costs is the difference.
"""

import redis
from django.db import transaction

from ridehail.asgi import application  # noqa: F401  (sets Django up)
from ridehail.events.connection import shared_redis
from ridehail.events.publisher import publish_once
from users import services
from users.events import DRIVER_STATUS, DriverStatusChanged


def publish_without_outbox(event: DriverStatusChanged) -> None:
    def publish() -> None:
        try:
            publish_once(
                shared_redis(), topic=DRIVER_STATUS, key=event.key, version=event.version, payload=event.to_json()
            )
        except redis.RedisError:
            pass  # without an outbox such an event is simply lost

    transaction.on_commit(publish)


services.publish_on_commit = publish_without_outbox
