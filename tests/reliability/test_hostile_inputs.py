"""Hostile files and models that hit each sandbox limit, sent through the real service: nothing
in them runs, each job fails cleanly with a message naming what stopped it, the disk does not
fill, and the same worker converts a well-behaved model afterwards."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.reliability import hostile
from tests.reliability.conftest import LIGHT_RECIPE, Stack

# name -> (expected code, phrase the message must contain)
HOSTILE = {
    "pickle-state-dict": ("invalid-model", "pickled Python objects"),
    "zip-bomb": ("resource-limit", "the limits are"),
    "truncated-zip": ("invalid-model", "truncated"),
    "absurd-sizes": ("resource-limit", "the limits are"),
}
LIMITS = {
    "memory-limit": ("resource-limit", "MOBILECONV_CHILD_MEMORY_BYTES"),
    "file-size-limit": ("resource-limit", "MOBILECONV_CHILD_FILE_BYTES"),
    "cpu-limit": ("resource-limit", "MOBILECONV_CHILD_CPU_SECONDS"),
}


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def _seconds(job: dict[str, Any]) -> float | None:
    if not job.get("started_at") or not job.get("finished_at"):
        return None
    start, end = (datetime.fromisoformat(job[k]) for k in ("started_at", "finished_at"))
    return round((end - start).total_seconds(), 1)


@pytest.fixture(scope="module")
def batch(
    stack: Stack, models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Submit every hostile file, every limit-hitting model and then the tiny model, in that
    order, to the one worker; wait until all have ended."""
    root = tmp_path_factory.mktemp("hostile")
    marker = root / "payload-ran"
    files = {
        "pickle-state-dict": hostile.pickle_state_dict(root / "evil-state-dict.pt", marker),
        "zip-bomb": hostile.zip_bomb(root / "bomb.pt2"),
        "truncated-zip": hostile.truncated(models["tiny"], root / "truncated.pt2"),
        "absurd-sizes": hostile.absurd_sizes(models["tiny"], root / "absurd.pt2"),
        "memory-limit": models["memory"],
        "file-size-limit": models["file"],
        "cpu-limit": models["cpu"],
        "next-job": models["tiny"],
    }
    client = stack.client()
    store_before = _tree_bytes(stack.store)
    started = time.monotonic()
    ids = {}
    for name, path in files.items():
        recipe = dict(LIGHT_RECIPE)
        if name == "pickle-state-dict":
            recipe["architecture"] = "resnet18"
        ids[name] = client.submit_ok(path, recipe)
    jobs = {name: client.wait(job_id, timeout=300) for name, job_id in ids.items()}
    return {
        "jobs": jobs,
        "files": files,
        "marker": marker,
        "uploaded_bytes": sum(p.stat().st_size for p in files.values()),
        "store_growth": _tree_bytes(stack.store) - store_before,
        "seconds": round(time.monotonic() - started, 1),
    }


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file_fails_cleanly(batch: dict[str, Any], name: str) -> None:
    job = batch["jobs"][name]
    code, phrase = HOSTILE[name]
    assert (job["status"], job["error"]["code"]) == ("failed", code), job["error"]
    assert phrase in job["error"]["message"] and job["error"]["message"].endswith(".")
    assert not batch["marker"].exists(), "a pickle payload ran"


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_limit_is_named_in_the_failure(batch: dict[str, Any], name: str) -> None:
    job = batch["jobs"][name]
    code, setting = LIMITS[name]
    assert (job["status"], job["error"]["code"]) == ("failed", code), job["error"]
    assert setting in job["error"]["message"]


def test_worker_takes_the_next_job_and_disk_stays_clean(
    batch: dict[str, Any], stack: Stack, results: dict[str, Any]
) -> None:
    job = batch["jobs"]["next-job"]
    assert job["status"] == "succeeded", job["error"]
    leftovers = [p.name for p in stack.worker_tmp.glob("mobileconv-*")]
    assert leftovers == []
    # The store holds the uploads and one small set of artifacts: nothing a bomb inflated.
    artifact_bytes = sum(a["bytes"] for a in job["artifacts"])
    assert batch["store_growth"] <= batch["uploaded_bytes"] + artifact_bytes + 64 * 1024

    results["hostile_inputs"] = {
        "jobs_submitted": len(batch["jobs"]),
        "jobs_failed_as_expected": sum(
            1
            for name, j in batch["jobs"].items()
            if name in {**HOSTILE, **LIMITS} and j["status"] == "failed"
        ),
        "jobs_succeeded_after": int(job["status"] == "succeeded"),
        "payload_marker_created": batch["marker"].exists(),
        "uploaded_bytes": batch["uploaded_bytes"],
        "zip_bomb_inflated_bytes": 20 * 256 * 1024**2,
        "store_growth_bytes": batch["store_growth"],
        "worker_tmp_leftovers": len(leftovers),
        "seconds_for_batch": batch["seconds"],
        "per_job": {
            name: {
                "status": j["status"],
                "code": (j["error"] or {}).get("code"),
                "seconds": _seconds(j),
                "message": (j["error"] or {}).get("message"),
            }
            for name, j in batch["jobs"].items()
        },
    }


def test_artifacts_of_the_next_job_download(batch: dict[str, Any]) -> None:
    job = batch["jobs"]["next-job"]
    names = {a["name"] for a in job["artifacts"]}
    assert {"model.pte", "report.json"} <= names
    pte = next(a for a in job["artifacts"] if a["name"] == "model.pte")
    response = requests.get(pte["url"], timeout=30)  # no key: the signed URL is enough
    assert response.status_code == 200 and len(response.content) == pte["bytes"]
