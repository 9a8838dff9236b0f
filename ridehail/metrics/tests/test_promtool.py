"""`/metrics` as Prometheus' own checker reads it: `promtool check metrics` finds nothing to say."""

import shutil
import subprocess

import pytest
from django.test import Client

from users.services import set_driver_availability

pytestmark = pytest.mark.django_db(transaction=True)

PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed: run scripts/ensure-promtool (as root)")
def test_metrics_pass_promtool_check(settings, redis_client, driver):
    settings.RIDEHAIL_METRICS_TOKEN = "promtool-scraper-token"
    set_driver_availability(driver_id=driver.id, available=True)  # a published event: every series has samples
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer promtool-scraper-token")
    assert response.status_code == 200, response.content
    checked = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=response.content, capture_output=True, timeout=30, check=False
    )
    report = (checked.stdout + checked.stderr).decode()
    assert checked.returncode == 0 and not report.strip(), report
