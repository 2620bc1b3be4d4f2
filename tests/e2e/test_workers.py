"""`tokenledger serve --workers 2`: revocation, regeneration, limits and metrics in every process.

Every request below opens a new connection (`Connection: close`), so the kernel hands them to
either worker. To know that both workers really answered, the tests read the
per-process files of the Prometheus multiprocess directory, which `serve` creates under TMPDIR:
each worker counts its own verifications in its own `counter_<pid>.db`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.server import Server, add_user

BURST = 40
ROUNDS = 6  # per concurrent client: create, use four times, revoke


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TMPDIR of the server process: `serve` puts its shared metrics directory there."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setenv("TMPDIR", str(directory))
    return directory


@pytest.fixture
def server(database_url: str, tmp_path: Path, scratch: Path) -> Iterator[Server]:
    srv = Server(database_url, tmp_path, workers=2).start()
    try:
        yield srv
    finally:
        if srv.process is not None:
            srv.stop()
        # Shown with a failing test's output: everything the server logged besides the access log.
        print("\n".join(line for line in srv.logs().splitlines() if "tokenledger.access" not in line))


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    """One client, but a new connection for every request: the server closes each after answering."""
    with httpx.Client(base_url=server.url, headers={"Connection": "close"}, timeout=30) as client:
        yield client


@pytest.fixture
def alice(server: Server) -> tuple[str, str]:
    return ("alice", add_user(server.database_url, "alice"))


def verifications_per_worker(scratch: Path) -> dict[int, Counter[str]]:
    """{worker pid: {outcome: count}}, read from each worker's own counter file."""
    found: dict[int, Counter[str]] = {}
    for path in scratch.glob("tokenledger-metrics-*/counter_*.db"):
        pid = int(path.stem.split("_")[1])
        outcomes: Counter[str] = Counter()
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            _metric, sample, labels, _help = json.loads(key)
            if sample == "tokenledger_verifications_total":
                outcomes[labels["outcome"]] += int(value)
        found[pid] = outcomes
    return found


def workers_counting(scratch: Path, outcome: str | None) -> set[int]:
    """The workers that have counted `outcome` at least once (None: any outcome but valid)."""
    return {
        pid
        for pid, outcomes in verifications_per_worker(scratch).items()
        if (outcomes[outcome] if outcome else sum(n for o, n in outcomes.items() if o != "valid")) > 0
    }


def check(http: httpx.Client, value: str, scope: str | None = None) -> int:
    """One forward-auth check on a new connection."""
    params = {"scope": scope} if scope else None
    headers = {"Authorization": f"Bearer {value}"}
    return http.get("/api/v1/auth/check", params=params, headers=headers).status_code


def burst(http: httpx.Client, value: str, count: int = BURST) -> Counter[int]:
    return Counter(check(http, value) for _ in range(count))


def burst_until_both_workers(
    http: httpx.Client, scratch: Path, value: str, status: int, outcome: str | None
) -> int:
    """Bursts of checks, each answered `status` every time, until both workers have counted
    `outcome`. Returns the number of bursts."""
    for bursts in range(1, 11):
        assert burst(http, value) == {status: BURST}
        if len(workers_counting(scratch, outcome)) == 2:
            return bursts
    pytest.fail(f"the checks never reached both workers: {verifications_per_worker(scratch)}")


def warm_both_workers(http: httpx.Client, scratch: Path, value: str) -> int:
    """Checks until each worker has verified (and cached) the value at least once."""
    return burst_until_both_workers(http, scratch, value, 204, "valid")


def create(http: httpx.Client, account: tuple[str, str], name: str, scopes: list[str]) -> dict:  # type: ignore[type-arg]
    response = http.post("/api/v1/tokens", auth=account, json={"name": name, "scopes": scopes})
    assert response.status_code == 201, response.text
    return response.json()


def test_revoked_value_is_rejected_by_both_workers_at_once(
    http: httpx.Client, scratch: Path, alice: tuple[str, str]
) -> None:
    token = create(http, alice, "Jenkins CI", ["job"])
    warm_both_workers(http, scratch, token["token"])

    revoked = http.delete(f"/api/v1/tokens/{token['id']}", auth=alice)
    assert revoked.status_code == 204

    burst_until_both_workers(http, scratch, token["token"], 401, "revoked")


def test_revoked_by_value_is_rejected_by_both_workers(
    http: httpx.Client, scratch: Path, alice: tuple[str, str]
) -> None:
    token = create(http, alice, "Leaked", ["repo"])
    warm_both_workers(http, scratch, token["token"])

    assert http.post("/api/v1/revoke", data={"token": token["token"]}).status_code == 200

    assert burst(http, token["token"]) == {401: BURST}


def test_regenerated_old_value_fails_and_new_value_works_in_both_workers(
    http: httpx.Client, scratch: Path, alice: tuple[str, str]
) -> None:
    token = create(http, alice, "GitHub Actions", ["repo"])
    warm_both_workers(http, scratch, token["token"])

    regenerated = http.post(f"/api/v1/tokens/{token['id']}/regenerate", auth=alice)
    assert regenerated.status_code == 200, regenerated.text
    new_value = regenerated.json()["token"]
    assert new_value != token["token"]

    burst_until_both_workers(http, scratch, token["token"], 401, None)
    assert burst(http, new_value) == {204: BURST}


def test_self_rotated_old_value_fails_in_both_workers(
    http: httpx.Client, scratch: Path, alice: tuple[str, str]
) -> None:
    token = create(http, alice, "Rotating CI", ["repo:read"])
    warm_both_workers(http, scratch, token["token"])

    rotated = http.post("/api/v1/tokens/self/rotate", headers={"Authorization": f"Bearer {token['token']}"})
    assert rotated.status_code == 200, rotated.text

    assert burst(http, token["token"]) == {401: BURST}
    assert burst(http, rotated.json()["token"]) == {204: BURST}


def metric_samples(http: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = http.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_add_up_the_verifications_of_both_workers(
    http: httpx.Client, scratch: Path, alice: tuple[str, str]
) -> None:
    token = create(http, alice, "Counted", ["repo"])
    valid = warm_both_workers(http, scratch, token["token"]) * BURST
    malformed = burst_until_both_workers(http, scratch, "opat_not-even-close", 401, "malformed") * BURST

    per_worker = verifications_per_worker(scratch)
    assert all(outcomes["valid"] < valid for outcomes in per_worker.values())  # each did a share
    assert sum(per_worker.values(), Counter()) == {"valid": valid, "malformed": malformed}

    # Whichever worker answers /metrics, it reports the sum over both.
    for _ in range(6):
        samples = metric_samples(http)
        assert samples[("tokenledger_verifications_total", (("outcome", "valid"),))] == valid
        assert samples[("tokenledger_verifications_total", (("outcome", "malformed"),))] == malformed
        assert samples[("tokenledger_verification_seconds_count", ())] == valid + malformed
        assert ("tokenledger_projection_lag_events", ()) in samples
        assert ("tokenledger_usage_queue_tokens", ()) in samples


def test_one_worker_runs_the_background_projection_catch_up(http: httpx.Client) -> None:
    leaders = ("tokenledger_projection_leader", ())
    deadline = time.monotonic() + 30
    while metric_samples(http).get(leaders) != 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    # Whichever worker answers, the sum over the live workers is one leader, not one per worker.
    assert [metric_samples(http).get(leaders) for _ in range(6)] == [1] * 6


def test_failed_sign_in_limit_holds_across_workers(
    http: httpx.Client, scratch: Path, alice: tuple[str, str]
) -> None:
    # A limiter inside each worker would give a user name 10 guesses per worker; the failures
    # are counted in the database, so the 11th answer is 429 whichever worker gives it.
    statuses = [http.get("/api/v1/tokens", auth=("alice", "guess")).status_code for _ in range(11)]
    assert statuses[:10] == [401] * 10
    after = Counter(http.get("/api/v1/tokens", auth=alice).status_code for _ in range(20))
    assert after == {429: 20}


@pytest.mark.parametrize("workers", [1, 2], ids=["1-worker", "2-workers"])
def test_concurrent_clients_never_get_a_server_error(database_url: str, tmp_path: Path, workers: int) -> None:
    # Four clients at once, each creating, using and revoking tokens.
    # On SQLite this once deadlocked inside one worker until a pool timeout answered 500: a
    # catch-up held the file's write lock while asking the event store's pool for a reader,
    # whose turn a command waiting for the file held. Catch-up now reads before it locks.
    def client_session(worker: int) -> list[tuple[str, int]]:
        seen = []
        with httpx.Client(base_url=server.url, headers={"Connection": "close"}, timeout=60) as http:
            for i in range(ROUNDS):
                made = http.post(
                    "/api/v1/tokens", auth=alice, json={"name": f"load {worker}-{i}", "scopes": ["job"]}
                )
                seen.append(("create", made.status_code))
                if made.status_code != 201:
                    continue
                value = made.json()["token"]
                for _ in range(4):
                    used = http.get("/api/v1/auth/check", headers={"Authorization": f"Bearer {value}"})
                    seen.append(("check", used.status_code))
                if i % 2:
                    seen.append(("revoke", http.post("/api/v1/revoke", data={"token": value}).status_code))
                else:
                    gone = http.delete(f"/api/v1/tokens/{made.json()['id']}", auth=alice)
                    seen.append(("delete", gone.status_code))
        return seen

    server = Server(database_url, tmp_path, workers=workers).start()
    alice = ("alice", add_user(database_url, "alice"))
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            outcomes = [item for result in pool.map(client_session, range(4)) for item in result]
    finally:
        server.stop()
        print("\n".join(line for line in server.logs().splitlines() if "tokenledger.access" not in line))
    assert [item for item in outcomes if item[1] >= 500] == []
    creates, deletes, reports = 4 * ROUNDS, 4 * ((ROUNDS + 1) // 2), 4 * (ROUNDS // 2)
    assert Counter(status for _, status in outcomes) == {
        201: creates,
        204: creates * 4 + deletes,
        200: reports,
    }
