"""Job records in Redis: the service's own store of every job, never Celery's result backend.

Each job is one JSON document under ``{prefix}:job:{id}`` that expires after the retention
period, plus a member of the sorted set ``{prefix}:jobs`` (scored by creation order, see
:meth:`JobStore.create`) that lists pages newest first. State changes go through
:meth:`JobStore.update`, an optimistic WATCH/MULTI transaction, so the API cancelling and the
worker finishing cannot overwrite each other: whichever commits first wins and the other sees a
terminal job.

Lifecycle::

    queued ──> running ──> succeeded | failed
       ^  │       │
       │  └───────┴──> cancelled
       └── running, when its worker stopped sending heartbeats (see :meth:`requeue_lost`)

A running job records which worker process holds it (``worker``) and sits in the set
``{prefix}:running``; workers sweep that set and hand back jobs whose holder has gone silent.
``attempts`` counts starts, so a job that kills its worker every time is failed after
``max_attempts`` instead of looping.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis
from pydantic import BaseModel, Field

from service import metrics
from service.errors import Conflict, IdempotencyConflict, NotFound, RequestError
from service.schemas import (
    TERMINAL_STATUSES,
    Artifact,
    ErrorBody,
    Job,
    JobStatus,
    Recipe,
    Report,
    Stage,
)
from service.settings import Settings

logger = logging.getLogger(__name__)

_MAX_UPDATE_RETRIES = 50


class StoredArtifact(BaseModel):
    """An artifact as kept in the record: where it lives, not yet a signed URL."""

    name: str
    media_type: str
    bytes: int
    sha256: str
    key: str


class JobRecord(BaseModel):
    """Everything the service keeps about one job; :meth:`to_job` is the public view."""

    id: str
    status: JobStatus = JobStatus.QUEUED
    stage: Stage = "queued"
    progress: float = Field(0.0, ge=0.0, le=1.0)
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    recipe: Recipe
    model_sha256: str
    error: ErrorBody | None = None
    report: Report | None = None
    artifacts: list[StoredArtifact] = Field(default_factory=list)
    inputs: dict[str, str] = Field(default_factory=dict, description="part name -> storage key")
    owner: str | None = None
    base_url: str = Field("", description="Where the job was submitted; webhooks link there.")
    worker: str | None = Field(None, description="The worker process running the job.")

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def to_job(self, sign: Callable[[StoredArtifact], Artifact]) -> Job:
        """Return the public job document, with artifact URLs signed by ``sign``."""
        data = self.model_dump(exclude={"artifacts", "inputs", "owner", "base_url", "worker"})
        return Job(**data, artifacts=[sign(a) for a in self.artifacts])


def now() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return uuid.uuid4().hex


def fingerprint(recipe: Recipe, part_hashes: dict[str, str]) -> str:
    """Return a hash of what a submission asked for, to compare idempotent retries."""
    canonical = json.dumps(
        {"recipe": recipe.model_dump(mode="json"), "parts": part_hashes}, sort_keys=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class JobStore:
    """Create, read, list and change job records.

    Args:
        client: a Redis client with ``decode_responses=False`` or ``True``; both work.
        settings: supplies the key prefix and the retention period.
    """

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.prefix = settings.key_prefix
        self.retention = settings.job_retention_seconds

    def _key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    @property
    def _index(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def _running(self) -> str:
        return f"{self.prefix}:running"

    # -- create and read --------------------------------------------------------------------

    def create(
        self,
        recipe: Recipe,
        model_sha256: str,
        inputs: dict[str, str],
        *,
        job_id: str | None = None,
        owner: str | None = None,
        base_url: str = "",
    ) -> JobRecord:
        """Write a new ``queued`` job and add it to the index."""
        stamp = now()
        record = JobRecord(
            id=job_id or new_job_id(),
            created_at=stamp,
            updated_at=stamp,
            recipe=recipe,
            model_sha256=model_sha256,
            inputs=inputs,
            owner=owner,
            base_url=base_url,
        )
        # Score: creation time in ms, times 1000, plus a sequence number, so jobs created in
        # the same millisecond still list in creation order.
        sequence = int(self.redis.incr(f"{self.prefix}:seq")) % 1000
        score = int(stamp.timestamp() * 1000) * 1000 + sequence
        pipe = self.redis.pipeline()
        pipe.set(self._key(record.id), record.model_dump_json(), ex=self.retention)
        pipe.zadd(self._index, {record.id: score})
        pipe.zremrangebyscore(self._index, "-inf", score - self.retention * 1_000_000)
        metrics.record_created(pipe, self.prefix)
        pipe.execute()
        logger.info("Job %s created (model sha256 %s).", record.id, model_sha256[:12])
        return record

    def get(self, job_id: str, *, owner: str | None = None) -> JobRecord:
        """Return the record of ``job_id``; :class:`NotFound` if it never existed or expired."""
        raw = self.redis.get(self._key(job_id))
        if raw is None:
            raise NotFound(f"There is no job with id {job_id!r}; it never existed or expired.")
        record = JobRecord.model_validate_json(raw)
        if owner is not None and record.owner != owner:
            raise NotFound(f"There is no job with id {job_id!r}; it never existed or expired.")
        return record

    def list(
        self,
        *,
        status: JobStatus | None = None,
        limit: int = 20,
        cursor: str | None = None,
        owner: str | None = None,
    ) -> tuple[list[JobRecord], str | None]:
        """Return up to ``limit`` jobs newest first, and the cursor of the next page."""
        max_score, after_id = _decode_cursor(cursor) if cursor else ("+inf", None)
        found: list[JobRecord] = []
        batch = max(limit * 2, 50)
        while len(found) < limit:
            members = self.redis.zrevrangebyscore(
                self._index, max_score, "-inf", start=0, num=batch, withscores=True
            )
            members = [(_text(m), int(s)) for m, s in members]
            if after_id is not None:
                members = [(m, s) for m, s in members if not (s == max_score and m >= after_id)]
            if not members:
                return found, None
            raws = self.redis.mget([self._key(m) for m, _ in members])
            for (member, score), raw in zip(members, raws, strict=True):
                max_score, after_id = score, member
                if raw is None:
                    continue
                record = JobRecord.model_validate_json(raw)
                if (status is None or record.status == status) and (
                    owner is None or record.owner == owner
                ):
                    found.append(record)
                    if len(found) == limit:
                        return found, _encode_cursor(score, member)
        return found, None

    # -- change -----------------------------------------------------------------------------

    def update(self, job_id: str, change: Callable[[JobRecord], JobRecord | None]) -> JobRecord:
        """Apply ``change`` to the record atomically; it returns the new record or ``None``
        to leave the record as it is. Returns the record as stored afterwards."""
        key = self._key(job_id)
        for _ in range(_MAX_UPDATE_RETRIES):
            with self.redis.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        raise NotFound(
                            f"There is no job with id {job_id!r}; it never existed or expired."
                        )
                    before = JobRecord.model_validate_json(raw)
                    after = change(before.model_copy(deep=True))
                    if after is None:
                        pipe.unwatch()
                        return before
                    after.updated_at = now()
                    pipe.multi()
                    pipe.set(key, after.model_dump_json(), keepttl=True)
                    if after.status == JobStatus.RUNNING:
                        pipe.sadd(self._running, job_id)
                    else:
                        pipe.srem(self._running, job_id)
                    metrics.record_transition(pipe, self.prefix, before, after)
                    pipe.execute()
                    return after
                except redis.WatchError:
                    continue
        raise RuntimeError(f"Job {job_id} changed too often to update; try again.")

    def start(
        self,
        job_id: str,
        max_attempts: int,
        worker: str = "",
        is_alive: Callable[[str], bool] = lambda _worker: False,
    ) -> JobRecord | None:
        """Mark the job running on ``worker`` and count the attempt.

        A job already running on another worker that ``is_alive`` is left alone (a duplicate
        delivery); one running on ``worker`` itself or on a silent worker was lost with its
        process and starts again. Returns ``None`` when the job must not run here: it is
        terminal (e.g. cancelled while queued), held by a live worker, or it has now been
        started ``max_attempts`` times and is failed instead.
        """

        def change(record: JobRecord) -> JobRecord | None:
            if record.is_terminal:
                return None
            held_by = record.worker
            if (
                record.status == JobStatus.RUNNING
                and held_by not in (None, worker)
                and is_alive(held_by or "")
            ):
                return None
            if record.attempts >= max_attempts:
                return _lost_too_often(record, max_attempts)
            record.attempts += 1
            record.status = JobStatus.RUNNING
            record.stage = "loading"
            record.progress = 0.0
            record.worker = worker or None
            record.started_at = record.started_at or now()
            return record

        record = self.update(job_id, change)
        if record.status == JobStatus.RUNNING and record.worker == (worker or None):
            return record
        return None

    def requeue_lost(self, job_id: str, max_attempts: int, worker: str | None) -> bool:
        """Hand a running job whose ``worker`` was lost back to the queue, or fail it when it
        has been started ``max_attempts`` times. Returns whether the caller must send the
        task again (it made the change, and the job is queued)."""
        requeued: list[bool] = []

        def change(record: JobRecord) -> JobRecord | None:
            requeued.clear()
            if record.status != JobStatus.RUNNING or record.worker != worker:
                return None
            if record.attempts >= max_attempts:
                return _lost_too_often(record, max_attempts)
            requeued.append(True)
            record.status = JobStatus.QUEUED
            record.stage = "queued"
            record.progress = 0.0
            record.worker = None
            return record

        record = self.update(job_id, change)
        logger.warning(
            "Job %s: worker %s was lost; the job is now %s.", job_id, worker, record.status.value
        )
        return bool(requeued) and record.status == JobStatus.QUEUED

    def running_jobs(self) -> list[str]:
        """Return the ids of jobs marked running (a worker holds them, or held them)."""
        return sorted(_text(m) for m in self.redis.smembers(self._running))

    def forget_running(self, job_id: str) -> None:
        """Drop ``job_id`` from the running set (its record expired or it is not running)."""
        self.redis.srem(self._running, job_id)

    def holds(self, job_id: str, worker: str) -> bool:
        """Return whether ``job_id`` is running on ``worker`` (it was not taken over)."""
        raw = self.redis.get(self._key(job_id))
        if raw is None:
            return False
        record = JobRecord.model_validate_json(raw)
        return record.status == JobStatus.RUNNING and _held(record, worker)

    def set_progress(
        self, job_id: str, stage: Stage, progress: float, *, worker: str | None = None
    ) -> JobRecord:
        """Record the stage and progress of a running job; a no-op once it is terminal, or
        when ``worker`` is given and no longer holds the job."""

        def change(record: JobRecord) -> JobRecord | None:
            if record.status != JobStatus.RUNNING or not _held(record, worker):
                return None
            record.stage = stage
            record.progress = min(max(progress, 0.0), 1.0)
            return record

        return self.update(job_id, change)

    def succeed(
        self,
        job_id: str,
        report: Report,
        artifacts: list[StoredArtifact],
        *,
        worker: str | None = None,
    ) -> JobRecord:
        """Mark a running job succeeded; a job cancelled meanwhile stays cancelled, and one
        another worker took over (``worker`` given and not the holder) is left to it."""

        def change(record: JobRecord) -> JobRecord | None:
            if record.status != JobStatus.RUNNING or not _held(record, worker):
                return None
            record.status = JobStatus.SUCCEEDED
            record.stage = "done"
            record.progress = 1.0
            record.finished_at = now()
            record.report = report
            record.artifacts = artifacts
            record.worker = None
            return record

        return self.update(job_id, change)

    def fail(self, job_id: str, code: str, message: str, *, worker: str | None = None) -> JobRecord:
        """Mark a job failed with an error code and a message for a person (when ``worker``
        is given, only while that worker holds it)."""

        def change(record: JobRecord) -> JobRecord | None:
            if record.is_terminal or (worker is not None and not _held(record, worker)):
                return None
            record.worker = None
            record.status = JobStatus.FAILED
            record.finished_at = now()
            record.error = ErrorBody(code=code, message=message)
            return record

        return self.update(job_id, change)

    def cancel(self, job_id: str, *, owner: str | None = None) -> JobRecord:
        """Cancel a queued or running job; the worker sees it and stops the conversion.

        Raises:
            NotFound: no such job.
            Conflict: the job has already ended.
        """
        self.get(job_id, owner=owner)

        def change(record: JobRecord) -> JobRecord | None:
            if record.is_terminal:
                raise Conflict(
                    f"Job {job_id} has already ended as {record.status.value}; "
                    "only queued or running jobs can be cancelled."
                )
            record.status = JobStatus.CANCELLED
            record.finished_at = now()
            record.error = ErrorBody(code="cancelled", message="The job was cancelled by a client.")
            return record

        record = self.update(job_id, change)
        logger.info("Job %s cancelled.", job_id)
        return record

    def status_of(self, job_id: str) -> JobStatus | None:
        """Return the job's status, or ``None`` when the record is gone."""
        raw = self.redis.get(self._key(job_id))
        return None if raw is None else JobRecord.model_validate_json(raw).status

    # -- idempotency ------------------------------------------------------------------------

    def claim_idempotency_key(
        self, key: str, job_id: str, print_: str, *, owner: str | None = None
    ) -> str | None:
        """Bind ``key`` to ``job_id``. Returns ``None`` when this call won the key, or the job
        id an earlier request with the same body created.

        Raises:
            IdempotencyConflict: the key was used before with a different body.
        """
        if not key or len(key) > 255:
            raise RequestError(
                "The Idempotency-Key header must be 1 to 255 characters long.",
                field="Idempotency-Key",
            )
        redis_key = f"{self.prefix}:idem:{owner or '-'}:{hashlib.sha256(key.encode()).hexdigest()}"
        value = json.dumps({"job_id": job_id, "fingerprint": print_})
        if self.redis.set(redis_key, value, nx=True, ex=self.retention):
            return None
        stored = json.loads(self.redis.get(redis_key) or value)
        if stored["fingerprint"] != print_:
            raise IdempotencyConflict(
                "This Idempotency-Key was already used with a different request body; "
                "use a new key for a new job.",
                field="Idempotency-Key",
            )
        return str(stored["job_id"])


def _held(record: JobRecord, worker: str | None) -> bool:
    """Whether ``worker`` may write the running ``record`` (``None``: anyone may)."""
    return worker is None or record.worker in (worker or None, None)


def _lost_too_often(record: JobRecord, max_attempts: int) -> JobRecord:
    record.status = JobStatus.FAILED
    record.finished_at = now()
    record.worker = None
    record.error = ErrorBody(
        code="worker-lost",
        message=f"The job was started {max_attempts} times and the worker was lost each time "
        "(killed, or out of memory); it will not be retried (MOBILECONV_MAX_ATTEMPTS). Check "
        "the model's size against the worker's memory before submitting it again.",
    )
    return record


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _encode_cursor(score: int, member: str) -> str:
    return base64.urlsafe_b64encode(f"{score}:{member}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, member = raw.split(":", 1)
        return int(score), member
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise RequestError(
            "The cursor is not one this API returned; pass next_cursor unchanged.", field="cursor"
        ) from None
