"""A throwaway Redis Cluster on free ports: 3 masters + 3 replicas, a few seconds to start.

The tests that prove ridehail runs on a cluster (and survives a master's death) start one
through the `redis_cluster` fixture (conftest.py); `python -m tests.cluster` starts one by hand
and prints its URL, for `REDIS_CLUSTER=1 REDIS_URL=... make run`.
"""

import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from redis.cluster import RedisCluster

from ridehail.redis_server import LocalRedis, redis_server_binary
from tests.processes import wait_until

MASTERS = 3
NODE_TIMEOUT_MS = 2000  # how long a master may be silent before its replica takes over


class LocalCluster:
    """Six cluster-enabled servers joined by `redis-cli --cluster create ... --cluster-replicas 1`."""

    def __init__(self, masters: int = MASTERS) -> None:
        binary = redis_server_binary()
        cli = shutil.which("redis-cli")
        if binary is None or cli is None:
            raise RuntimeError("a local Redis Cluster needs redis-server and redis-cli on the PATH")
        self.cli = cli
        self.directory = Path(tempfile.mkdtemp(prefix="ridehail-cluster-"))
        self.nodes: list[LocalRedis] = []
        for _ in range(masters * 2):
            port = cluster_port()
            node_dir = self.directory / str(port)
            node_dir.mkdir()
            args = (
                *("--cluster-enabled", "yes"),
                *("--cluster-config-file", str(node_dir / "nodes.conf")),
                *("--cluster-node-timeout", str(NODE_TIMEOUT_MS)),
                *("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"),
                *("--dir", str(node_dir)),
            )
            self.nodes.append(LocalRedis(binary, port=port, extra_args=args))

    @property
    def url(self) -> str:
        """Any node names the cluster (REDIS_URL with REDIS_CLUSTER=1); the first one, here."""
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> "LocalCluster":
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            subprocess.run(
                [self.cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            wait_until(self.healthy, timeout=30, what="the cluster to be ok with every replica in sync")
        except BaseException:
            self.stop()
            raise
        return self

    def client(self) -> RedisCluster:
        return RedisCluster.from_url(self.url)

    def healthy(self) -> bool:
        """Every slot served, every master with a replica whose link is up."""
        try:
            for node in self.live_nodes():
                client = redis.Redis(port=node.port, socket_timeout=1)
                if client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                    return False
                replication = client.info("replication")
                if replication["role"] == "master" and replication.get("connected_slaves", 0) < 1:
                    return False
                if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                    return False
            return True
        except (redis.RedisError, OSError):
            return False

    def live_nodes(self) -> list[LocalRedis]:
        return [node for node in self.nodes if node.process is not None and node.process.poll() is None]

    def master_of(self, key: str) -> LocalRedis:
        """The node that serves `key`'s slot now (a hash tag in braces counts, as in Redis)."""
        slot = redis.Redis(port=self.live_nodes()[0].port).cluster("keyslot", key)
        for node in self.live_nodes():
            for start, end, master, *_ in redis.Redis(port=node.port).execute_command("CLUSTER SLOTS"):
                if start <= slot <= end:
                    port = master[1]
                    return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"no node serves slot {slot}")

    def kill(self, node: LocalRedis) -> None:
        """SIGKILL: the node dies without a word, as a crashed machine would."""
        assert node.process is not None
        node.process.kill()
        node.process.wait(timeout=5)

    def restart(self, node: LocalRedis, *, timeout: float = 30.0) -> None:
        """Start a killed node again and wait until the cluster is whole: it rejoins, from its
        nodes.conf, as a replica of the master that took over its slots. A test that kills a node
        ends with this, so the session's next cluster test finds every master with a replica."""
        node.start()
        wait_until(self.healthy, timeout=timeout, what=f"port {node.port} to rejoin the cluster")

    def wait_for_failover(self, dead: LocalRedis, *, timeout: float = 30.0) -> None:
        """Until another node serves every slot the dead one did (a replica was promoted)."""

        def taken_over() -> bool:
            try:
                survivor = redis.Redis(port=self.live_nodes()[0].port, socket_timeout=1)
                if survivor.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                    return False
                return all(master[1] != dead.port for *_, master in _slot_masters(survivor))
            except (redis.RedisError, OSError):
                return False

        wait_until(taken_over, timeout=timeout, interval=0.1, what=f"a replica to take over from port {dead.port}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too: both must be below 65536."""
    while True:
        port = random.randint(20000, 45000)
        try:
            with socket.socket() as first, socket.socket() as bus:
                first.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10000))
            return port
        except OSError:
            continue


def _slot_masters(client: redis.Redis) -> list[tuple[int, int, list]]:
    return [(start, end, master) for start, end, master, *_ in client.execute_command("CLUSTER SLOTS")]


if __name__ == "__main__":
    cluster = LocalCluster().start()
    print(f"REDIS_CLUSTER=1 REDIS_URL={cluster.url}  (Ctrl-C stops it; data in {cluster.directory})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        cluster.stop()
