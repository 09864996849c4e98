"""The Redis job store: lifecycle, races with cancellation, listing, idempotency, retention."""

from __future__ import annotations

import pytest

from service.errors import Conflict, IdempotencyConflict, NotFound
from service.jobs import JobStore, StoredArtifact
from service.schemas import JobStatus, Recipe

RECIPE = Recipe(architecture="resnet18", input_shape=[1, 3, 32, 32])


def _create(store: JobStore) -> str:
    return store.create(RECIPE, "ab" * 32, {"model": "jobs/x/input/model"}).id


def test_create_and_get_round_trip(store: JobStore) -> None:
    job_id = _create(store)
    record = store.get(job_id)
    assert record.status == JobStatus.QUEUED and record.stage == "queued"
    assert record.recipe == RECIPE
    assert 0 < store.redis.ttl(f"{store.prefix}:job:{job_id}") <= store.retention


def test_unknown_job_is_not_found(store: JobStore) -> None:
    with pytest.raises(NotFound, match="never existed"):
        store.get("0" * 32)


def test_lifecycle_to_succeeded_keeps_ttl(store: JobStore) -> None:
    job_id = _create(store)
    assert store.start(job_id, max_attempts=3) is not None
    store.set_progress(job_id, "quantizing", 0.5)
    assert store.get(job_id).stage == "quantizing"
    artifact = StoredArtifact(
        name="model.pte",
        media_type="application/octet-stream",
        bytes=1,
        sha256="00",
        key=f"jobs/{job_id}/artifacts/model.pte",
    )
    record = store.succeed(job_id, _report(), [artifact])
    assert record.status == JobStatus.SUCCEEDED and record.progress == 1.0
    assert store.redis.ttl(f"{store.prefix}:job:{job_id}") > 0


def test_cancelled_job_is_not_started_nor_overwritten(store: JobStore) -> None:
    job_id = _create(store)
    store.cancel(job_id)
    assert store.start(job_id, max_attempts=3) is None
    assert store.fail(job_id, "internal", "late").status == JobStatus.CANCELLED
    with pytest.raises(Conflict, match="already ended"):
        store.cancel(job_id)


def test_attempts_are_bounded(store: JobStore) -> None:
    job_id = _create(store)
    for _ in range(2):
        assert store.start(job_id, max_attempts=2) is not None
    assert store.start(job_id, max_attempts=2) is None
    record = store.get(job_id)
    assert record.status == JobStatus.FAILED and record.error is not None
    assert "2 times" in record.error.message


def test_list_paginates_newest_first_and_filters(store: JobStore) -> None:
    ids = [_create(store) for _ in range(5)]
    store.cancel(ids[1])
    seen, cursor = [], None
    while True:
        page, cursor = store.list(limit=2, cursor=cursor)
        seen += [r.id for r in page]
        if cursor is None:
            break
    assert seen == ids[::-1]
    cancelled, _ = store.list(status=JobStatus.CANCELLED)
    assert [r.id for r in cancelled] == [ids[1]]


def test_idempotency_key_same_and_different_body(store: JobStore) -> None:
    assert store.claim_idempotency_key("k1", "job-a", "print-1") is None
    assert store.claim_idempotency_key("k1", "job-b", "print-1") == "job-a"
    with pytest.raises(IdempotencyConflict):
        store.claim_idempotency_key("k1", "job-c", "print-2")


def _report():  # noqa: ANN202
    from service.schemas import Report

    measurement = {
        "runtime": "eager-pytorch",
        "latency": {
            "p50_ms": 1,
            "p90_ms": 1,
            "p99_ms": 1,
            "mean_ms": 1,
            "runs": 1,
            "warmup": 0,
            "threads": 1,
        },
        "memory": {"peak_rss_increase_bytes": 1, "peak_rss_bytes": 1},
    }
    return Report.model_validate(
        {
            "model": {
                "format": "torchvision",
                "sha256": "00",
                "bytes": 1,
                "input_shape": [1],
                "input_dtype": "float32",
                "parameters": 1,
            },
            "recipe": RECIPE.model_dump(),
            "quantization": {
                "mode": "static",
                "calibration_source": "synthetic",
                "calibration_samples": 1,
                "held_out_samples": 1,
                "schemes": {},
            },
            "original": measurement,
            "artifacts": [],
            "evaluation_source": "synthetic",
            "stage_seconds": {"loading": 0.5},
            "host": {
                "cpu_model": "x",
                "cpu_flags": [],
                "logical_cpus": 1,
                "platform": "x",
                "python": "3.11",
                "libraries": {},
            },
        }
    )
