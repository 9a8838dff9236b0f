"""The OpenAPI schema, and schemathesis throwing generated requests at the live server:
zero 5xx, every response conforming to the schema, auth headers valid and invalid."""

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import token_of
from tests.servers import AsgiServer

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "ignored_auth",
        "unsupported_method",
    ]
)


def test_schema_and_docs_are_served(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/users/driver-status/", "/api/auth/login/", "/api/rides/matching-pool/"} <= set(paths)
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
    assert b"cdn.jsdelivr.net" not in docs.content  # served from our own static files


@pytest.fixture
def server(redis_client) -> Iterator[AsgiServer]:
    web = AsgiServer().start()
    yield web
    web.stop()


def schemathesis(server: AsgiServer, token: str, *options: str) -> subprocess.CompletedProcess:
    # From a temporary folder: schemathesis keeps a cache of its findings in the working directory.
    command = [
        SCHEMATHESIS,
        "run",
        f"{server.url}/api/schema/",
        "-H",
        f"Authorization: Token {token}",
        "--checks",
        CHECKS,
        "--max-examples",
        "15",
        "--request-timeout",
        "10",
        *options,
    ]
    with tempfile.TemporaryDirectory(prefix="ridehail-schemathesis-") as workdir:
        return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=workdir)


@pytest.mark.parametrize("persona", ["driver", "staff"])
def test_generated_requests_get_no_5xx_and_conform_to_the_schema(server, persona, request):
    token = token_of(request.getfixturevalue(persona))

    # Logout would revoke the token the rest of the run uses: it has a run of its own below.
    result = schemathesis(server, token, "--exclude-path-regex", "logout")

    assert result.returncode == 0, result.stdout[-6000:]
    assert " passed" in result.stdout


def test_generated_logout_requests_conform(server, driver):
    token = token_of(driver)
    result = schemathesis(server, token, "--include-path-regex", "logout")
    assert result.returncode == 0, result.stdout[-6000:]
