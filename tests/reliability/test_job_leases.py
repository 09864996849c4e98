"""The job-store rules worker-loss recovery rests on, against the suite's Redis: a duplicate
delivery leaves a job to the live worker holding it, a silent worker's job is handed back
once and counted, and a worker whose job was taken over can no longer write it."""

from __future__ import annotations

import uuid

import pytest
import redis

from service.jobs import JobStore
from service.schemas import Recipe
from service.settings import Settings
from tests.reliability.conftest import Stack


@pytest.fixture
def store(stack: Stack) -> JobStore:
    settings = Settings(redis_url=stack.redis.url, key_prefix=f"lease-{uuid.uuid4().hex[:8]}")
    return JobStore(redis.Redis.from_url(stack.redis.url), settings)


def _job(store: JobStore) -> str:
    return store.create(Recipe(), "0" * 64, {}).id


def test_duplicate_delivery_leaves_the_job_to_its_live_worker(store: JobStore) -> None:
    job_id = _job(store)
    assert store.start(job_id, 3, "w1") is not None
    assert store.start(job_id, 3, "w2", is_alive=lambda w: w == "w1") is None
    record = store.get(job_id)
    assert (record.worker, record.attempts) == ("w1", 1)


def test_silent_workers_job_is_handed_back_once_and_the_old_worker_cannot_write(
    store: JobStore,
) -> None:
    job_id = _job(store)
    store.start(job_id, 3, "w1")
    assert store.running_jobs() == [job_id]
    assert store.requeue_lost(job_id, 3, "w1") is True
    assert store.requeue_lost(job_id, 3, "w1") is False  # a second sweeper sends nothing
    assert store.start(job_id, 3, "w2") is not None

    store.set_progress(job_id, "exporting", 0.5, worker="w1")
    store.fail(job_id, "internal", "From the old worker.", worker="w1")
    record = store.get(job_id)
    assert (record.status.value, record.worker, record.attempts) == ("running", "w2", 2)
    assert record.stage == "loading" and not store.holds(job_id, "w1")


def test_job_lost_max_attempts_times_is_failed_not_requeued(store: JobStore) -> None:
    job_id = _job(store)
    for worker in ("w1", "w2", "w3"):
        store.start(job_id, 3, worker)
        lost = worker
    assert store.requeue_lost(job_id, 3, lost) is False
    record = store.get(job_id)
    assert record.error is not None
    assert (record.status.value, record.error.code) == ("failed", "worker-lost")
    assert store.running_jobs() == []
