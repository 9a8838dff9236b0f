"""The receiving side of bench/latency.py, as a process of its own (like a real worker).

`python -m bench.latency_worker project|raw DATABASE_URL REDIS_URL`: runs until SIGTERM, then
prints one JSON object: {"driverId:version" or "n": perf_counter at arrival}. perf_counter is
CLOCK_MONOTONIC on Linux, shared by all processes, so the sender's clock compares directly.
"""

import json
import signal
import sys
import threading
import time


def main() -> None:
    mode, database_url, redis_url = sys.argv[1:4]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    arrived: dict[str, float] = {}
    if mode == "raw":
        import redis

        pubsub = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe("latency-anchor")
        while not stop.is_set():
            message = pubsub.get_message(timeout=0.2)
            if message:
                arrived[message["data"].decode()] = time.perf_counter()
    else:
        from bench.django_env import quiet_worker_logs, setup_django

        setup_django(database_url, redis_url)
        quiet_worker_logs("rides")
        from ridehail.events.connection import worker_redis
        from ridehail.events.pubsub import PubSubRunner
        from rides.subscribers import MatchingPoolHandler

        class Timed(MatchingPoolHandler):
            def handle_batch(self, events: list) -> int:
                applied = super().handle_batch(events)
                now = time.perf_counter()
                for event in events:
                    arrived[f"{event.driver_id}:{event.version}"] = now
                return applied

        PubSubRunner(Timed(worker_redis()), read_client=worker_redis(), stop=stop).run()
    print(json.dumps(arrived), flush=True)


if __name__ == "__main__":
    main()
