"""/healthz and /readyz, including a readiness probe that names the dependency that failed."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/healthz", "/healthz/"])
def test_healthz_answers_without_credentials(client, path):
    response = client.get(path)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_is_ok_when_database_and_redis_answer(client, redis_client):
    response = client.get("/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_names_redis_when_it_is_down(client, redis_unreachable):
    response = client.get("/readyz/")

    assert response.status_code == 503
    assert list(response.json()["failed"]) == ["redis"]


# -- on a cluster deployment (REDIS_CLUSTER=1; the channel layer on a standalone Redis beside it) --


def test_readyz_is_ok_on_a_cluster(client, on_cluster):
    response = client.get("/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_names_redis_when_the_cluster_is_unreachable(client, cluster_unreachable):
    response = client.get("/readyz")

    assert response.status_code == 503
    assert list(response.json()["failed"]) == ["redis"]
    assert "Redis Cluster cannot be connected" in response.json()["failed"]["redis"]


def test_readyz_names_the_channel_layer_when_only_its_redis_is_down_and_stays_ready(client, on_cluster, settings):
    # Requests are all still served; only dashboards are refused (a sign-out could not reach
    # them): the process stays in the load balancer and says what is missing.
    settings.RIDEHAIL_CHANNEL_LAYER_URL = "redis://127.0.0.1:1/0"

    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert list(response.json()["degraded"]) == ["channel_layer"]


def test_worker_sets_are_staff_only(client, rider_client, driver_client, staff_client, redis_client):
    for path in ("/api/rides/matching-pool", "/api/locations/tracking/"):
        assert client.get(path).status_code == 401
        assert rider_client.get(path).status_code == 403
        assert driver_client.get(path).status_code == 403
        assert staff_client.get(path).json() == {"drivers": []}


@pytest.mark.parametrize("unreachable", ["redis_unreachable", "cluster_unreachable"])
def test_worker_sets_answer_503_when_redis_is_down(staff_client, request, unreachable):
    request.getfixturevalue(unreachable)  # on a cluster, redis-py's own exception once answered 500
    response = staff_client.get("/api/rides/matching-pool")
    assert response.status_code == 503
