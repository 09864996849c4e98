"""What every section of one run shares: settings, workloads and the conversions already made.

Conversions are cached on disk per settings and per version of the engine's source
(``var/bench/work/<full|quick>/``), so running one section alone converts only what it needs,
a full run converts each model once, and a changed engine never serves old artifacts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import workloads
from bench.record import Recorder

if TYPE_CHECKING:
    from service.schemas import Report

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Settings:
    """Sizes of one run: the full run, or ``--quick`` for a smoke test."""

    quick: bool
    image_size: int
    samples: int
    runs: int
    warmup: int
    poll_seconds: float
    jobs: int

    @classmethod
    def make(cls, quick: bool) -> Settings:
        if quick:
            return cls(True, image_size=64, samples=16, runs=10, warmup=2, poll_seconds=3.0,
                       jobs=4)
        return cls(False, image_size=224, samples=64, runs=60, warmup=5, poll_seconds=20.0,
                   jobs=20)

    def benchmark(self) -> dict[str, int]:
        """The recipe's benchmark block used for every conversion."""
        return {"runs": max(10, self.runs // 2), "warmup": self.warmup, "threads": 1,
                "eval_samples": self.samples}

    def quantization(self, mode: str) -> dict[str, Any]:
        return {"mode": mode, "calibration_samples": self.samples}


def engine_fingerprint() -> str:
    """A hash of the engine's source, so cached conversions follow the code that made them."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "worker" / "pipeline").glob("*.py")):
        digest.update(path.read_bytes())
    digest.update((root / "service" / "schemas.py").read_bytes())
    return digest.hexdigest()


@dataclass
class Context:
    """Settings, the recorder and the cached workloads and conversions of one run."""

    settings: Settings
    recorder: Recorder
    work: Path
    succeeded_job: str | None = None
    _workloads: dict[str, workloads.Workload] = field(default_factory=dict)

    def workload(self, name: str) -> workloads.Workload:
        if name not in self._workloads:
            self._workloads[name] = workloads.build(
                name, self.work / "models", self.settings.image_size, self.settings.samples
            )
        return self._workloads[name]

    def convert(self, name: str, *, fresh: bool = False, **overrides: Any) -> tuple[Report, Path]:
        """Convert workload ``name`` in this process with the recipe ``overrides``.

        Cached on disk by recipe, unless ``fresh`` asks for a new conversion.
        """
        from service.schemas import Recipe, Report

        workload = self.workload(name)
        recipe = workload.recipe(**{"benchmark": self.settings.benchmark(), **overrides})
        key_text = json.dumps(recipe, sort_keys=True) + engine_fingerprint()
        key = hashlib.sha256(key_text.encode()).hexdigest()[:12]
        out = self.work / "conversions" / f"{name}-{key}"
        if fresh and out.exists():
            shutil.rmtree(out)
        if (out / "report.json").exists():
            return Report.model_validate_json((out / "report.json").read_text()), out

        from worker.pipeline.run import convert

        start = time.perf_counter()
        report = convert(
            workload.model_path,
            Recipe.model_validate(recipe),
            out,
            calibration_path=workload.calibration,
            evaluation_path=workload.evaluation,
        )
        (out / "recipe.json").write_text(json.dumps(recipe, indent=2))
        logger.info("converted %s (%s) in %.1f s", name, key, time.perf_counter() - start)
        return report, out

    def standard(self, name: str, mode: str) -> tuple[Report, Path]:
        """The section-1 conversion of ``name``: both targets, ``mode`` none or static."""
        return self.convert(name, quantization=self.settings.quantization(mode))
