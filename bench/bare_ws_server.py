"""The anchor: a bare `websockets` server fed by one Redis subscription, same bytes to every socket.

No auth, no Django, no snapshot: the least work a fan-out from Redis to websockets can do.
Status events go out as they come; positions are merged by driver and sent as one frame per
interval, as the project does, so both do the same work for the same load.
`python -m bench.bare_ws_server PORT REDIS_URL [INTERVAL]`
"""

import asyncio
import json
import sys
import time

import redis.asyncio as aioredis
import websockets

STATUS, POSITIONS = "driver-status-changed", "driver-location-updated"


async def main(port: int, redis_url: str, interval: float) -> None:
    sockets: set = set()

    async def handler(socket: websockets.ServerConnection) -> None:
        sockets.add(socket)
        try:
            await socket.wait_closed()
        finally:
            sockets.discard(socket)

    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(STATUS, POSITIONS)
    moved: dict[str, dict] = {}
    next_frame = time.monotonic() + interval
    # A write buffer big enough for a positions frame: broadcast() skips a socket above it.
    async with websockets.serve(handler, "127.0.0.1", port, max_queue=None, compression=None, write_limit=2**22):
        print("bare server ready", flush=True)
        while True:
            message = await pubsub.get_message(timeout=max(0.0, next_frame - time.monotonic()))
            if message and message["channel"] == STATUS.encode():
                # The same bytes the project sends: the event with its type in front.
                websockets.broadcast(sockets, '{"type":"driver-status-changed",' + message["data"].decode()[1:])
            elif message:
                position = json.loads(message["data"])
                moved[position["driverId"]] = position
            if time.monotonic() >= next_frame:
                if moved:
                    frame = json.dumps({"type": "positions", "positions": list(moved.values())}, separators=(",", ":"))
                    websockets.broadcast(sockets, frame)
                    moved = {}
                next_frame = time.monotonic() + interval


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 1.0))
