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
APP_SERVICES = ["web", "rides", "locations"]


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_web_runs_the_production_command_published_on_a_configurable_port(services):
    web = services["web"]
    assert web["command"] == ["scripts/serve"]
    assert web["ports"] == ["${RIDEHAIL_BIND:-127.0.0.1}:${RIDEHAIL_PORT:-8000}:8000"]
    assert "/readyz" in " ".join(web["healthcheck"]["test"])


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
    assert sorted(ports) == ["127.0.0.1:8000:8000/tcp", "127.0.0.1:9090:9090/tcp"]
    web = resolved["web"]["environment"]
    assert (web["WEB_CONCURRENCY"], web["DATABASE_POOL_SIZE"]) == ("4", "10")
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
    environment = services["web"]["environment"]
    default = lambda value: int(re.fullmatch(r"\$\{\w+:-(\d+)\}", value)[1])  # noqa: E731
    processes, pool = default(environment["WEB_CONCURRENCY"]), default(environment["DATABASE_POOL_SIZE"])
    workers = [name for name in APP_SERVICES if name != "web"]
    max_connections = int(re.search(r"max_connections=(\d+)", " ".join(services["postgres"]["command"]))[1])
    reserved = 3  # superuser_reserved_connections
    # migrate holds a pool too, but exits before web and the workers start.
    assert processes * pool + len(workers) * pool < max_connections - reserved


def test_the_file_names_every_service_the_readme_promises():
    assert set(yaml.safe_load(Path(COMPOSE).read_text())["services"]) == {
        "migrate",
        *APP_SERVICES,
        "postgres",
        "redis",
        "prometheus",
    }
