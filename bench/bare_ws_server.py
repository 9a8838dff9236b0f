"""The anchor: a bare `websockets` server fed by one Redis subscription, same bytes to every socket.

No auth, no Django, no snapshot: the least work a fan-out from Redis to websockets can do.
`python -m bench.bare_ws_server PORT REDIS_URL`
"""

import asyncio
import sys

import redis.asyncio as aioredis
import websockets

CHANNEL = "driver-status-changed"


async def main(port: int, redis_url: str) -> None:
    sockets: set = set()

    async def handler(socket: websockets.ServerConnection) -> None:
        sockets.add(socket)
        try:
            await socket.wait_closed()
        finally:
            sockets.discard(socket)

    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(CHANNEL)
    async with websockets.serve(handler, "127.0.0.1", port, max_queue=None):
        print("bare server ready", flush=True)
        async for message in pubsub.listen():
            if message["type"] == "message":
                websockets.broadcast(sockets, message["data"].decode())


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
