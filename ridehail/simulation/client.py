"""The simulator's HTTP client: one keep-alive connection pool, every response counted and,
with `--record`, written down as one JSON line for whoever checks the run afterwards."""

import asyncio
import json
import time
from typing import IO, Any

import httpx

from ridehail.simulation.stats import Stats

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class Unreachable(Exception):
    """The server did not answer, or said it is not ready: nothing to simulate against."""


class Recorder:
    """One JSON line per HTTP response: `{"t","method","path","status","elapsedMs"}` (+ `rideId` for a ride's 201)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(
        self, method: str, path: str, status: int | None, elapsed: float, body: Any = None, error: str = ""
    ) -> None:
        line: dict[str, Any] = {"t": round(time.time(), 3), "method": method, "path": path, "status": status}
        if status == 201 and isinstance(body, dict) and "rideId" in body:
            line["rideId"] = body["rideId"]
        line["elapsedMs"] = round(elapsed * 1000, 1)
        if error:
            line["error"] = error
        self.stream.write(json.dumps(line) + "\n")
        self.stream.flush()  # a run that is killed still leaves every line it got


class Api:
    """ridehail's public API as the simulated people use it."""

    def __init__(self, http: httpx.AsyncClient, stats: Stats, recorder: Recorder | None = None) -> None:
        self.http, self.stats, self.recorder = http, stats, recorder

    async def call(self, method: str, path: str, *, token: str = "", body: dict | None = None) -> httpx.Response | None:
        """One request; None when no answer came (counted as an error by the exception's name)."""
        headers = {"Authorization": f"Token {token}"} if token else {}
        started = time.monotonic()
        try:
            response = await self.http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            self.stats.failures[type(exc).__name__] += 1
            if self.recorder:
                self.recorder.write(method, path, None, time.monotonic() - started, error=type(exc).__name__)
            return None
        self.stats.statuses[response.status_code] += 1
        if self.recorder:
            data = response.json() if response.status_code == 201 else None
            self.recorder.write(method, path, response.status_code, time.monotonic() - started, data)
        return response

    async def patiently(
        self, method: str, path: str, *, token: str = "", body: dict | None = None, tries: int = 30
    ) -> httpx.Response | None:
        """Like `call`, but waits out a 429's Retry-After (signing in a city from one address hits the auth limit)."""
        response = None
        for _ in range(tries):
            response = await self.call(method, path, token=token, body=body)
            if response is None or response.status_code != 429:
                return response
            await asyncio.sleep(retry_after(response))
        return response


def retry_after(response: httpx.Response, default: float = 1.0) -> float:
    try:
        return max(0.1, float(response.headers.get("Retry-After", default)))
    except ValueError:
        return default


async def check_ready(http: httpx.AsyncClient) -> None:
    """Fail fast with a clear reason when there is no ridehail to talk to."""
    try:
        response = await http.get("/readyz")
    except httpx.HTTPError as exc:
        raise Unreachable(
            f"cannot reach {http.base_url} ({type(exc).__name__}: {exc}); is `make run` running?"
        ) from None
    if response.status_code != 200:
        raise Unreachable(f"{http.base_url}readyz answered {response.status_code}: {response.text[:200]}")
