"""A small keep-alive HTTP/1.1 load generator: N connections, each PUTs in a loop for D seconds.

`python -m bench.http_load PORT SECONDS TOKEN [TOKEN ...]` (one connection per token);
prints one JSON line: requests, errors (non-200), latencies. No dependency beyond asyncio.
"""

import asyncio
import json
import sys
import time


async def one_connection(port: int, token: str, deadline: float, latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        "PUT /api/users/driver-status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Token {token}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    while time.monotonic() < deadline:
        started = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(
            int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
        if status != 200:
            errors.append(status)
    writer.close()


async def main() -> None:
    port, seconds, tokens = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
    latencies: list[float] = []
    errors: list[int] = []
    started = time.monotonic()
    await asyncio.gather(*(one_connection(port, token, started + seconds, latencies, errors) for token in tokens))
    elapsed = time.monotonic() - started
    print(
        json.dumps(
            {
                "requests": len(latencies),
                "elapsed": elapsed,
                "errors": errors[:20],
                "error_count": len(errors),
                "latencies": latencies,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
