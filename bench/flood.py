"""Publish driver status events on the channel: as fast as possible, or at a fixed rate.

`python -m bench.flood REDIS_URL DRIVERS_JSON TOTAL RATE [FIRST_VERSION]` (RATE 0: as fast as
possible, pipelined 100 at a time; versions start after FIRST_VERSION, default 0). Each event
carries its publish time in `timestamp`.
"""

import json
import sys
import time
import uuid
from datetime import UTC, datetime

import redis

from users.events import DriverStatusChanged


def event(driver: str, version: int) -> bytes:
    return DriverStatusChanged(uuid.UUID(driver), version % 2 == 1, datetime.now(UTC), uuid.uuid4(), version).to_json()


def main() -> None:
    url, drivers_file, total, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    offset = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    drivers = json.load(open(drivers_file))
    client = redis.Redis.from_url(url)
    started = time.monotonic()
    pipe = client.pipeline(transaction=False)
    for n in range(total):
        payload = event(drivers[n % len(drivers)], offset + n // len(drivers) + 1)
        if rate:
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            client.publish("driver-status-changed", payload)
        else:
            pipe.publish("driver-status-changed", payload)
            if n % 100 == 99:
                pipe.execute()
    pipe.execute()
    print(json.dumps({"published": total, "seconds": time.monotonic() - started}), flush=True)


if __name__ == "__main__":
    main()
