"""Losing the worker: SIGKILL mid-conversion (the job runs again and succeeds with one set of
artifacts), a job that kills its worker every time (failed after MOBILECONV_MAX_ATTEMPTS),
and SIGTERM (the running job finishes, the queued one waits for the next worker)."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path
from typing import Any

from tests.reliability.conftest import (
    LIGHT_RECIPE,
    WORKER_LOST_SECONDS,
    Stack,
    wait_for,
)


def _mid_conversion(job: dict[str, Any]) -> bool:
    return job["status"] == "running" and job["stage"] in ("exporting", "benchmarking")


def _conversion_processes(job_id: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if job_id.encode() in cmdline.read_bytes() and b"worker.child" in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def test_sigkill_mid_conversion_reruns_the_job_once(
    stack: Stack, models: dict[str, Path], results: dict[str, Any]
) -> None:
    client = stack.client()
    job_id = client.submit_ok(models["tiny"], LIGHT_RECIPE)
    client.wait(job_id, _mid_conversion, timeout=120)

    stack.signal_worker(signal.SIGKILL, group=True)
    killed_at = time.monotonic()
    stack.wait_worker_exit(timeout=10)
    wait_for(lambda: not _conversion_processes(job_id), 10, "the conversion process to die")
    restart_seconds = stack.start_worker()
    running_again = client.wait(
        job_id, lambda j: j["attempts"] == 2 and j["status"] == "running", timeout=60
    )
    redelivered_after = time.monotonic() - killed_at
    job = client.wait(job_id, timeout=120)

    assert job["status"] == "succeeded", job["error"]
    assert (running_again["attempts"], job["attempts"]) == (2, 2)
    files = stack.artifact_files(job_id)
    assert sorted(p.name for p in files) == sorted(a["name"] for a in job["artifacts"])
    digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    assert digests == {a["name"]: a["sha256"] for a in job["artifacts"]}
    results["worker_sigkill"] = {
        "jobs_submitted": 1,
        "jobs_completed": 1,
        "attempts": job["attempts"],
        "artifact_sets_in_store": 1,
        "artifact_files": len(files),
        "worker_restart_seconds": round(restart_seconds, 1),
        "seconds_kill_to_running_again": round(redelivered_after, 1),
        "seconds_kill_to_succeeded": round(time.monotonic() - killed_at, 1),
        "worker_lost_seconds_setting": WORKER_LOST_SECONDS,
    }


def test_job_that_kills_its_worker_every_time_ends_failed(
    stack: Stack, models: dict[str, Path], results: dict[str, Any]
) -> None:
    client = stack.client()
    job_id = client.submit_ok(models["tiny"], LIGHT_RECIPE)
    started = time.monotonic()
    kills = 0
    for attempt in (1, 2, 3):
        client.wait(
            job_id, lambda j, a=attempt: j["status"] == "running" and j["attempts"] == a, 120
        )
        # The pool process running the task dies as if the model had taken it down.
        pool = stack.worker_pool_pids()
        assert pool, "the worker has no pool process"
        for pid in pool:
            os.kill(pid, signal.SIGKILL)
        kills += 1

    job = client.wait(job_id, timeout=60)
    assert (job["status"], job["error"]["code"]) == ("failed", "worker-lost")
    assert "3 times" in job["error"]["message"]
    assert "MOBILECONV_MAX_ATTEMPTS" in job["error"]["message"]
    assert stack.worker is not None and stack.worker.poll() is None
    results["poison_job"] = {
        "jobs_submitted": 1,
        "worker_processes_killed": kills,
        "attempts": job["attempts"],
        "final_status": job["status"],
        "error_code": job["error"]["code"],
        "seconds_to_failed": round(time.monotonic() - started, 1),
    }


def test_sigterm_finishes_the_running_job_and_keeps_the_queued_one(
    stack: Stack, models: dict[str, Path], results: dict[str, Any]
) -> None:
    client = stack.client()
    running_id = client.submit_ok(models["tiny"], LIGHT_RECIPE)
    queued_id = client.submit_ok(models["tiny"], LIGHT_RECIPE)
    client.wait(running_id, lambda j: j["status"] == "running", timeout=120)

    stack.signal_worker(signal.SIGTERM, group=False)
    stopped_at = time.monotonic()
    exit_code = stack.wait_worker_exit(timeout=180)
    shutdown_seconds = time.monotonic() - stopped_at
    finished = client.job(running_id)
    waiting = client.job(queued_id)
    assert finished["status"] == "succeeded", finished["error"]
    assert waiting["status"] == "queued", waiting

    # The restarted worker takes the job that waited; cancelling it then saves a conversion.
    stack.start_worker()
    later = client.wait(queued_id, lambda j: j["status"] != "queued", timeout=60)
    assert (later["status"], later["attempts"]) == ("running", 1), later
    assert client.request("DELETE", f"/v1/jobs/{queued_id}").status_code == 200
    results["worker_sigterm"] = {
        "jobs_submitted": 2,
        "jobs_completed": 1,
        "jobs_taken_by_restarted_worker": 1,
        "worker_exit_code": exit_code,
        "seconds_sigterm_to_exit": round(shutdown_seconds, 1),
        "running_job_attempts": finished["attempts"],
        "queued_job_attempts": later["attempts"],
    }
