"""docker-compose.yml as an operator relies on it: what runs, in which order, what survives a restart."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.processes import ROOT
from tests.servers import manage_py

COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = ["web", "ws", "rides", "locations"]
# Every service of docker-compose.yml but Jaeger (under the tracing profile): what both files share.
SERVICES = {"router", "migrate", *APP_SERVICES, "postgres", "redis", "prometheus", "grafana"}


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_the_router_is_the_one_way_in_on_a_configurable_port(services):
    """HTTP to gunicorn (web), /ws/ to uvicorn (ws), nginx in front on the one published port."""
    router = services["router"]
    assert router["image"].startswith("nginx:")
    assert router["ports"] == ["${RIDEHAIL_BIND:-127.0.0.1}:${RIDEHAIL_PORT:-8000}:8000"]
    template = "./deploy/nginx/ridehail.conf.template:/etc/nginx/templates/default.conf.template:ro"
    assert router["volumes"] == [template]
    environment = router["environment"]
    assert (environment["RIDEHAIL_HTTP_UPSTREAM"], environment["RIDEHAIL_WS_UPSTREAM"]) == ("web:8000", "ws:8000")
    assert environment["RIDEHAIL_LISTEN"] == "8000" and environment["NGINX_ENVSUBST_FILTER"] == "^RIDEHAIL_"
    assert router["depends_on"] == {name: {"condition": "service_healthy"} for name in ("web", "ws")}
    assert services["web"]["command"] == ["scripts/serve", "http"]
    assert services["ws"]["command"] == ["scripts/serve"]
    for name in ("web", "ws"):
        assert "ports" not in services[name], name  # reachable through the router only
        assert "/readyz" in " ".join(services[name]["healthcheck"]["test"]), name
        # Behind exactly one proxy: the address the router appended is the client's.
        assert services[name]["environment"]["RIDEHAIL_TRUSTED_PROXIES"] == "${RIDEHAIL_TRUSTED_PROXIES:-1}"


def test_migrations_run_once_before_web_and_workers_which_wait_on_the_database_and_redis_only(services):
    assert "migrate --noinput" in " ".join(services["migrate"]["command"])
    assert services["migrate"]["restart"] == "no"
    for name in APP_SERVICES:
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name
    assert services["rides"]["command"] == ["python", "manage.py", "run_subscriber", "rides"]
    assert services["locations"]["command"] == ["python", "manage.py", "run_subscriber", "locations"]


@pytest.mark.django_db(transaction=True)
def test_each_worker_is_healthy_exactly_while_it_runs(services, start_worker, redis_client):
    """The workers' healthcheck, run as compose runs it (in the worker's container: the same host)."""
    start_worker("locations")
    for name, running in [("locations", True), ("rides", False)]:
        test = services[name]["healthcheck"]["test"]
        assert test == ["CMD", "python", "manage.py", "events", "alive", name]
        check = manage_py(*test[3:]).start()
        assert (check.wait_exit(timeout=30) == 0) is running, check.output
        check.stop()


def test_postgres_and_redis_restart_keep_their_data_and_report_health(services):
    for name, data in [("postgres", "/var/lib/postgresql/data"), ("redis", "/data")]:
        assert services[name]["restart"] == "unless-stopped"
        assert any(volume.endswith(f":{data}") for volume in services[name]["volumes"]), name
        assert services[name]["healthcheck"]["test"]
    assert "--appendonly" in services["redis"]["command"]


def test_prometheus_scrapes_metrics_with_the_bearer_token(services):
    prometheus = services["prometheus"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["metrics_path"] == "/metrics"
    assert scrape["static_configs"][0]["targets"] == ["web:8000"]
    assert scrape["authorization"]["type"] == "Bearer"
    assert scrape["authorization"]["credentials_file"] in prometheus["entrypoint"][-1]
    # The same token on both sides, and web accepts the Host Prometheus sends.
    app_environment = services["web"]["environment"]
    assert prometheus["environment"]["RIDEHAIL_METRICS_TOKEN"] == app_environment["RIDEHAIL_METRICS_TOKEN"]
    assert "web" in app_environment["DJANGO_ALLOWED_HOSTS"].split(",")


def test_the_image_leaves_caches_and_local_state_out():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    for entry in [
        ".venv",
        ".git",
        "**/__pycache__",
        ".pytest_cache",
        ".ruff_cache",
        "*.sqlite3",
        "node_modules",
        "chaos-runs",  # make chaos's reports
        ".run",  # make run's local state (the embedded Redis's data)
    ]:
        assert entry in ignored, entry


def compose_tool() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


@pytest.mark.skipif(compose_tool() is None, reason="neither docker-compose nor docker compose is installed")
def test_compose_itself_accepts_the_file():
    checked = subprocess.run(
        [*compose_tool(), "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr


def published(port: str | dict) -> str:
    """docker-compose 1.x prints "ip:host:container/proto"; `docker compose` v2 the long form."""
    if isinstance(port, dict):
        return f"{port['host_ip']}:{port['published']}:{port['target']}/{port['protocol']}"
    return port


@pytest.mark.skipif(compose_tool() is None, reason="neither docker-compose nor docker compose is installed")
def test_compose_resolves_the_defaults_to_loopback_ports_and_a_bounded_pool():
    """What compose itself makes of the file with nothing set in the environment."""
    overridable = ("RIDEHAIL_", "WEB_CONCURRENCY", "DATABASE_POOL_SIZE", "DJANGO_SUPERUSER_")
    environment = {name: value for name, value in os.environ.items() if not name.startswith(overridable)}
    checked = subprocess.run(
        [*compose_tool(), "-f", str(COMPOSE), "--project-directory", str(ROOT), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
    )
    assert checked.returncode == 0, checked.stderr
    resolved = yaml.safe_load(checked.stdout)["services"]
    ports = [published(port) for service in resolved.values() for port in service.get("ports", [])]
    # Jaeger's UI is in the file under the `tracing` profile (docker-compose v1's `config` lists it too).
    assert set(ports) <= {
        "127.0.0.1:8000:8000/tcp",
        "127.0.0.1:9090:9090/tcp",
        "127.0.0.1:3000:3000/tcp",
        "127.0.0.1:16686:16686/tcp",
    }
    assert {"127.0.0.1:8000:8000/tcp", "127.0.0.1:9090:9090/tcp", "127.0.0.1:3000:3000/tcp"} <= set(ports)
    web, ws = resolved["web"]["environment"], resolved["ws"]["environment"]
    assert (web["WEB_CONCURRENCY"], web["DATABASE_POOL_SIZE"]) == ("4", "2")
    assert (ws["WEB_CONCURRENCY"], ws["DATABASE_POOL_SIZE"]) == ("2", "10")
    assert web["RIDEHAIL_TRUSTED_PROXIES"] == ws["RIDEHAIL_TRUSTED_PROXIES"] == "1"
    assert resolved["migrate"]["environment"]["DJANGO_SUPERUSER_PASSWORD"] == ""


def test_no_known_password_ships_and_the_first_operator_comes_from_the_environment(services):
    """Demo accounts are `make run`'s: under compose, a known superuser password is a hole."""
    assert "demo-pass" not in COMPOSE.read_text()
    command = " ".join(services["migrate"]["command"])
    assert "create_demo_accounts" not in command
    assert "createsuperuser --noinput" in command
    # Only when both are set, and an existing account is not an error on the next `up`.
    assert '[ -n "$$DJANGO_SUPERUSER_USERNAME" ] && [ -n "$$DJANGO_SUPERUSER_PASSWORD" ]' in command
    assert "already taken" in command
    environment = services["migrate"]["environment"]
    for name in ("USERNAME", "PASSWORD", "EMAIL"):
        assert environment[f"DJANGO_SUPERUSER_{name}"] == f"${{DJANGO_SUPERUSER_{name}:-}}", name
    for name in APP_SERVICES:  # the password stays in the one-shot container
        assert "DJANGO_SUPERUSER_PASSWORD" not in services[name]["environment"], name


def test_every_published_port_binds_to_loopback_unless_the_operator_says_otherwise(services):
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published, "nothing published"
    for port in published:
        assert port.startswith("${RIDEHAIL_BIND:-127.0.0.1}:"), port


def test_web_processes_times_pool_size_stay_under_postgres_max_connections(services):
    """WEB_CONCURRENCY defaults to the host's cores: unbounded, 64 cores x 20 would be 1,280."""
    default = lambda value: int(re.fullmatch(r"(?:\$\{\w+:-)?(\d+)\}?", value)[1])  # noqa: E731

    def connections(name: str) -> int:
        environment = services[name]["environment"]
        processes = default(environment["WEB_CONCURRENCY"]) if name in ("web", "ws") else 1
        return processes * default(environment["DATABASE_POOL_SIZE"])

    max_connections = int(re.search(r"max_connections=(\d+)", " ".join(services["postgres"]["command"]))[1])
    reserved = 3  # superuser_reserved_connections
    # migrate holds a pool too, but exits before web and the workers start. The compose comment's sum:
    assert [connections(name) for name in APP_SERVICES] == [4 * 2, 2 * 10, 10, 10]
    assert sum(connections(name) for name in APP_SERVICES) < max_connections - reserved


def test_the_file_names_every_service_the_readme_promises():
    assert set(yaml.safe_load(Path(COMPOSE).read_text())["services"]) == SERVICES | {"jaeger"}


# -- the cluster variant: docker compose -f docker-compose.yml -f docker-compose.cluster.yml -----------

CLUSTER_COMPOSE = ROOT / "docker-compose.cluster.yml"
CLUSTER_NODES = [f"redis-node-{n}" for n in range(1, 7)]


@pytest.fixture(scope="module")
def cluster_services() -> dict:
    return yaml.safe_load(CLUSTER_COMPOSE.read_text())["services"]


def test_the_cluster_has_six_persistent_nodes_on_fixed_addresses(cluster_services):
    addresses = []
    for name in CLUSTER_NODES:
        node = cluster_services[name]
        command = " ".join(node["command"])
        for flag in ("--cluster-enabled yes", "--cluster-node-timeout 2000", "--appendonly yes"):
            assert flag in command, (name, flag)
        # nodes.conf (who is in the cluster, at which address) lives with the data, in the node's own volume
        assert "--cluster-config-file /data/nodes.conf" in command
        assert node["volumes"] == [f"{name}:/data"]
        assert node["restart"] == "unless-stopped" and node["healthcheck"]["test"]
        network = node["networks"]["redis-cluster"]
        assert network["aliases"] == ["redis-cluster"]  # REDIS_URL's host: any live node answers
        addresses.append(network["ipv4_address"])
    assert len(set(addresses)) == 6


def test_the_cluster_is_created_once_by_a_one_shot_service_after_every_node_is_healthy(cluster_services):
    create = cluster_services["redis-cluster-create"]
    assert create["restart"] == "no"
    assert create["depends_on"] == {name: {"condition": "service_healthy"} for name in CLUSTER_NODES}
    addresses = [cluster_services[name]["networks"]["redis-cluster"]["ipv4_address"] for name in CLUSTER_NODES]
    assert create["environment"]["NODES"].split() == [f"{address}:6379" for address in addresses]
    script = create["command"][-1]
    assert "redis-cli --cluster create $$NODES --cluster-replicas 1 --cluster-yes" in script
    assert '[ "$$fresh" = 6 ]' in script  # only over six fresh nodes: a second `up` creates nothing
    assert "cluster_state:ok" in script and "exit 1" in script  # done only once the cluster is ok


def test_web_and_workers_run_on_the_cluster_with_the_channel_layer_beside_it(cluster_services):
    for name in ["migrate", *APP_SERVICES]:
        service = cluster_services[name]
        assert service["environment"]["REDIS_CLUSTER"] == "1", name
        assert service["environment"]["REDIS_URL"] == "redis://redis-cluster:6379/0", name
        assert service["environment"]["RIDEHAIL_CHANNEL_LAYER_URL"] == "redis://redis:6379/0", name
        assert service["depends_on"] == {"redis-cluster-create": {"condition": "service_completed_successfully"}}
        assert service["networks"] == ["default", "redis-cluster"], name


@pytest.mark.skipif(compose_tool() is None, reason="neither docker-compose nor docker compose is installed")
def test_compose_merges_the_cluster_variant_so_nothing_starts_before_the_cluster_is_ok():
    checked = subprocess.run(
        [*compose_tool(), "-f", str(COMPOSE), "-f", str(CLUSTER_COMPOSE), "--project-directory", str(ROOT), "config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    resolved = yaml.safe_load(checked.stdout)["services"]
    assert set(resolved) == SERVICES | {"redis-cluster-create", *CLUSTER_NODES} | ({"jaeger"} & set(resolved))
    for name in ["migrate", *APP_SERVICES]:
        depends_on = resolved[name]["depends_on"]
        assert depends_on["redis-cluster-create"] == {"condition": "service_completed_successfully"}, name
        assert depends_on["postgres"] == depends_on["redis"] == {"condition": "service_healthy"}, name
        environment = resolved[name]["environment"]
        # What the base file sets stays (the database, the secret key), the Redis settings are the cluster's.
        assert environment["DATABASE_URL"].startswith("postgres://"), name
        assert (environment["REDIS_CLUSTER"], environment["REDIS_URL"]) == ("1", "redis://redis-cluster:6379/0")
    # Only the router, Prometheus and Grafana are published, on loopback: no Redis node is reachable from outside.
    published_by = {name for name, service in resolved.items() if service.get("ports")}
    assert published_by - {"jaeger"} == {"grafana", "prometheus", "router"}
