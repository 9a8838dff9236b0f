"""What `nearby` costs with the positions split into partitions: N = 1 against N = 3, same Redis, same drivers.

    python -m bench.nearby_partitions --redis-url redis://127.0.0.1:6379/0 [--cluster] [--drivers 5000]

Fills the tracked set, the matching pool and the geo index with `--drivers` fresh positions
in a 6 km square (random ids: no database), then times `nearby_drivers` (radius 5 km, limit
10, as the API's default) and the matcher's ask (limit 20 among the pool) in one thread,
for each partition count, in alternating rounds (the machine's load changes less between
the two counts). Prints the median and p99 per call, calls per second, and the Redis CPU
time per call (scripts' `usec` in INFO commandstats, summed over every master): the part
the machine's load does not blur.
"""

import argparse
import os
import random
import statistics
import time
import uuid
from typing import Any

CENTRE = (52.52, 13.405)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--cluster", action="store_true", help="the URL names a node of a Redis Cluster")
    parser.add_argument("--drivers", type=int, default=5000)
    parser.add_argument("--calls", type=int, default=3000, help="per partition count and kind of call")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ["REDIS_URL"] = args.redis_url
    os.environ["REDIS_CLUSTER"] = "1" if args.cluster else "0"
    if args.cluster:
        os.environ.setdefault("RIDEHAIL_CHANNEL_LAYER_URL", "redis://127.0.0.1:1/0")  # not used here
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ridehail.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.utils import timezone

    from locations.positions import TRACKED_DRIVERS, Position, apply_positions, partitions
    from locations.selectors import nearby_drivers
    from ridehail.events.connection import shared_redis
    from rides.pool import MATCHING_POOL
    from users.selectors import DriverState

    client = shared_redis()
    rng = random.Random(1)
    ids = [uuid.uuid4() for _ in range(args.drivers)]
    points = [(CENTRE[0] + rng.uniform(-3, 3) * 0.009, CENTRE[1] + rng.uniform(-3, 3) * 0.0147) for _ in ids]
    print(f"{args.drivers} drivers, {args.calls} calls each, {'cluster' if args.cluster else 'single Redis'}")
    kinds = (("nearby, limit 10", None, 10), ("matcher's ask, limit 20", MATCHING_POOL, 20))
    took: dict[tuple[int, str], list[float]] = {(count, what): [] for count in (1, 3) for what, _, _ in kinds}
    server_usec: dict[tuple[int, str], int] = dict.fromkeys(took, 0)
    for _ in range(args.rounds):
        for count in (1, 3):
            settings.RIDEHAIL_POSITION_PARTITIONS = count
            states = [DriverState(driver_id, True, 1) for driver_id in ids]
            TRACKED_DRIVERS.merge(client, states)
            MATCHING_POOL.merge(client, states)
            now = timezone.now()
            for start in range(0, len(ids), 1000):
                chunk = range(start, min(start + 1000, len(ids)))
                apply_positions(client, [Position(ids[n], *points[n], now) for n in chunk])
            for what, among, limit in kinds:
                before = script_usec(client)
                for _ in range(args.calls // args.rounds):
                    lat, lng = CENTRE[0] + rng.uniform(-2, 2) * 0.009, CENTRE[1] + rng.uniform(-2, 2) * 0.0147
                    began = time.perf_counter()
                    found = nearby_drivers(client, lat=lat, lng=lng, radius_km=5.0, limit=limit, among=among)
                    took[count, what].append(time.perf_counter() - began)
                    assert len(found) == limit
                server_usec[count, what] += script_usec(client) - before
            for partition in partitions():  # leave nothing behind for the other count
                client.delete(partition.geo_index, partition.geo_data)
            TRACKED_DRIVERS.clear(client)
            MATCHING_POOL.clear(client)
    for (count, what), times in took.items():
        times.sort()
        print(
            f"N={count} {what:25s} median {statistics.median(times) * 1e6:7.0f} µs"
            f"  p99 {times[int(len(times) * 0.99)] * 1e6:7.0f} µs  {len(times) / sum(times):7.0f}/s"
            f"  Redis CPU {server_usec[count, what] / len(times):6.0f} µs/call"
        )


def script_usec(client: Any) -> int:
    """Microseconds the Redis servers (every master) have spent in scripts so far."""
    from redis.cluster import RedisCluster

    if isinstance(client, RedisCluster):
        per_node = list(client.info("commandstats", target_nodes=RedisCluster.PRIMARIES).values())
    else:
        per_node = [client.info("commandstats")]
    names = ("cmdstat_eval", "cmdstat_evalsha")
    return sum(int(stats.get(name, {}).get("usec", 0)) for stats in per_node for name in names)


if __name__ == "__main__":
    main()
