"""Prometheus metrics kept in Redis, so every gunicorn worker and Celery worker adds to the
same numbers, rendered in the Prometheus text exposition format (version 0.0.4).

Series:
    mobileconv_jobs_total{status}          counter: jobs that reached each status
    mobileconv_jobs_active{status}         gauge: jobs queued or running now
    mobileconv_stage_seconds_sum{stage}    counter: seconds spent in each engine stage
    mobileconv_stage_seconds_count{stage}  counter: stage runs measured
    mobileconv_queue_depth{queue}          gauge: tasks waiting in the Celery queue
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis

if TYPE_CHECKING:
    from service.jobs import JobRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_ACTIVE = ("queued", "running")


def _keys(prefix: str) -> tuple[str, str, str, str]:
    base = f"{prefix}:metrics"
    return f"{base}:jobs_total", f"{base}:active", f"{base}:stage_sum", f"{base}:stage_count"


def record_created(pipe: Any, prefix: str) -> None:
    """Count a new queued job (inside the caller's pipeline)."""
    total, active, _, _ = _keys(prefix)
    pipe.hincrby(total, "queued", 1)
    pipe.hincrby(active, "queued", 1)


def record_transition(pipe: Any, prefix: str, before: JobRecord, after: JobRecord) -> None:
    """Count a status change and, for a success, the stage times of its report."""
    if before.status == after.status:
        return
    total, active, stage_sum, stage_count = _keys(prefix)
    pipe.hincrby(total, after.status.value, 1)
    if before.status.value in _ACTIVE:
        pipe.hincrby(active, before.status.value, -1)
    if after.status.value in _ACTIVE:
        pipe.hincrby(active, after.status.value, 1)
    if after.report is not None and before.report is None:
        for stage, seconds in after.report.stage_seconds.items():
            pipe.hincrbyfloat(stage_sum, stage, float(seconds))
            pipe.hincrby(stage_count, stage, 1)


def render(client: redis.Redis, prefix: str, queues: list[str]) -> str:
    """Return every series in the Prometheus text format."""
    total, active, stage_sum, stage_count = _keys(prefix)
    pipe = client.pipeline()
    for key in (total, active, stage_sum, stage_count):
        pipe.hgetall(key)
    for queue in queues:
        pipe.llen(queue)
    results = pipe.execute()
    totals, actives, sums, counts = (_decoded(r) for r in results[:4])
    depths = results[4:]

    lines: list[str] = []
    _family(lines, "mobileconv_jobs_total", "counter", "Jobs that reached each status.")
    for status in ("queued", "running", "succeeded", "failed", "cancelled"):
        lines.append(f'mobileconv_jobs_total{{status="{status}"}} {int(totals.get(status, 0))}')
    _family(lines, "mobileconv_jobs_active", "gauge", "Jobs queued or running now.")
    for status in _ACTIVE:
        value = max(int(actives.get(status, 0)), 0)
        lines.append(f'mobileconv_jobs_active{{status="{status}"}} {value}')
    _family(lines, "mobileconv_stage_seconds", "summary", "Wall time of engine stages.")
    for stage in sorted(sums):
        lines.append(f'mobileconv_stage_seconds_sum{{stage="{stage}"}} {float(sums[stage])}')
        lines.append(f'mobileconv_stage_seconds_count{{stage="{stage}"}} {int(counts[stage])}')
    _family(lines, "mobileconv_queue_depth", "gauge", "Tasks waiting in each Celery queue.")
    for queue, depth in zip(queues, depths, strict=True):
        lines.append(f'mobileconv_queue_depth{{queue="{queue}"}} {int(depth)}')
    return "\n".join(lines) + "\n"


def _family(lines: list[str], name: str, kind: str, help_text: str) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")


def _decoded(mapping: dict[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in mapping.items()
    }
