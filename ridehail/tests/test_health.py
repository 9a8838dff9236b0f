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


def test_worker_sets_are_staff_only(client, rider_client, driver_client, staff_client, redis_client):
    for path in ("/api/rides/matching-pool", "/api/locations/tracking/"):
        assert client.get(path).status_code == 401
        assert rider_client.get(path).status_code == 403
        assert driver_client.get(path).status_code == 403
        assert staff_client.get(path).json() == {"drivers": []}


def test_worker_sets_answer_503_when_redis_is_down(staff_client, redis_unreachable):
    response = staff_client.get("/api/rides/matching-pool")
    assert response.status_code == 503
