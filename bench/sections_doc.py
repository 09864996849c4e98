"""Per-section prose (each section module's own docstring) and figure tables for the write-up."""

from __future__ import annotations

import importlib
from typing import Any

from bench.context import Settings
from bench.record import Recorder

MODULES = {
    "artifacts": "bench.artifacts", "pruning": "bench.pruning", "onnxruntime": "bench.ort",
    "overhead": "bench.overhead", "polling": "bench.polling", "throughput": "bench.throughput",
    "honesty": "bench.honesty", "profile": "bench.profiling",
}
# Detail fields worth a column, in this order, when a figure has them.
DETAILS = (
    "fp32_bytes", "int8_bytes", "artifact_p50_ms", "eager_p50_ms", "min_ratio", "sqnr_db",
    "top1_agreement",
    "confident_top1_agreement", "distinct_top1_classes", "top1_accuracy", "macs_ratio",
    "pruned_p50_ms", "original_p50_ms", "pte-int8_p50_ms", "ort-int8_p50_ms", "ort-fp32_p50_ms",
    "eager-fp32_p50_ms", "script_seconds", "service_seconds", "script_engine_seconds",
    "service_engine_seconds", "post_seconds", "p50_ms", "p99_ms", "requests", "errors",
    "conversion_running_at_end", "succeeded", "jobs", "seconds", "reported_p50_ms",
    "independent_p50_ms", "runs", "load_now",
)


def describe(section: str, settings: Settings) -> list[str]:
    """The section module's docstring, as the method paragraph."""
    doc = importlib.import_module(MODULES[section]).__doc__ or ""
    return [*doc.strip().splitlines(), ""]


def table(section: str, recorder: Recorder) -> list[str]:
    figures = [f for f in recorder.figures if f["section"] == section]
    if not figures:
        error = recorder.sections[section].get("error", "no figures")
        return [f"No figures: the section failed ({error}).", ""]
    lines = ["| figure | model | value | unit | goal | details |",
             "| --- | --- | --- | --- | --- | --- |"]
    for figure in figures:
        if isinstance(figure["value"], str) and len(figure["value"]) > 60:
            continue  # long structured values are rendered in prose (e.g. the profile's)
        goal = figure["goal"] or ""
        if goal:
            goal += " (met)" if figure["met"] else " (**missed**)"
        lines.append(
            f"| {figure['name']} | {figure['model'] or ''} | {_value(figure['value'])} | "
            f"{figure['unit']} | {goal} | {_details(figure)} |"
        )
    return [*lines, ""]


def _details(figure: dict[str, Any]) -> str:
    parts = []
    for key in DETAILS:
        if key in figure and figure[key] is not None:
            parts.append(f"{key}={_value(figure[key])}")
    return ", ".join(parts)


def _value(value: Any) -> str:
    from bench.writeup import format_value

    return format_value(value)
