"""Section 8: the losses the other sections show, profiled.

Polling: ``GET /v1/jobs/{id}`` and ``GET /healthz`` answered in-process by the Flask app
(``bench.route_profile``), timed and then under cProfile, so the cost of the job route itself
is separated from gunicorn, the network and the load generator. Small jobs: the import of the
engine in a fresh process (every job's sandboxed child pays it), and a cProfile of one whole
in-process conversion of the digits CNN (both targets, static int8), summarised by the
cumulative time of the engine's big library calls and the functions with the most own time.
"""

from __future__ import annotations

import cProfile
import json
import logging
import pstats
import subprocess
import sys
import time

from bench.context import ROOT, Context

logger = logging.getLogger(__name__)

# Library entry points whose cumulative time says which step of a conversion costs what.
PHASES = {
    "torch.export.export": ("torch/export/__init__.py", "export"),
    "prepare_pt2e": ("quantize_pt2e.py", "prepare_pt2e"),
    "convert_pt2e": ("quantize_pt2e.py", "convert_pt2e"),
    "to_edge_transform_and_lower": ("exir/program/_program.py", "to_edge_transform_and_lower"),
    "to_executorch": ("exir/program/_program.py", "to_executorch"),
    "prepare_fx": ("quantize_fx.py", "prepare_fx"),
    "convert_fx": ("quantize_fx.py", "convert_fx"),
    "torch.jit.trace": ("torch/jit/_trace.py", "trace"),
    "torch.jit.freeze": ("torch/jit/_freeze.py", "freeze"),
    "export_ptl (save + backport)": ("worker/pipeline/export_ptl.py", "export_ptl"),
    "measure (all runtimes)": ("worker/pipeline/benchmark.py", "measure"),
}
IMPORTS = "import worker.pipeline.run, executorch.runtime, torch.jit.mobile"


def run(ctx: Context) -> None:
    """Profile the job route, time the engine's import, and profile one digits conversion."""
    from bench import service
    from bench.route_profile import profile_routes

    rec = ctx.recorder
    _, report_dir = ctx.standard("digits", "static")
    routes = profile_routes(report_dir, ctx.work / "service", service.REDIS_URL)
    for route in ("healthz", "job"):
        rec.add(f"inprocess_{route}_ms", routes["ms"][route], "ms per request (in-process)",
                response_bytes=routes["bytes"][route])
    rec.add("job_route_top_cumulative", json.dumps(routes["top"]),
            "function: ms per request (cProfile)")

    imports = []
    for _ in range(3):
        start = time.monotonic()
        subprocess.run([sys.executable, "-c", IMPORTS], cwd=ROOT, check=True)
        imports.append(time.monotonic() - start)
    rec.add("engine_import_seconds", min(imports), "s (best of 3, fresh process)",
            statement=IMPORTS, all_seconds=[round(s, 2) for s in imports])

    profiled, total = profile_conversion(ctx)
    rec.add("digits_conversion_seconds", total, "s (under cProfile)", model="digits")
    for phase, seconds in profiled["phases"].items():
        rec.add(f"phase {phase}", seconds, "s cumulative", model="digits",
                share=round(seconds / total, 3))
    rec.add("top_own_time", json.dumps(profiled["own"]), "function: s", model="digits")


def profile_conversion(ctx: Context) -> tuple[dict[str, object], float]:
    from service.schemas import Recipe
    from worker.pipeline.run import convert

    workload = ctx.workload("digits")
    recipe = Recipe.model_validate(workload.recipe(
        benchmark=ctx.settings.benchmark(), quantization=ctx.settings.quantization("static")
    ))
    out = ctx.work / "profile"
    profiler = cProfile.Profile()
    start = time.monotonic()
    profiler.enable()
    convert(workload.model_path, recipe, out, calibration_path=workload.calibration,
            evaluation_path=workload.evaluation)
    profiler.disable()
    total = time.monotonic() - start
    profiler.dump_stats(str(out / "convert.prof"))

    stats = pstats.Stats(profiler)
    phases = {}
    for phase, (file_part, function) in PHASES.items():
        seconds = [row[3] for (path, _, name), row in stats.stats.items()
                   if name == function and path.endswith(file_part)]
        if seconds:
            phases[phase] = round(max(seconds), 3)
    own = sorted(((row[2], f"{path.rsplit('site-packages/', 1)[-1]}:{name}")
                  for (path, _, name), row in stats.stats.items()), reverse=True)[:8]
    return {"phases": phases, "own": {name: round(t, 3) for t, name in own}}, total
