"""Profile ``GET /v1/jobs/{id}`` in-process, beside ``GET /healthz``, to see what polling costs.

A succeeded job record (section 1's digits int8 report, its four artifacts) is written to the
bench Redis database under its own key prefix through the service's own ``JobStore``; the Flask
app answers both routes through its test client (no network, no gunicorn), first timed, then
under cProfile. Only this prefix's keys are deleted afterwards.
"""

from __future__ import annotations

import cProfile
import hashlib
import logging
import pstats
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PREFIX = "bench-profile"
CALLS = 300


def profile_routes(report_dir: Path, data_dir: Path, redis_url: str) -> dict[str, Any]:
    """Per-request milliseconds of both routes, the document size, and the top functions."""
    import redis

    from service.app import create_app
    from service.jobs import JobStore, StoredArtifact
    from service.schemas import JobStatus, Report
    from service.settings import Settings

    settings = Settings(redis_url=redis_url, data_dir=data_dir, secret_key="bench-secret",
                        key_prefix=PREFIX, queue_name="bench-profile",
                        webhook_queue_name="bench-profile-webhooks")
    client = redis.Redis.from_url(redis_url)
    store = JobStore(client, settings)
    report = Report.model_validate_json((report_dir / "report.json").read_text())
    record = store.create(report.recipe, report.model.sha256, {}, base_url="http://127.0.0.1")
    artifacts = [StoredArtifact(name=p.name, media_type="application/octet-stream",
                                bytes=p.stat().st_size,
                                sha256=hashlib.sha256(p.read_bytes()).hexdigest(),
                                key=f"jobs/{record.id}/artifacts/{p.name}")
                 for p in sorted(report_dir.iterdir()) if p.is_file()]

    def finish(job: Any) -> Any:
        job.status, job.stage, job.progress = JobStatus.SUCCEEDED, "done", 1.0
        job.report, job.artifacts = report, artifacts
        return job

    store.update(record.id, finish)
    try:
        return _measure(create_app(settings).test_client(), record.id)
    finally:
        for key in client.scan_iter(match=f"{PREFIX}:*"):
            client.delete(key)


def _measure(test: Any, job_id: str) -> dict[str, Any]:
    routes = {"healthz": "/healthz", "job": f"/v1/jobs/{job_id}"}
    sizes = {name: len(test.get(path).data) for name, path in routes.items()}
    per_request = {}
    for name, path in routes.items():
        start = time.perf_counter()
        for _ in range(CALLS):
            test.get(path)
        per_request[name] = (time.perf_counter() - start) / CALLS * 1000

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(CALLS):
        test.get(routes["job"])
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows = []
    for (path, _, name), row in stats.stats.items():
        if "/service/" in path or "pydantic" in path or "redis" in path or "json" in path:
            rows.append((row[3] / CALLS * 1000, f"{_short(path)}:{name}"))
    top = {name: round(ms, 3) for ms, name in sorted(rows, reverse=True)[:10]}
    return {"ms": per_request, "bytes": sizes, "top": top}


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/"):
        if marker in path:
            return path.rsplit(marker, 1)[-1]
    return path.rsplit("/", 2)[-1]
