"""Section 6: throughput of small jobs.

``jobs`` small digits-CNN jobs (``.pte`` only, float, one timed run) are submitted at once from a
thread pool; jobs per minute is the count that succeeded over the time from the first POST to
the last job seen ending (polled every 0.2 s). Once with one Celery worker process, once with
two, each on a freshly started service.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from bench import service
from bench.context import Context

logger = logging.getLogger(__name__)


def run(ctx: Context) -> None:
    """Jobs per minute with one and with two worker processes."""
    per_minute = {}
    for workers in (1, 2):
        per_minute[workers] = measure(ctx, workers)
    ctx.recorder.add("scaling_2_over_1", per_minute[2] / per_minute[1], "x", model="digits")


def measure(ctx: Context, workers: int) -> float:
    workload = ctx.workload("digits")
    recipe = workload.recipe(targets=["pte"], quantization={"mode": "none"},
                             benchmark={"runs": 1, "warmup": 0, "eval_samples": 8})
    count = ctx.settings.jobs
    with service.running(ctx.work, workers=workers) as svc:
        client = service.make_client(svc.base_url)
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=count) as pool:
            futures = [pool.submit(client.submit, workload.model_path, recipe,
                                   calibration=workload.calibration,
                                   evaluation=workload.evaluation) for _ in range(count)]
            ids = [future.result()["id"] for future in futures]
        submitted = time.monotonic() - start
        pending, statuses = set(ids), {}
        while pending:
            for job_id in list(pending):
                status = client.get(job_id)["status"]
                if status in ("succeeded", "failed", "cancelled"):
                    statuses[job_id] = status
                    pending.discard(job_id)
            time.sleep(0.2)
        elapsed = time.monotonic() - start

    succeeded = sum(1 for s in statuses.values() if s == "succeeded")
    rate = succeeded / elapsed * 60.0
    ctx.recorder.add(f"jobs_per_minute_{workers}_workers", rate, "jobs/min", model="digits",
                     workers=workers, jobs=count, succeeded=succeeded,
                     seconds=round(elapsed, 2), submit_seconds=round(submitted, 2))
    return rate
