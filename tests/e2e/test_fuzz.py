"""Schema-driven fuzzing of the live OpenAPI document (schemathesis) against a real server.

Every operation of /openapi.json gets data that fits its schema (positive) and data that does
not (negative). Management calls sign in as the first-start admin; calls authenticated by a token
get a fresh valid token each; the forward-auth check gets either a valid token or whatever the
fuzzer wrote into its documented Authorization header; a `{token_id}` is either fuzzed or a real
token's id. The fuzz runs once per backend (a module fixture); one test asks that no answer was a
5xx, the other that every 2xx answer to valid data matched what the document promises.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from tests.conftest import BACKENDS
from tests.e2e.server import Server
from tests.support import fresh_database

MAX_EXAMPLES = 30  # per operation and mode: about 1000 requests, well under a minute per backend
TOKEN_AUTHENTICATED = {"/api/v1/user", "/api/v1/tokens/self/rotate", "/api/v1/tokens/self"}
OPEN = {"/healthz", "/readyz", "/metrics", "/api/v1/revoke", "/api/v1/auth/check"}


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fresh_database(backend, tmp_path_factory.mktemp(f"db-{backend}")) as url:
        yield url


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(database_url, tmp_path_factory.mktemp("server")).start()
    try:
        yield srv
    finally:
        if srv.process is not None:
            srv.stop()


@dataclass
class FuzzReport:
    operations: list[str] = field(default_factory=list)
    requests: int = 0
    statuses: dict[str, set[int]] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)
    nonconforming: dict[str, str] = field(default_factory=dict)
    unsatisfiable: list[str] = field(default_factory=list)
    server_log: str = ""


class Fuzzer:
    def __init__(self, server: Server, report: FuzzReport) -> None:
        assert server.admin_password
        self.server = server
        self.report = report
        self.admin_basic = "Basic " + base64.b64encode(f"admin:{server.admin_password}".encode()).decode()
        self.http = httpx.Client(base_url=server.url, auth=("admin", server.admin_password), timeout=30)

    def new_token(self) -> dict[str, Any]:
        body = {"name": f"fuzz {uuid.uuid4().hex[:12]}", "scopes": ["repo", "job"], "expires_in_days": None}
        response = self.http.post("/api/v1/tokens", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def authorization(self, path: str, use_real_token: bool) -> dict[str, str]:
        if path in TOKEN_AUTHENTICATED:
            return {"Authorization": f"Bearer {self.new_token()['token']}"}
        if path == "/api/v1/auth/check":
            return {"Authorization": f"Bearer {self.new_token()['token']}"} if use_real_token else {}
        if path in OPEN:
            return {}
        return {"Authorization": self.admin_basic}

    def fuzz(self, operation: Any, mode: GenerationMode) -> None:
        label = f"{operation.label} ({mode.value})"

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode), real=st.booleans())
        def run(case: schemathesis.Case, real: bool) -> None:
            if real and case.path_parameters and "token_id" in case.path_parameters:
                case.path_parameters["token_id"] = self.new_token()["id"]
            headers = self.authorization(operation.path, use_real_token=real)
            response = case.call(base_url=self.server.url, headers=headers, timeout=30)
            self.report.requests += 1
            self.report.statuses.setdefault(label, set()).add(response.status_code)
            if mode is GenerationMode.POSITIVE and 200 <= response.status_code < 300:
                try:
                    case.validate_response(
                        response,
                        checks=[response_schema_conformance, content_type_conformance],
                        headers=headers,
                    )
                except (AssertionError, BaseExceptionGroup) as error:
                    self.report.nonconforming.setdefault(operation.label, str(error))
            # Raised, so that Hypothesis shrinks a server error to its smallest request.
            case.validate_response(response, checks=[not_a_server_error], headers=headers)

        try:
            run()
        except Unsatisfiable:
            # No invalid data exists for an operation without parameters or body (GET /healthz).
            self.report.unsatisfiable.append(label)
        except (Exception, BaseExceptionGroup) as error:
            self.report.server_errors.append(f"--- {label} ---\n{error}")


@pytest.fixture(scope="module")
def fuzzed(server: Server) -> FuzzReport:
    report = FuzzReport()
    fuzzer = Fuzzer(server, report)
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    try:
        for operation in operations:
            report.operations.append(operation.label)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzzer.fuzz(operation, mode)
    finally:
        fuzzer.http.close()
    report.server_log = server.logs()
    return report


def test_fuzzed_requests_never_get_a_server_error(fuzzed: FuzzReport) -> None:
    assert len(fuzzed.operations) >= 16, fuzzed.operations
    assert fuzzed.requests >= len(fuzzed.operations) * MAX_EXAMPLES
    # The fuzz reached past the front door: signed-in and token calls succeeded, bad data was refused.
    seen = set().union(*fuzzed.statuses.values())
    assert {200, 201, 204, 401, 404, 422} <= seen, fuzzed.statuses
    assert not fuzzed.server_errors, "\n\n".join(fuzzed.server_errors)
    assert "unexpected error" not in fuzzed.server_log
    assert '"status": 5' not in fuzzed.server_log


def test_fuzzed_success_answers_match_the_openapi_document(fuzzed: FuzzReport) -> None:
    # Every 2xx body is what the document says (a route without a response class is documented
    # as application/json by FastAPI, which /revoke's empty body and /metrics' text are not).
    assert not fuzzed.nonconforming, "\n\n".join(f"--- {k} ---\n{v}" for k, v in fuzzed.nonconforming.items())
