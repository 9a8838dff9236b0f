"""Each master's share of the position messages on a Redis Cluster, with 1 and with 3 position partitions.

    python -m tests.cluster    # in another terminal: prints the cluster's URL
    python -m bench.position_shares --redis-url redis://127.0.0.1:<port>/0 [--messages 3000]

Publishes positions of random drivers through `publish_live` (what `PUT /api/locations/driver-location`
does) and counts, on every master, the PUBLISH and SPUBLISH calls it served (INFO commandstats,
before and after). The issue's target: with 3 partitions, the busiest master's share <= 0.5.
"""

import argparse
import os
import uuid
from datetime import UTC, datetime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", required=True, help="any node of the cluster")
    parser.add_argument("--messages", type=int, default=3000)
    args = parser.parse_args()
    os.environ["REDIS_URL"] = args.redis_url
    os.environ["REDIS_CLUSTER"] = "1"
    os.environ.setdefault("RIDEHAIL_CHANNEL_LAYER_URL", "redis://127.0.0.1:1/0")  # not used here
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ridehail.settings")
    import django

    django.setup()
    from django.conf import settings
    from redis.cluster import RedisCluster

    from locations.events import DRIVER_LOCATION, DriverLocationUpdated
    from ridehail.events.connection import shared_redis
    from ridehail.events.publisher import publish_live

    cluster = shared_redis()
    assert isinstance(cluster, RedisCluster)

    def messages_by_master() -> dict[str, int]:
        stats = cluster.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
        names = ("cmdstat_publish", "cmdstat_spublish")
        return {node: sum(int(s.get(name, {}).get("calls", 0)) for name in names) for node, s in stats.items()}

    for count in (1, 3):
        settings.RIDEHAIL_POSITION_PARTITIONS = count
        before = messages_by_master()
        for _ in range(args.messages):
            publish_live(DriverLocationUpdated(uuid.uuid4(), 52.52, 13.405, datetime.now(UTC)))
        after = messages_by_master()
        shares = {node: (after[node] - before.get(node, 0)) / args.messages for node in after}
        print(f"N={count} channels {', '.join(DRIVER_LOCATION.channels)}")
        print("    share per master: " + ", ".join(f"{node} {share:.3f}" for node, share in sorted(shares.items())))
        print(f"    busiest master: {max(shares.values()):.3f}")


if __name__ == "__main__":
    main()
