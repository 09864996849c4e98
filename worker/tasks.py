"""Celery tasks: run a conversion job end to end, and deliver its webhook.

The conversion task never loads the model itself: it fetches the inputs into a private
directory, runs ``worker.child`` through :mod:`worker.sandbox`, mirrors progress into the job
record, uploads the artifacts and records the outcome. Every log line carries the job id.
"""

from __future__ import annotations

import logging
import mimetypes
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import redis
import requests

from service import webhooks
from service.errors import InvalidRecipe, NotFound
from service.hashing import file_sha256
from service.jobs import JobRecord, JobStore, StoredArtifact
from service.queue import CONVERT_TASK, WEBHOOK_TASK
from service.schemas import Report
from service.signing import make_signer
from service.storage import create_storage
from worker.celery_app import app, live_workers, settings, worker_id
from worker.sandbox import ChildJob, Limits, run_child

logger = logging.getLogger(__name__)

T = TypeVar("T")

MEDIA_TYPES = {
    ".pte": "application/octet-stream",
    ".ptl": "application/octet-stream",
    ".json": "application/json",
    ".yaml": "application/yaml",
}

_redis = redis.Redis.from_url(settings.redis_url, socket_timeout=10)
jobs = JobStore(_redis, settings)
storage = create_storage(settings)


def _limits() -> Limits:
    return Limits(
        memory_bytes=settings.child_memory_bytes,
        cpu_seconds=settings.child_cpu_seconds,
        file_bytes=settings.child_file_bytes,
        open_files=settings.child_open_files,
        wall_seconds=settings.job_timeout_seconds,
    )


@app.task(name=CONVERT_TASK, acks_late=True, reject_on_worker_lost=True)
def convert_job(job_id: str) -> None:
    """Run the conversion of ``job_id`` and record its outcome."""
    me = worker_id()
    try:
        record = jobs.start(
            job_id, settings.max_attempts, me, lambda other: other in live_workers(_redis)
        )
    except NotFound:
        logger.warning("Job %s: no record (expired?); dropping the task.", job_id)
        return
    if record is None:
        final = jobs.get(job_id)
        logger.info(
            "Job %s: not started here, it is %s (worker %s).",
            job_id,
            final.status.value,
            final.worker,
        )
        _notify(final)
        return

    logger.info("Job %s: started on %s (attempt %d).", job_id, me, record.attempts)
    _remove_stale_workdirs(job_id)
    workdir = Path(tempfile.mkdtemp(prefix=f"mobileconv-{job_id}-"))
    try:
        final = _convert(record, workdir, me)
    except Exception as exc:
        logger.exception("Job %s: the worker failed.", job_id)
        message = (
            f"The worker failed unexpectedly ({type(exc).__name__}); the worker log has the "
            "details. Submitting again may help if the cause was temporary."
        )
        final = _persist(job_id, lambda: jobs.fail(job_id, "internal", message, worker=me))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    logger.info("Job %s: ended %s.", job_id, final.status.value)
    _notify(final)


def _remove_stale_workdirs(job_id: str) -> None:
    # A worker killed mid-job leaves its working directory behind; the next attempt of the
    # same job on this host clears it so lost attempts cannot add up on disk.
    for stale in Path(tempfile.gettempdir()).glob(f"mobileconv-{job_id}-*"):
        logger.info("Job %s: removing %s left by a lost attempt.", job_id, stale)
        shutil.rmtree(stale, ignore_errors=True)


def _persist(job_id: str, write: Callable[[], T]) -> T:
    """Run a job-store write, retrying while Redis is unreachable (up to the job time)."""
    deadline = time.monotonic() + settings.job_timeout_seconds
    delay = 0.5
    while True:
        try:
            return write()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise
            logger.warning(
                "Job %s: Redis unreachable (%s); retrying in %.1f s.", job_id, exc, delay
            )
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def _convert(record: JobRecord, workdir: Path, me: str) -> JobRecord:
    job_id = record.id
    inputs = workdir / "input"
    inputs.mkdir()
    paths: dict[str, Path] = {}
    for name, key in record.inputs.items():
        paths[name] = inputs / name
        storage.get_file(key, paths[name])
    recipe_path = inputs / "recipe.json"
    recipe_path.write_text(record.recipe.model_dump_json())
    out_dir = workdir / "out"
    out_dir.mkdir()

    child = ChildJob(
        job_id=job_id,
        model=paths["model"],
        recipe=recipe_path,
        out_dir=out_dir,
        workdir=workdir,
        calibration=paths.get("calibration"),
        evaluation=paths.get("evaluation"),
    )
    outcome = run_child(
        child,
        _limits(),
        on_stage=lambda stage, progress: _progress(job_id, stage, progress, me),
        should_stop=lambda: _should_stop(job_id, me),
        poll_seconds=settings.cancel_poll_seconds,
    )

    if outcome.status == "cancelled":
        return _persist(job_id, lambda: jobs.get(job_id))
    if outcome.status == "failed":
        logger.info("Job %s: failed with %s: %s", job_id, outcome.code, outcome.message)
        return _persist(job_id, lambda: jobs.fail(job_id, outcome.code, outcome.message, worker=me))
    report = Report.model_validate_json((out_dir / "report.json").read_text())
    if not _persist(job_id, lambda: jobs.holds(job_id, me)):
        logger.warning("Job %s: taken over or ended meanwhile; not uploading.", job_id)
        return _persist(job_id, lambda: jobs.get(job_id))
    artifacts = _upload(job_id, out_dir)
    return _persist(job_id, lambda: jobs.succeed(job_id, report, artifacts, worker=me))


def _should_stop(job_id: str, me: str) -> bool:
    try:
        return not jobs.holds(job_id, me)
    except redis.RedisError as exc:
        logger.warning("Job %s: cannot check for cancellation, Redis unreachable: %s", job_id, exc)
        return False


def _progress(job_id: str, stage: str, progress: float, me: str) -> None:
    known = ("loading", "pruning", "quantizing", "exporting", "benchmarking", "done")
    if stage not in known:
        logger.warning("Job %s: the engine reported an unknown stage %r.", job_id, stage)
        return
    try:
        jobs.set_progress(job_id, stage, progress, worker=me)  # type: ignore[arg-type]
    except redis.RedisError as exc:
        logger.warning(
            "Job %s: progress %s not recorded, Redis unreachable: %s", job_id, stage, exc
        )


def _upload(job_id: str, out_dir: Path) -> list[StoredArtifact]:
    # A redelivered job uploads again; clearing first leaves exactly one set of artifacts.
    prefix = f"jobs/{job_id}/artifacts/"
    storage.delete_prefix(prefix)
    artifacts = []
    for path in sorted(p for p in out_dir.iterdir() if p.is_file()):
        size, digest = path.stat().st_size, file_sha256(path)
        media_type = MEDIA_TYPES.get(path.suffix) or (
            mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        )
        storage.put_file(prefix + path.name, path)
        artifacts.append(
            StoredArtifact(
                name=path.name,
                media_type=media_type,
                bytes=size,
                sha256=digest,
                key=prefix + path.name,
            )
        )
    logger.info("Job %s: uploaded %d artifacts.", job_id, len(artifacts))
    return artifacts


def _notify(record: JobRecord) -> None:
    if record.recipe.callback_url is not None and record.is_terminal:
        app.send_task(WEBHOOK_TASK, args=[record.id, 1])


@app.task(name=WEBHOOK_TASK, acks_late=True)
def deliver_webhook(job_id: str, attempt: int) -> None:
    """POST the final job document to the recipe's callback URL; on failure, send this task
    again after an exponentially growing delay until the attempts run out."""
    try:
        record = jobs.get(job_id)
    except NotFound:
        logger.warning("Job %s: gone before its webhook could be sent.", job_id)
        return
    if record.recipe.callback_url is None:
        return
    url = str(record.recipe.callback_url)
    sign = make_signer(
        settings.signing_key(), record.base_url or settings.public_url, settings.url_ttl_seconds
    )
    body = record.to_job(sign).model_dump_json().encode()
    try:
        webhooks.deliver(
            url,
            body,
            settings.webhook_key(),
            job_id=job_id,
            attempt=attempt,
            timeout=settings.webhook_timeout_seconds,
            allow_private=settings.allow_private_callbacks,
        )
    except InvalidRecipe as exc:
        # Checked again at delivery: the name may resolve elsewhere than at submission.
        logger.warning("Job %s: webhook to %s refused: %s", job_id, url, exc.message)
        return
    except requests.RequestException as exc:
        if attempt >= settings.webhook_max_attempts:
            logger.warning(
                "Job %s: webhook to %s failed %d times; giving up: %s", job_id, url, attempt, exc
            )
            return
        delay = settings.webhook_backoff_seconds * 2 ** (attempt - 1)
        logger.info(
            "Job %s: webhook attempt %d failed (%s); retrying in %.0f s.",
            job_id,
            attempt,
            exc,
            delay,
        )
        app.send_task(WEBHOOK_TASK, args=[job_id, attempt + 1], countdown=delay)
        return
    logger.info("Job %s: webhook delivered to %s (attempt %d).", job_id, url, attempt)
