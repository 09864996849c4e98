"""Section 7: does the report tell the truth about latency?

Each model is converted again here (static int8, both targets, ``runs`` timed calls), and right
after, the p50 latency in the engine's ``report.json`` is compared with an independent timing of
the same file in the same runtime: a fresh process (``python -m bench.timeit``), this package's
own loader, the same thread count, runs and warm-up, and the first held-out batch as input.
Converting here, not reusing section 1's files, keeps both timings within a minute of each
other, so the shared cores' load drifts less between them. The goal: within 10%.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from bench.context import ROOT, Context
from bench.workloads import ALL_MODELS

logger = logging.getLogger(__name__)

TOLERANCE = 0.10
RUNTIMES = {"pte": "executorch", "ptl": "lite"}


def run(ctx: Context) -> None:
    """Compare every artifact's reported latency with an independent timing."""
    benchmark = {**ctx.settings.benchmark(), "runs": ctx.settings.runs}
    for name in ALL_MODELS:
        workload = ctx.workload(name)
        report, out = ctx.convert(name, fresh=True, benchmark=benchmark,
                                  quantization=ctx.settings.quantization("static"))
        for artifact in report.artifacts:
            latency = artifact.measurement.latency
            independent = time_fresh(RUNTIMES[artifact.target], out / artifact.file,
                                     workload.input_shape, latency.runs, latency.warmup,
                                     latency.threads, workload.evaluation)
            ratio = latency.p50_ms / independent
            ctx.recorder.add(
                f"report_over_independent_{artifact.target}_int8", ratio,
                "reported p50 / independent p50", model=name,
                goal=f"within {TOLERANCE:.0%}", met=abs(ratio - 1.0) <= TOLERANCE,
                reported_p50_ms=round(latency.p50_ms, 4),
                independent_p50_ms=round(independent, 4), runs=latency.runs,
                warmup=latency.warmup, threads=latency.threads)


def time_fresh(runtime: str, path: object, shape: list[int], runs: int, warmup: int,
               threads: int, inputs: object) -> float:
    """p50 milliseconds of ``path`` timed by ``bench.timeit`` in a new process."""
    command = [sys.executable, "-m", "bench.timeit", runtime, str(path),
               "--shape", ",".join(map(str, shape)), "--runs", str(runs),
               "--warmup", str(warmup), "--threads", str(threads), "--inputs", str(inputs)]
    result = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return float(json.loads(result.stdout.strip().splitlines()[-1])["p50_ms"])
