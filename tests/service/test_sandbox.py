"""The conversion sandbox with a stand-in child: progress, errors, cancellation, limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.sandbox import ChildJob, Limits, run_child

LIMITS = Limits(
    memory_bytes=2 * 1024**3, cpu_seconds=60, file_bytes=1024**2, open_files=256, wall_seconds=30
)


def _run(tmp_path: Path, behaviour: str, limits: Limits = LIMITS, stop_after: int = 0) -> tuple:
    stages: list[tuple[str, float]] = []
    polls = []
    job = ChildJob(
        job_id="j1",
        model=tmp_path / "m",
        recipe=Path(behaviour),
        out_dir=tmp_path,
        workdir=tmp_path,
    )

    def should_stop() -> bool:
        polls.append(1)
        return bool(stop_after) and len(polls) >= stop_after

    outcome = run_child(
        job,
        limits,
        on_stage=lambda s, p: stages.append((s, p)),
        should_stop=should_stop,
        poll_seconds=0.1,
        child_module="tests.service.stand_in_child",
    )
    return outcome, stages


@pytest.mark.parametrize(
    ("behaviour", "status", "code"), [("ok", "succeeded", ""), ("fail", "failed", "invalid-model")]
)
def test_outcome_and_progress(tmp_path: Path, behaviour: str, status: str, code: str) -> None:
    outcome, stages = _run(tmp_path, behaviour)
    assert (outcome.status, outcome.code) == (status, code)
    assert stages == [("loading", 0.1)]


def test_cancellation_kills_the_child(tmp_path: Path) -> None:
    outcome, _ = _run(tmp_path, "sleep", stop_after=3)
    assert outcome.status == "cancelled"


def test_cpu_limit_is_named(tmp_path: Path) -> None:
    limits = Limits(**{**LIMITS.__dict__, "cpu_seconds": 1})
    outcome, _ = _run(tmp_path, "spin", limits)
    assert outcome.code == "resource-limit" and "CPU-time limit of 1 s" in outcome.message


def test_wall_clock_limit_is_named(tmp_path: Path) -> None:
    limits = Limits(**{**LIMITS.__dict__, "wall_seconds": 1})
    outcome, _ = _run(tmp_path, "sleep", limits)
    assert outcome.code == "resource-limit" and "time limit of 1 s" in outcome.message
