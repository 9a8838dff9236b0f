"""Shared fixtures: personas, API clients, real Redis and a listener on the event channel."""

from collections.abc import Callable, Iterator

import pytest
import redis
from django.db import connections
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from ridehail.events.connection import quick_redis, shared_redis
from ridehail.web import throttling
from tests.channels import ChannelListener
from tests.cluster import LocalCluster
from tests.processes import ManagedProcess, RedisServer
from tests.servers import AsgiServer, manage_py
from users.events import DRIVER_STATUS
from users.models import Role, User

CHANNEL = DRIVER_STATUS.channel
DEAD_LETTER_STREAM = DRIVER_STATUS.dead_letters
STREAM = DRIVER_STATUS.stream

PASSWORD = "correct-horse-battery-staple"
LISTENING = f"listening on {CHANNEL}"
READING = f"reading {STREAM} as"


@pytest.fixture(autouse=True)
def _fresh_throttles() -> None:
    """Rate-limit counters and socket leases outlast a test in Redis: every test starts with none."""
    throttling.reset()
    client = shared_redis()
    try:
        patterns = ("ridehail:throttle:*", "ridehail:dashboard-sockets:*")
        keys = [key for pattern in patterns for key in client.scan_iter(pattern)]
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass  # a test that stops Redis itself; nothing was counted then either


def project_keys(client: redis.Redis) -> list[bytes]:
    """Every key ridehail writes: topics' streams and dead letters, publish markers, workers' state and heartbeats."""
    patterns = ["stream:*", "rides:*", "locations:*", "ridehail:worker*"]
    return [key for pattern in patterns for key in client.scan_iter(pattern, count=1000)]


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """The real Redis named by REDIS_URL, with ridehail's keys cleared around each test."""
    client = shared_redis()
    if keys := project_keys(client):
        client.delete(*keys)
    yield client
    if keys := project_keys(client):
        client.delete(*keys)


@pytest.fixture
def own_redis(settings) -> Iterator[RedisServer]:
    """A Redis of this test's own, so it can be stopped and restarted; this process publishes to it too."""
    server = RedisServer().start()
    settings.REDIS_URL = server.url
    shared_redis.cache_clear()
    yield server
    server.stop()
    shared_redis.cache_clear()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A local Redis Cluster (3 masters + 3 replicas) shared by the session's cluster tests."""
    cluster = LocalCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def on_cluster(settings, redis_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """This process and the children a test starts use the cluster (REDIS_CLUSTER=1), emptied first.

    The channel layer stays on the test's standalone Redis, as a cluster deployment runs it.
    """
    settings.REDIS_CLUSTER = True
    settings.RIDEHAIL_CHANNEL_LAYER_URL = settings.REDIS_URL
    settings.REDIS_URL = redis_cluster.url
    shared_redis.cache_clear()
    redis_cluster.client().flushall(target_nodes="primaries")
    yield redis_cluster
    shared_redis.cache_clear()


@pytest.fixture(params=["redis", "cluster"])
def redis_deployment(request: pytest.FixtureRequest) -> str:
    """The test runs twice: on the single test Redis, then on a Redis Cluster (`on_cluster`)."""
    if request.param == "cluster":
        request.getfixturevalue("on_cluster")
    return request.param


@pytest.fixture
def redis_unreachable(settings) -> Iterator[None]:
    """This process's Redis (the URL and the clients built from it) points where nothing listens (port 1)."""
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    shared_redis.cache_clear()
    yield
    shared_redis.cache_clear()


@pytest.fixture
def cluster_unreachable(settings, redis_unreachable) -> Iterator[None]:
    """`redis_unreachable` on a cluster deployment (REDIS_CLUSTER=1): no node answers; the channel
    layer's own Redis (the test Redis) still does."""
    settings.REDIS_CLUSTER = True
    quick_redis.cache_clear()  # its clients are cached by URL, and this URL was a single Redis's
    yield
    quick_redis.cache_clear()


@pytest.fixture
def listener(redis_client: redis.Redis) -> Iterator[ChannelListener]:
    channel_listener = ChannelListener(redis_client)
    yield channel_listener
    channel_listener.close()


def make_user(username: str, *, role: str = Role.RIDER, is_staff: bool = False) -> User:
    user = User(username=username, role=role, is_staff=is_staff)
    user.set_password(PASSWORD)
    user.save()
    return user


def make_drivers(count: int, *, prefix: str = "driver") -> list[User]:
    # No passwords: hashing one takes a noticeable fraction of a second, and these never sign in.
    return User.objects.bulk_create(
        [User(username=f"{prefix}-{n:03d}", role=Role.DRIVER, password="!") for n in range(count)]
    )


def online_in_database() -> list[str]:
    """Ids of the drivers the database says are online, sorted: what every worker's set must equal."""
    return sorted(
        str(pk) for pk in User.objects.filter(role=Role.DRIVER, is_available=True).values_list("id", flat=True)
    )


@pytest.fixture
def driver(db) -> User:
    return make_user("driver", role=Role.DRIVER)


@pytest.fixture
def other_driver(db) -> User:
    return make_user("other-driver", role=Role.DRIVER)


@pytest.fixture
def rider(db) -> User:
    return make_user("rider", role=Role.RIDER)


@pytest.fixture
def staff(db) -> User:
    return make_user("operator", role=Role.RIDER, is_staff=True)


def token_of(user: User) -> str:
    """The user's API token key (made on first use), for requests sent by other clients than APIClient."""
    token, _ = Token.objects.get_or_create(user=user)
    return token.key


def client_for(user: User | None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {token_of(user)}")
    return client


@pytest.fixture(scope="module")
def asgi_server(django_db_setup, django_db_blocker) -> Iterator[AsgiServer]:
    """The production ASGI server (uvicorn) on the test database, shared by a module's tests."""
    with django_db_blocker.unblock():
        web = AsgiServer().start()
    yield web
    web.stop()


@pytest.fixture
def anonymous_client() -> APIClient:
    return APIClient()


@pytest.fixture
def driver_client(driver: User) -> APIClient:
    return client_for(driver)


@pytest.fixture
def rider_client(rider: User) -> APIClient:
    return client_for(rider)


@pytest.fixture
def staff_client(staff: User) -> APIClient:
    return client_for(staff)


@pytest.fixture
def start_worker() -> Iterator[Callable[..., ManagedProcess]]:
    """Start `run_subscriber` processes on this test's database and Redis; wait until they listen."""
    started: list[ManagedProcess] = []

    def start(name: str, *options: str, env: dict[str, str] | None = None, ready: str | None = None) -> ManagedProcess:
        worker = manage_py("run_subscriber", name, *options, env=env).start()
        started.append(worker)
        worker.wait_for_output(ready or (READING if "stream" in options else LISTENING))
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Close PostgreSQL's connection pool before the test database is dropped (it holds connections open)."""
    yield
    with django_db_blocker.unblock():
        for connection in connections.all():
            if getattr(connection, "pool", None) is not None:
                connection.close_pool()
