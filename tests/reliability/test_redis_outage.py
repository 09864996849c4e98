"""Redis stops while a job runs: the API answers 503 with Retry-After (never a 500, never a
202 for a job that could not be queued); Redis comes back and the API, the worker and the
running job carry on without restarting anything, and a new job is taken by the same worker."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.reliability.conftest import LIGHT_RECIPE, WORKER_LOST_SECONDS, Stack, wait_for

OUTAGE_SECONDS = 2 * WORKER_LOST_SECONDS


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
    # Longer than the lost-worker time, so the sweep's guard against an outage is exercised.
    answers = []
    while time.monotonic() - stopped_at < OUTAGE_SECONDS:
        answers += _probe(stack, models["tiny"], running_id)
        time.sleep(0.5)
    outage_seconds = time.monotonic() - stopped_at

    stack.redis.start()
    restarted_at = time.monotonic()
    api_back = wait_for(lambda: client.get(f"/v1/jobs/{running_id}").status_code == 200, 30, "API")
    second_id = client.submit_ok(models["tiny"], LIGHT_RECIPE)
    first = client.wait(running_id, timeout=180)
    first_done = time.monotonic() - restarted_at
    # The same worker takes a job sent after the outage; cancelling it then saves a conversion.
    second = client.wait(second_id, lambda j: j["status"] != "queued", timeout=60)
    taken = time.monotonic() - restarted_at
    client.request("DELETE", f"/v1/jobs/{second_id}")

    statuses = Counter(status for _, status, _ in answers)
    job_calls = [a for a in answers if a[0] != "GET /healthz"]
    assert all(status == 503 and retry for _, status, retry in job_calls), job_calls
    assert statuses[500] == 0 and statuses[202] == 0
    assert first["status"] == "succeeded", first["error"]
    assert (second["status"], second["attempts"]) == ("running", 1), second
    assert (stack.api.pid, stack.worker.pid) == (api_pid, worker_pid)  # type: ignore[union-attr]
    assert stack.api.poll() is None and stack.worker.poll() is None  # type: ignore[union-attr]
    results["redis_outage"] = {
        "requests_during_outage": len(answers),
        "answers_by_status": {str(k): v for k, v in sorted(statuses.items())},
        "outage_seconds": round(outage_seconds, 1),
        "seconds_redis_back_to_api_200": round(api_back, 1),
        "jobs_submitted_around_outage": 2,
        "running_job_succeeded": first["status"] == "succeeded",
        "new_job_taken_by_same_worker": second["status"] == "running",
        "seconds_redis_back_to_running_job_succeeded": round(first_done, 1),
        "seconds_redis_back_to_new_job_running": round(taken, 1),
        "processes_restarted": 0,
    }
