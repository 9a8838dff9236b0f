"""Many websocket clients in one process, cheap enough not to be the bottleneck.

`python -m bench.ws_clients URL COUNT EXPECTED TIMEOUT [COOKIE ORIGIN]`; prints "clients
ready" once all are connected, then one JSON line with what they received: status events
(with their delay from publish) and positions frames (with the longest gap between two).

A general-purpose client spends more CPU per frame than the servers under test, so this
one does the opening handshake itself and then only splits the byte stream into frames:
it counts every event frame, answers pings, and reads the publish time (the event's
`timestamp`) out of the frame to record the delay from publish to receipt.
"""

import asyncio
import base64
import json
import os
import sys
import time
from datetime import datetime
from urllib.parse import urlsplit

TIMESTAMP = b'"timestamp":"'


STATUS = b'{"type":"driver-status-changed"'
POSITIONS = b'{"type":"positions"'


class FrameCounter(asyncio.Protocol):
    def __init__(self, expected: int, latencies: list[float], done: asyncio.Future) -> None:
        self.expected, self.latencies, self.done = expected, latencies, done
        self.buffer = bytearray()
        self.received = 0
        self.position_frames = 0
        self.last_positions = 0.0
        self.longest_positions_gap = 0.0
        self.handshake_done = False
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.handshake_done:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[:end]).split(b"\r\n", 1)[0]
            del self.buffer[: end + 4]
            if b" 101 " not in status:
                self.opened.set_exception(RuntimeError(status.decode(errors="replace")))
                return
            self.handshake_done = True
            self.opened.set_result(None)
        self._frames(time.time())

    def _frames(self, now: float) -> None:
        buffer = self.buffer
        offset = 0
        while len(buffer) - offset >= 2:
            opcode, length = buffer[offset] & 0x0F, buffer[offset + 1] & 0x7F
            header = 2
            if length == 126:
                if len(buffer) - offset < 4:
                    break
                length, header = int.from_bytes(buffer[offset + 2 : offset + 4], "big"), 4
            elif length == 127:
                if len(buffer) - offset < 10:
                    break
                length, header = int.from_bytes(buffer[offset + 2 : offset + 10], "big"), 10
            if len(buffer) - offset < header + length:
                break
            # Only the head of a frame is looked at: a positions frame is ~100 KB, and copying it
            # would make these clients slower than the servers they measure.
            head = bytes(buffer[offset + header : offset + header + min(length, 256)])
            payload_end = offset + header + length
            if opcode == 0x9:  # ping: answer with a masked pong
                self.transport.write(_client_frame(0xA, bytes(buffer[offset + header : payload_end])))
            elif opcode == 0x8:
                self._finish()
            elif opcode == 0x1 and head.startswith(POSITIONS):
                if self.last_positions:
                    self.longest_positions_gap = max(self.longest_positions_gap, now - self.last_positions)
                self.last_positions = now
                self.position_frames += 1
            elif opcode == 0x1 and head.startswith(STATUS):
                start = head.find(TIMESTAMP)
                if start >= 0:
                    start += len(TIMESTAMP)
                    published = datetime.fromisoformat(head[start : start + 27].decode()).timestamp()
                    self.latencies.append(now - published)
                self.received += 1
                if self.received >= self.expected:
                    self._finish()
            offset = payload_end
        del buffer[:offset]

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(self.received)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed during the handshake"))
        self._finish()


def _client_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


async def one_client(url: str, headers: dict[str, str], expected: int, latencies: list[float]) -> FrameCounter:
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    transport, protocol = await loop.create_connection(
        lambda: FrameCounter(expected, latencies, done), parts.hostname, parts.port
    )
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {parts.path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await asyncio.wait_for(protocol.opened, 60)
    protocol.transport_ref = transport
    return protocol


async def main() -> None:
    url, count, expected, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    headers = {"Cookie": sys.argv[5], "Origin": sys.argv[6]} if len(sys.argv) > 6 else {}
    latencies: list[float] = []
    clients, errors = [], []
    for _ in range(count):
        try:
            clients.append(await one_client(url, headers, expected, latencies))
        except Exception as exc:  # report, do not hide: the summary counts failed clients
            errors.append(repr(exc))
    print("clients ready", flush=True)
    await asyncio.wait([client.done for client in clients], timeout=timeout)
    received = sum(client.received for client in clients)
    for client in clients:
        client.transport_ref.close()
    result = {
        "received": received,
        "latencies": latencies,
        "position_frames": [client.position_frames for client in clients],
        "positions_gaps": [client.longest_positions_gap for client in clients],
        "errors": errors[:5],
        "failed": len(errors),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
