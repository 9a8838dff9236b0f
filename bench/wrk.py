"""wrk (C, keep-alive, a Lua script) as the load generator for HTTP benchmarks: a Python load
generator on the same two cores would cost more CPU than the servers it measures."""

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

# Each request takes the next token of the file given as the script's argument; the threads
# start at different places so 64 connections spread over every driver.
_SCRIPT = """
local tokens, n = {}, 0
init = function(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  n = math.random(#tokens)
end
request = function()
  n = n % #tokens + 1
  wrk.headers["Authorization"] = "Token " .. tokens[n]
  return wrk.format(nil, nil, nil, nil)
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    requests: int


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (make bench does it when it can)")
    return path


def run_wrk(
    url: str, *, seconds: float, connections: int, method: str, body: str, tokens: list[str], threads: int = 2
) -> WrkResult:
    with tempfile.TemporaryDirectory(prefix="ridehail-wrk-") as folder:
        script, token_file = os.path.join(folder, "tokens.lua"), os.path.join(folder, "tokens.txt")
        setup = f'wrk.method = "{method}"\nwrk.body = [[{body}]]\nwrk.headers["Content-Type"] = "application/json"\n'
        with open(script, "w") as out:
            out.write(setup + _SCRIPT)
        with open(token_file, "w") as out:
            out.write("\n".join(tokens) + "\n")
        command = [require_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", script, url]
        output = subprocess.run([*command, "--", token_file], capture_output=True, text=True, check=True).stdout
    return WrkResult(
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1]),
        p50_ms=_milliseconds(re.search(r"50%\s+([\d.]+\w+)", output)[1]),
        p99_ms=_milliseconds(re.search(r"99%\s+([\d.]+\w+)", output)[1]),
        non_2xx=int(m[1]) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", output)) else 0,
        requests=int(re.search(r"(\d+) requests in", output)[1]),
    )


def _milliseconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]
