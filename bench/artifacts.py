"""Section 1: each artifact against the original model.

For resnet18, mobilenet_v2 and the digits CNN, the same model is converted twice (quantization
``none`` and ``static``, both targets). Figures: int8/fp32 file size of ``.pte`` and ``.ptl``;
1-thread latency of every artifact in its runtime against eager fp32, timed interleaved in this
process; fidelity of every artifact against eager fp32 on the held-out crops.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bench import timing
from bench.context import Context
from bench.workloads import ALL_MODELS, batches

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

SIZE_GOAL = 0.26
RESNET_LATENCY_GOAL = 0.4
ARTIFACTS = (("pte", "fp32"), ("pte", "int8"), ("ptl", "fp32"), ("ptl", "int8"))
RUNTIMES = {"pte": "executorch", "ptl": "lite"}


def run(ctx: Context) -> None:
    """Measure every model of section 1."""
    for name in ALL_MODELS:
        measure_model(ctx, name)


def artifact_paths(ctx: Context, name: str) -> dict[str, object]:
    """Paths of the four artifacts of ``name`` (converting when not cached)."""
    fp32, fp32_dir = ctx.standard(name, "none")
    int8, int8_dir = ctx.standard(name, "static")
    return {
        "reports": {"fp32": fp32, "int8": int8},
        "pte-fp32": fp32_dir / "model.pte", "ptl-fp32": fp32_dir / "model.ptl",
        "pte-int8": int8_dir / "model.pte", "ptl-int8": int8_dir / "model.ptl",
    }


def measure_model(ctx: Context, name: str) -> None:
    rec, settings = ctx.recorder, ctx.settings
    paths = artifact_paths(ctx, name)
    reports = paths["reports"]

    for target in ("pte", "ptl"):
        fp32_bytes = paths[f"{target}-fp32"].stat().st_size
        int8_bytes = paths[f"{target}-int8"].stat().st_size
        ratio = int8_bytes / fp32_bytes
        rec.add(f"size_ratio_{target}", ratio, "int8/fp32", model=name,
                goal=f"<= {SIZE_GOAL}", met=ratio <= SIZE_GOAL,
                int8_bytes=int8_bytes, fp32_bytes=fp32_bytes)

    workload = ctx.workload(name)
    timing.set_threads(1)
    eval_batches = batches(workload.eval_inputs()[: settings.samples], workload.input_shape)
    candidates = {"eager-fp32": timing.eager(workload.eager_module())}
    for target, kind in ARTIFACTS:
        candidates[f"{target}-{kind}"] = timing.load(RUNTIMES[target], paths[f"{target}-{kind}"])
    results = timing.interleaved(candidates, eval_batches[0], settings.runs, settings.warmup)

    eager_ms = results["eager-fp32"].p50_ms
    rec.add("latency_eager_fp32", eager_ms, "ms p50", model=name, threads=1,
            batch=workload.input_shape[0], **_prefixed(results["eager-fp32"].as_dict()))
    reference = timing.outputs(candidates["eager-fp32"], eval_batches)
    labels = workload.eval_labels()
    for key, forward in candidates.items():
        if key == "eager-fp32":
            continue
        ratio = results[key].p50_ms / eager_ms
        goal = met = None
        if key == "pte-int8" and name == "resnet18":
            goal, met = f"<= {RESNET_LATENCY_GOAL}", ratio <= RESNET_LATENCY_GOAL
        rec.add(f"latency_ratio_{key.replace('-', '_')}", ratio, "x eager fp32", model=name,
                goal=goal, met=met, artifact_p50_ms=results[key].p50_ms, eager_p50_ms=eager_ms,
                min_ratio=round(results[key].min_ms / results["eager-fp32"].min_ms, 4),
                threads=1, **_prefixed(results[key].as_dict()))
        fidelity = fidelity_figures(reference, timing.outputs(forward, eval_batches), labels)
        rec.add(f"fidelity_{key.replace('-', '_')}", fidelity["centered_sqnr_db"],
                "dB centred SQNR", model=name, **fidelity)

    for kind, report in reports.items():
        rec.add(f"convert_seconds_{kind}", sum(report.stage_seconds.values()), "s", model=name,
                stage_seconds=report.stage_seconds)


def fidelity_figures(
    reference: torch.Tensor, candidate: torch.Tensor, labels: object | None
) -> dict[str, object]:
    """The engine's fidelity metrics of ``candidate`` against ``reference`` as a dict."""
    import torch

    from worker.pipeline.fidelity import compare

    label_tensor = None
    if labels is not None:
        label_tensor = torch.as_tensor(labels)[: reference.shape[0]]
    fidelity = compare(reference, candidate, label_tensor)
    return {k: (round(v, 4) if isinstance(v, float) else v)
            for k, v in fidelity.model_dump().items()}


def _prefixed(stats: dict[str, float]) -> dict[str, float]:
    return {f"timing_{k}": v for k, v in stats.items()}
