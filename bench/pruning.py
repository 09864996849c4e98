"""Section 2: structured channel pruning, MACs against measured latency.

resnet18 and mobilenet_v2 are channel-pruned by 30% and 50% (Torch-Pruning's dependency graph,
through the engine) and quantized to an int8 ``.pte``. The MACs ratio comes from the engine's
report; the latency ratio is the pruned int8 ``.pte`` against the unpruned int8 ``.pte`` of
section 1, and the pruned eager fp32 model against the unpruned one, all timed interleaved at
one thread. "Latency follows MACs within 1.4x" means latency ratio / MACs ratio <= 1.4.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bench import timing
from bench.artifacts import artifact_paths
from bench.context import Context
from bench.workloads import IMAGE_MODELS, batches

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)

AMOUNTS = (0.3, 0.5)
FOLLOW_GOAL = 1.4


def run(ctx: Context) -> None:
    """Measure both image models at both pruning amounts."""
    for name in IMAGE_MODELS:
        measure_model(ctx, name)


def measure_model(ctx: Context, name: str) -> None:
    rec, settings = ctx.recorder, ctx.settings
    workload = ctx.workload(name)
    baseline = artifact_paths(ctx, name)["pte-int8"]

    timing.set_threads(1)
    pte = {"pte-int8-0.0": timing.executorch(baseline)}
    eager = {"eager-fp32-0.0": timing.eager(workload.eager_module())}
    macs = {}
    for amount in AMOUNTS:
        report, out = ctx.convert(
            name,
            targets=["pte"],
            pruning={"method": "channel", "amount": amount},
            quantization=settings.quantization("static"),
        )
        macs[amount] = report.pruning.macs_after / report.pruning.macs_before
        pte[f"pte-int8-{amount}"] = timing.executorch(out / "model.pte")
        eager[f"eager-fp32-{amount}"] = timing.eager(pruned_module(ctx, name, amount))

    sample = batches(workload.eval_inputs()[:1], workload.input_shape)[0]
    timed = timing.interleaved({**pte, **eager}, sample, settings.runs, settings.warmup)
    for amount in AMOUNTS:
        rec.add(f"macs_ratio_{amount}", macs[amount], "pruned/original", model=name)
        for kind in ("pte-int8", "eager-fp32"):
            pruned, base = timed[f"{kind}-{amount}"], timed[f"{kind}-0.0"]
            latency = pruned.p50_ms / base.p50_ms
            follow = latency / macs[amount]
            rec.add(f"latency_ratio_{kind.replace('-', '_')}_{amount}", latency,
                    "pruned/original", model=name, pruned_p50_ms=pruned.p50_ms,
                    original_p50_ms=base.p50_ms, macs_ratio=round(macs[amount], 4))
            rec.add(f"latency_over_macs_{kind.replace('-', '_')}_{amount}", follow,
                    "latency ratio / MACs ratio", model=name, goal=f"<= {FOLLOW_GOAL}",
                    met=follow <= FOLLOW_GOAL)


def pruned_module(ctx: Context, name: str, amount: float) -> nn.Module:
    """The eager model pruned exactly as the engine prunes it for the recipe above."""
    from service.schemas import Recipe
    from worker.pipeline.load import load_model
    from worker.pipeline.prune import prune_model

    workload = ctx.workload(name)
    recipe = Recipe.model_validate(
        workload.recipe(pruning={"method": "channel", "amount": amount})
    )
    loaded = load_model(workload.model_path, recipe)
    prune_model(loaded, recipe.pruning)
    return loaded.module.eval()
