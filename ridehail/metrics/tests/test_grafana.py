"""The Grafana dashboard in deploy/ asks only for series /metrics really exposes, with their labels,
shows every one of them, and is provisioned by docker-compose.yml as it says."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from ridehail.events import metrics as event_metrics
from rides.events import RIDE_STATUS, Point
from rides.services import Trip, request_ride
from users.events import DRIVER_STATUS
from users.services import set_driver_availability

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[3]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "ridehail.json"
SERIES = re.compile(r"\bridehail_[a-z_]+\b")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
COMPOSE = shutil.which("docker-compose")


def queries() -> list[dict]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [{**target, "panel": panel["title"]} for panel in panels for target in panel.get("targets", [])]


@pytest.fixture
def exposed(settings, redis_client, driver, rider) -> dict[str, set[str]]:
    """Every sample name /metrics gives, with the label names it carries, with something in every series."""
    settings.RIDEHAIL_METRICS_TOKEN = "grafana-test-token"
    set_driver_availability(driver_id=driver.id, available=True)  # published: a stream and its counter
    request_ride(rider_id=rider.id, trip=Trip(pickup=Point(lat=52.5, lng=13.4), dropoff=Point(lat=52.4, lng=13.3)))
    for topic in (DRIVER_STATUS, RIDE_STATUS):
        redis_client.xgroup_create(topic.stream, "rides", id="0", mkstream=True)  # a group: lag, pending, consumers
    event_metrics.count_handled(redis_client, worker="rides", topic=RIDE_STATUS.name, count=1)
    event_metrics.count_handled(redis_client, worker="rides", topic=RIDE_STATUS.name, count=1, failed=True)
    Client().get("/healthz")  # an HTTP latency sample (/metrics flushes its own process's first)
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer grafana-test-token")
    assert response.status_code == 200
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        assert family.samples, f"{family.name} has no sample: the test cannot check its labels"
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def test_every_query_names_series_and_labels_that_metrics_exposes(exposed):
    checked = 0
    for query in queries():
        expr, where = query["expr"], f"{query['panel']!r}: {query['expr']}"
        names = SERIES.findall(expr)
        assert names, f"{where} names no ridehail series"
        for name in names:
            assert name in exposed, f"{where}: /metrics has no {name} (it has {sorted(exposed)})"
        labels = set().union(*(exposed[name] for name in names))
        grouped = {label.strip() for match in GROUPING.findall(expr) for label in match.split(",") if label.strip()}
        assert grouped <= labels, f"{where}: no label {grouped - labels} on {names}"
        shown = set(LEGEND.findall(query.get("legendFormat", "")))
        assert shown <= (grouped or labels), f"{where}: the legend shows {shown - (grouped or labels)}, not kept"
        checked += 1
    assert checked >= 15


def test_every_series_metrics_exposes_has_a_panel(exposed):
    asked = {name for query in queries() for name in SERIES.findall(query["expr"])}
    families = {re.sub(r"_(total|bucket|count|sum|created)$", "", name) for name in exposed}
    missing = {family for family in families if not any(name.startswith(family) for name in asked)}
    assert not missing, f"series without a panel: {sorted(missing)}"


def test_compose_provisions_the_datasource_and_the_dashboard():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in grafana["volumes"] if volume.startswith("./")}
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./deploy/grafana/dashboards"] == "/var/lib/grafana/dashboards"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "ridehail.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    (source,) = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    uids = {query["datasource"]["uid"] for query in queries()}
    assert uids == {source["uid"]}


@pytest.mark.skipif(COMPOSE is None, reason="docker-compose is not installed (apt-get install docker-compose)")
@pytest.mark.parametrize("profile", [[], ["--profile", "tracing"]])
def test_docker_compose_reads_the_compose_file(profile):
    assert COMPOSE is not None
    checked = subprocess.run(
        [COMPOSE, *profile, "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stderr
