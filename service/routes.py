"""The HTTP routes: jobs, artifacts, health, metrics and the contract. ``openapi.yaml`` at the
repository root describes every one of them; the tests hold each response to it.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from flask import Blueprint, Response, current_app, g, jsonify, redirect, request, send_file

from service import docs, metrics, signing
from service.errors import NotFound, RequestError, ServiceUnavailable
from service.jobs import JobRecord, JobStore, fingerprint, new_job_id
from service.limits import check_recipe_limits
from service.queue import enqueue_conversion
from service.schemas import JobStatus
from service.settings import Settings
from service.storage import Storage
from service.uploads import parse_submission
from service.webhooks import check_target

logger = logging.getLogger(__name__)

api = Blueprint("api", __name__)

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_WORKER_FRESH_SECONDS = 30


@dataclass
class Services:
    """What the routes need, built once by the app factory."""

    settings: Settings
    redis: redis.Redis
    jobs: JobStore
    storage: Storage
    celery: Celery


def _services() -> Services:
    return current_app.extensions["mobileconv"]  # type: ignore[no-any-return]


def _base_url() -> str:
    configured = _services().settings.public_url
    return configured.rstrip("/") if configured else request.host_url.rstrip("/")


def _signer() -> Any:
    settings = _services().settings
    return signing.make_signer(settings.signing_key(), _base_url(), settings.url_ttl_seconds)


def _job_json(record: JobRecord) -> dict[str, Any]:
    return record.to_job(_signer()).model_dump(mode="json")


def _owner() -> str | None:
    """The caller's key digest; ``None`` when API keys are off or the route is public."""
    return g.get("owner")


def _get_record(job_id: str) -> JobRecord:
    if not _JOB_ID.match(job_id):
        raise NotFound(f"There is no job with id {job_id!r}; it never existed or expired.")
    return _services().jobs.get(job_id, owner=_owner())


# -- jobs ------------------------------------------------------------------------------------


@api.post("/v1/jobs")
def submit_job() -> Any:
    """Accept a model and a recipe, store the upload, queue the conversion."""
    services = _services()
    services.redis.ping()
    submission = parse_submission(request, services.settings.max_recipe_bytes)
    check_recipe_limits(submission.recipe, services.settings)
    if submission.recipe.callback_url is not None:
        check_target(
            str(submission.recipe.callback_url),
            allow_private=services.settings.allow_private_callbacks,
        )

    job_id = new_job_id()
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None:
        print_ = fingerprint(submission.recipe, submission.hashes)
        existing = services.jobs.claim_idempotency_key(
            idempotency_key, job_id, print_, owner=_owner()
        )
        if existing is not None:
            logger.info("Idempotent replay of job %s.", existing)
            return _accepted(services.jobs.get(existing, owner=_owner()), replayed=True)

    inputs = {}
    for name, spool in submission.files.items():
        key = f"jobs/{job_id}/input/{name}"
        spool.close()
        services.storage.put_file(key, spool.path)
        inputs[name] = key
    record = services.jobs.create(
        submission.recipe,
        submission.hashes["model"],
        inputs,
        job_id=job_id,
        owner=_owner(),
        base_url=_base_url(),
    )
    try:
        enqueue_conversion(services.celery, job_id)
    except Exception as exc:
        logger.exception("Job %s could not be queued.", job_id)
        services.jobs.fail(job_id, "unavailable", "The job could not be queued; submit again.")
        raise ServiceUnavailable("The job queue is unreachable; retry in a few seconds.") from exc
    return _accepted(record, replayed=False)


def _accepted(record: JobRecord, *, replayed: bool) -> tuple[Response, int, dict[str, str]]:
    headers = {
        "Location": f"/v1/jobs/{record.id}",
        "Retry-After": str(_services().settings.retry_after_seconds),
    }
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return jsonify(_job_json(record)), 202, headers


@api.get("/v1/jobs")
def list_jobs() -> Any:
    """List jobs newest first, optionally by status, a page at a time."""
    status_text = request.args.get("status")
    try:
        status = JobStatus(status_text) if status_text else None
    except ValueError:
        choices = ", ".join(s.value for s in JobStatus)
        raise RequestError(
            f"Unknown status {status_text!r}; use one of {choices}.", field="status"
        ) from None
    limit_text = request.args.get("limit", "20")
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100:
        raise RequestError("limit must be a whole number from 1 to 100.", field="limit")
    records, cursor = _services().jobs.list(
        status=status,
        limit=int(limit_text),
        cursor=request.args.get("cursor") or None,
        owner=_owner(),
    )
    return jsonify({"jobs": [_job_json(r) for r in records], "next_cursor": cursor})


@api.get("/v1/jobs/<job_id>")
def get_job(job_id: str) -> Any:
    """Return one job document."""
    return jsonify(_job_json(_get_record(job_id)))


@api.delete("/v1/jobs/<job_id>")
def cancel_job(job_id: str) -> Any:
    """Cancel a queued or running job; the worker stops a running conversion."""
    _get_record(job_id)
    record = _services().jobs.cancel(job_id, owner=_owner())
    return jsonify(_job_json(record))


@api.get("/v1/jobs/<job_id>/report")
def get_report(job_id: str) -> Any:
    """Return the report of a succeeded job."""
    record = _get_record(job_id)
    if record.report is None:
        raise NotFound(
            f"Job {job_id} is {record.status.value} and has no report; a report exists once "
            "the job has succeeded."
        )
    return jsonify(record.report.model_dump(mode="json"))


@api.get("/v1/artifacts/<job_id>/<name>")
def download_artifact(job_id: str, name: str) -> Any:
    """Serve an artifact to the holder of a valid signed URL, with ETag and Range."""
    services = _services()
    signing.verify(
        services.settings.signing_key(),
        job_id,
        name,
        request.args.get("expires"),
        request.args.get("signature"),
    )
    record = _get_record(job_id)
    artifact = next((a for a in record.artifacts if a.name == name), None)
    if artifact is None:
        raise NotFound(f"Job {job_id} has no artifact named {name!r}.")
    path = services.storage.local_path(artifact.key)
    if path is None:
        ttl = services.settings.url_ttl_seconds
        return redirect(services.storage.presigned_url(artifact.key, ttl, name), 302)
    response = send_file(
        path,
        mimetype=artifact.media_type,
        as_attachment=True,
        download_name=name,
        etag=artifact.sha256,
        conditional=True,
        max_age=3600,
    )
    return response


# -- operations ------------------------------------------------------------------------------


@api.get("/healthz")
def healthz() -> Any:
    """The process is alive (checks nothing else)."""
    return jsonify({"status": "ok"})


@api.get("/readyz")
def readyz() -> Any:
    """Redis answers and at least one worker sent a heartbeat recently."""
    services = _services()
    services.redis.ping()
    workers = live_workers(services.redis, services.settings.key_prefix)
    if not workers:
        raise ServiceUnavailable(
            "No conversion worker has reported in the last "
            f"{_WORKER_FRESH_SECONDS} seconds; start one with `celery -A worker.celery_app "
            "worker`."
        )
    return jsonify({"status": "ready", "workers": workers})


def live_workers(client: redis.Redis, prefix: str) -> list[str]:
    """Return the workers whose heartbeat is fresh."""
    fresh = client.zrangebyscore(f"{prefix}:workers", time.time() - _WORKER_FRESH_SECONDS, "+inf")
    return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in fresh)


@api.get("/metrics")
def metrics_text() -> Any:
    """Prometheus metrics."""
    settings = _services().settings
    body = metrics.render(
        _services().redis,
        settings.key_prefix,
        [settings.queue_name, settings.webhook_queue_name],
    )
    return Response(body, mimetype=None, content_type=metrics.CONTENT_TYPE)


@api.get("/openapi.yaml")
def openapi_yaml() -> Any:
    """The HTTP contract."""
    return Response(
        docs.openapi_text(_services().settings.openapi_path),
        content_type="application/yaml; charset=utf-8",
    )


@api.get("/docs")
def docs_page() -> Any:
    """The contract as a readable HTML page."""
    return Response(
        docs.render_html(_services().settings.openapi_path), content_type="text/html; charset=utf-8"
    )


@api.get("/")
def index() -> Any:
    return redirect("/docs", 302)
