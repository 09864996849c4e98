"""Redis stops while a job runs: the API answers 503 with Retry-After (never a 500, never a
202 for a job that could not be queued); Redis comes back and the API, the worker and the
running job carry on without restarting anything."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.reliability.conftest import LIGHT_RECIPE, Stack, wait_for

ROUNDS = 3


def _probe(stack: Stack, model: Path, job_id: str) -> list[tuple[str, int, str | None]]:
    """Call every endpoint once; return (call, status, Retry-After)."""
    client = stack.client()
    calls = {
        "POST /v1/jobs": lambda: client.submit(model, LIGHT_RECIPE),
        "GET /v1/jobs": lambda: client.get("/v1/jobs"),
        "GET /v1/jobs/{id}": lambda: client.get(f"/v1/jobs/{job_id}"),
        "DELETE /v1/jobs/{id}": lambda: client.request("DELETE", f"/v1/jobs/{job_id}"),
        "GET /v1/jobs/{id}/report": lambda: client.get(f"/v1/jobs/{job_id}/report"),
        "GET /readyz": lambda: client.get("/readyz"),
        "GET /metrics": lambda: client.get("/metrics"),
        "GET /healthz": lambda: client.get("/healthz"),
    }
    answers = []
    for name, call in calls.items():
        response = call()
        answers.append((name, response.status_code, response.headers.get("Retry-After")))
    return answers


def test_redis_outage_is_503_and_recovers_without_restarts(
    stack: Stack, models: dict[str, Path], results: dict[str, Any]
) -> None:
    client = stack.client()
    api_pid, worker_pid = stack.api.pid, stack.worker.pid  # type: ignore[union-attr]
    running_id = client.submit_ok(models["tiny"], LIGHT_RECIPE)
    client.wait(running_id, lambda j: j["status"] == "running", timeout=120)

    stack.redis.stop()
    stopped_at = time.monotonic()
    answers = []
    for _ in range(ROUNDS):
        answers += _probe(stack, models["tiny"], running_id)
        time.sleep(0.5)
    outage_seconds = time.monotonic() - stopped_at

    stack.redis.start()
    restarted_at = time.monotonic()
    api_back = wait_for(lambda: client.get(f"/v1/jobs/{running_id}").status_code == 200, 30, "API")
    first = client.wait(running_id, timeout=180)
    second_id = client.submit_ok(models["tiny"], LIGHT_RECIPE)
    second = client.wait(second_id, timeout=180)

    statuses = Counter(status for _, status, _ in answers)
    job_calls = [a for a in answers if a[0] != "GET /healthz"]
    assert all(status == 503 and retry for _, status, retry in job_calls), job_calls
    assert statuses[500] == 0 and statuses[202] == 0
    assert (first["status"], second["status"]) == ("succeeded", "succeeded"), (first, second)
    assert (stack.api.pid, stack.worker.pid) == (api_pid, worker_pid)  # type: ignore[union-attr]
    assert stack.api.poll() is None and stack.worker.poll() is None  # type: ignore[union-attr]
    results["redis_outage"] = {
        "requests_during_outage": len(answers),
        "answers_by_status": {str(k): v for k, v in sorted(statuses.items())},
        "outage_seconds": round(outage_seconds, 1),
        "seconds_redis_back_to_api_200": round(api_back, 1),
        "jobs_submitted": 2,
        "jobs_completed": int(first["status"] == "succeeded")
        + int(second["status"] == "succeeded"),
        "running_job_survived": first["status"] == "succeeded",
        "seconds_redis_back_to_new_job_succeeded": round(time.monotonic() - restarted_at, 1),
        "processes_restarted": 0,
    }
