"""Turns the mixed-precision search into report sections, warnings and, when asked, a failure.

The search itself lives in ``sensitivity``; this module records what it cost (the all-int8
``.pte`` is exported and timed beside the chosen one) and what the user should know.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch

from service.errors import FidelityMissed
from service.schemas import BenchmarkConfig, MixedPrecisionReport, QuantizationConfig

from . import benchmark, export_pte
from .sensitivity import SearchResult

logger = logging.getLogger(__name__)

SEARCH_NOTE = (
    "Fidelity measured on held-out calibration samples; layers stay float only when int8 "
    "misses the target."
)
SYNTHETIC_NOTE = (
    "The fidelity target was not enforced: calibration used synthetic inputs, on which a "
    "fidelity figure says nothing about real data. Upload calibration data to enforce it."
)


def report_search(
    result: SearchResult, config: QuantizationConfig, held_out_samples: int
) -> MixedPrecisionReport:
    target = config.fidelity
    return MixedPrecisionReport(
        enforced=True,
        note=SEARCH_NOTE,
        target_sqnr_db=target.min_sqnr_db,
        target_top1_agreement=target.min_top1_agreement,
        met=result.met,
        held_out_samples=held_out_samples,
        max_float_layers=result.cap,
        float_layers=[result.layer_names[n] for n in sorted(result.chosen.float_nodes)],
        sqnr_before_db=round(result.all_int8.sqnr_db, 2),
        sqnr_after_db=round(result.chosen.sqnr_db, 2),
        top1_agreement_before=result.all_int8.top1_agreement,
        top1_agreement_after=result.chosen.top1_agreement,
        sensitivity=result.sensitivity,
    )


def unenforced(config: QuantizationConfig, calibration_source: str) -> MixedPrecisionReport | None:
    if config.mode != "static" or calibration_source != "synthetic":
        return None
    return MixedPrecisionReport(
        enforced=False,
        note=SYNTHETIC_NOTE,
        target_sqnr_db=config.fidelity.min_sqnr_db,
        target_top1_agreement=config.fidelity.min_top1_agreement,
    )


def measure_all_int8(
    result: SearchResult,
    example: torch.Tensor,
    chosen_path: Path,
    report: MixedPrecisionReport,
    evaluation: benchmark.EvalSet,
    config: BenchmarkConfig,
) -> None:
    """Export the all-int8 variant beside the chosen one and record its size and latency."""
    with tempfile.TemporaryDirectory(dir=chosen_path.parent) as scratch:
        path = Path(scratch) / "all-int8.pte"
        export_pte.export_pte(result.all_int8.model, example, path)
        quick = config.model_copy(update={"runs": min(config.runs, 20)})
        timing_only = benchmark.EvalSet(evaluation.batches[:1], None)
        measurement, _ = benchmark.measure(
            "executorch", lambda: benchmark.executorch_forward(path), timing_only, quick
        )
        report.all_int8_bytes = path.stat().st_size
        report.all_int8_p50_ms = measurement.latency.p50_ms


def miss_message(report: MixedPrecisionReport) -> str:
    return (
        f"int8 misses the fidelity target ({report.target_sqnr_db:.1f} dB): the best "
        f"reached is {report.sqnr_after_db:.1f} dB with {len(report.float_layers)} of at "
        f"most {report.max_float_layers} layer(s) in float."
    )


def enforce_target(
    report: MixedPrecisionReport, causes: list[str], config: QuantizationConfig
) -> None:
    """Raise FidelityMissed when the target was missed and the recipe asks to fail."""
    if report.met or config.on_fidelity_miss != "fail":
        return
    raise FidelityMissed(
        " ".join([miss_message(report), *causes]) + " Set quantization.on_fidelity_miss to "
        "'warn' to get the artifacts anyway.",
        field="quantization.fidelity",
    )


def fidelity_warnings(
    report: MixedPrecisionReport | None, causes: list[str], has_module_structure: bool
) -> list[str]:
    """What the user should know about the fidelity target and the layers kept float."""
    if report is None or not report.enforced:
        return []
    warnings = []
    if report.float_layers:
        warnings.append(
            f"int8 alone reached {report.sqnr_before_db:.1f} dB; {len(report.float_layers)} "
            f"layer(s) stay float to reach {report.sqnr_after_db:.1f} dB: "
            f"{', '.join(report.float_layers)}."
        )
        if not has_module_structure:
            warnings.append(
                "The .ptl of a graph-only model is quantized whole: the layers kept float in "
                "the .pte are int8 there."
            )
    if not report.met:
        warnings.append(miss_message(report))
    return warnings + causes
