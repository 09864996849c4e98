"""Section 3: against what a user would pick instead, ONNX Runtime static int8.

The same float model is exported with ``torch.onnx.export``, pre-processed
(``quant_pre_process``: shape inference and graph optimisation) and quantized with
``quantize_static`` in QDQ format with per-channel int8 weights and int8 activations (S8S8,
ORT's recommended default for CPUs), calibrated on exactly the samples the engine calibrated
on. ORT runs with one intra-op thread, as do ExecuTorch and eager PyTorch; all are timed
interleaved and compared on the same held-out inputs.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench import timing
from bench.artifacts import artifact_paths, fidelity_figures
from bench.context import Context
from bench.workloads import ALL_MODELS, Workload, batches

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)

RATIO_GOAL = 1.0


def run(ctx: Context) -> None:
    """Compare our int8 ``.pte`` with ORT int8 for every model."""
    for name in ALL_MODELS:
        measure_model(ctx, name)


def measure_model(ctx: Context, name: str) -> None:
    rec, settings = ctx.recorder, ctx.settings
    workload = ctx.workload(name)
    paths = artifact_paths(ctx, name)
    module = workload.eager_module()
    fp32_onnx, int8_onnx = build_onnx(module, workload, ctx.work / "onnx" / workload.name,
                                      settings.samples)

    timing.set_threads(1)
    candidates = {
        "eager-fp32": timing.eager(module),
        "pte-int8": timing.executorch(paths["pte-int8"]),
        "ort-int8": timing.onnxruntime(int8_onnx, 1),
        "ort-fp32": timing.onnxruntime(fp32_onnx, 1),
    }
    eval_batches = batches(workload.eval_inputs()[: settings.samples], workload.input_shape)
    timed = timing.interleaved(candidates, eval_batches[0], settings.runs, settings.warmup)

    ratio = timed["pte-int8"].p50_ms / timed["ort-int8"].p50_ms
    rec.add("pte_int8_over_ort_int8", ratio, "latency ratio", model=name,
            goal=f"<= {RATIO_GOAL}", met=ratio <= RATIO_GOAL,
            **{f"{k}_p50_ms": round(v.p50_ms, 4) for k, v in timed.items()},
            int8_onnx_bytes=int8_onnx.stat().st_size,
            pte_int8_bytes=paths["pte-int8"].stat().st_size)
    reference = timing.outputs(candidates["eager-fp32"], eval_batches)
    labels = workload.eval_labels()
    for key in ("pte-int8", "ort-int8", "ort-fp32"):
        fidelity = fidelity_figures(reference, timing.outputs(candidates[key], eval_batches),
                                    labels)
        rec.add(f"fidelity_{key.replace('-', '_')}", fidelity["centered_sqnr_db"],
                "dB centred SQNR", model=name, **fidelity)


class _Reader:
    """Feeds calibration batches to ORT's calibrator."""

    def __init__(self, name: str, inputs: list[np.ndarray]) -> None:
        self.items = iter([{name: batch} for batch in inputs])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.items, None)


def build_onnx(
    module: nn.Module, workload: Workload, folder: Path, samples: int
) -> tuple[Path, Path]:
    """Write the float ONNX model and its ORT static-int8 QDQ version; cached."""
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32, prepared, int8 = folder / "fp32.onnx", folder / "prepared.onnx", folder / "int8.onnx"
    if int8.exists():
        return fp32, int8
    folder.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(workload.input_shape)
    # The exporter prints progress to stdout, which carries only JSON lines here.
    with contextlib.redirect_stdout(sys.stderr):
        torch.onnx.export(module, (example,), str(fp32), input_names=["input"],
                          output_names=["output"], dynamo=True, external_data=False)
    quant_pre_process(str(fp32), str(prepared))

    # The engine calibrates on the first ``calibration_samples`` of the calibration file in
    # whole batches; ORT gets exactly those batches.
    calibration = [b.numpy() for b in batches(workload.calibration_inputs()[:samples],
                                               workload.input_shape)]
    name = ort.InferenceSession(str(prepared)).get_inputs()[0].name
    quantize_static(
        str(prepared), str(int8), _Reader(name, calibration),
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
    )
    logger.info("ORT int8 model of %s written (%d bytes)", workload.name, int8.stat().st_size)
    return fp32, int8
