"""Section 5: polling under load, against a trivial route on the same server.

64 keep-alive clients GET ``/v1/jobs/{id}`` (a succeeded digits job, whose document carries
the whole report and signed artifact URLs) as fast as answers come, for a bounded window on
loopback; then ``/healthz`` (answers a constant) the same way. Both run once with the worker
idle and once while a resnet18 conversion runs on the same two cores. Goals: job route
>= 0.7x the trivial route's requests/s idle, >= 0.5x of it while busy, p99 <= 50 ms.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bench import service
from bench.context import Context
from bench.load import LoadResult, hammer
from bench.overhead import recipe_for

logger = logging.getLogger(__name__)

CONNECTIONS = 64
IDLE_GOAL, BUSY_GOAL, P99_GOAL_MS = 0.7, 0.5, 50.0
BUSY_JOBS = 3


def run(ctx: Context) -> None:
    """Idle and busy windows on one service."""
    with service.running(ctx.work, workers=1) as svc:
        client = service.make_client(svc.base_url)
        digits = ctx.workload("digits")
        job = client.submit(digits.model_path, recipe_for(ctx, digits),
                            calibration=digits.calibration, evaluation=digits.evaluation)
        job, _ = service.wait_terminal(client, job["id"])
        routes = {"healthz": f"{svc.base_url}/healthz",
                  "job": f"{svc.base_url}/v1/jobs/{job['id']}"}

        idle = {route: window(ctx, url) for route, url in routes.items()}
        busy_ids = start_busy(ctx, client)
        busy = {}
        for route, url in routes.items():
            busy[route] = window(ctx, url)
            busy[route + "_running"] = client.get(busy_ids[0])["status"] == "running"
        for job_id in busy_ids:
            if client.get(job_id)["status"] in ("queued", "running"):
                client.cancel(job_id)
    record(ctx, idle, busy)


def window(ctx: Context, url: str) -> LoadResult:
    return hammer(url, CONNECTIONS, ctx.settings.poll_seconds)


def start_busy(ctx: Context, client: Any) -> list[str]:
    """Queue resnet18 conversions and return once the first is running."""
    workload = ctx.workload("resnet18")
    ids = [client.submit(workload.model_path, recipe_for(ctx, workload),
                         calibration=workload.calibration, evaluation=workload.evaluation)["id"]
           for _ in range(BUSY_JOBS)]
    deadline = time.monotonic() + 120
    while client.get(ids[0])["status"] == "queued" and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)  # past the child's start-up, into the conversion itself
    return ids


def record(ctx: Context, idle: dict[str, Any], busy: dict[str, Any]) -> None:
    rec = ctx.recorder
    base = idle["healthz"].requests_per_second
    for phase, results in (("idle", idle), ("busy", busy)):
        for route in ("healthz", "job"):
            result = results[route]
            extra = {"conversion_running_at_end": results[route + "_running"]} if (
                phase == "busy") else {}
            detail = {**result.__dict__, "connections": CONNECTIONS, **extra}
            rec.add(f"{phase}_{route}_rps", result.requests_per_second, "requests/s", **detail)
            met = result.p99_ms <= P99_GOAL_MS if route == "job" else None
            rec.add(f"{phase}_{route}_p50", result.p50_ms, "ms", **detail)
            rec.add(f"{phase}_{route}_p99", result.p99_ms, "ms",
                    goal=f"<= {P99_GOAL_MS:g}" if route == "job" else None, met=met, **detail)
    idle_ratio = idle["job"].requests_per_second / base
    busy_ratio = busy["job"].requests_per_second / base
    rec.add("idle_job_over_healthz", idle_ratio, "x idle /healthz requests/s",
            goal=f">= {IDLE_GOAL}", met=idle_ratio >= IDLE_GOAL)
    rec.add("busy_job_over_idle_healthz", busy_ratio, "x idle /healthz requests/s",
            goal=f">= {BUSY_GOAL}", met=busy_ratio >= BUSY_GOAL)
    same = busy["job"].requests_per_second / busy["healthz"].requests_per_second
    rec.add("busy_job_over_busy_healthz", same, "x busy /healthz requests/s")
