"""Render the figures of a run as ``docs/BENCHMARKS.md``: conditions, goals, tables, misses.

Every number in the document comes from the run's figures; the prose around them only says
what each table measures and, where a goal is missed, what the figures show about why.
"""

from __future__ import annotations

import logging
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import explain
from bench.context import Settings
from bench.record import Recorder

logger = logging.getLogger(__name__)

EXTRA_LIBRARIES = ("onnxruntime", "onnx", "onnxscript", "flask", "gunicorn", "celery", "redis")
TITLES = {
    "artifacts": "1. Artifacts against the original",
    "pruning": "2. Structured pruning: MACs against latency",
    "onnxruntime": "3. Against ONNX Runtime static int8",
    "overhead": "4. Service overhead",
    "polling": "5. Polling under load",
    "throughput": "6. Throughput of small jobs",
    "honesty": "7. Honesty of the report's latency",
    "profile": "8. Profile of the biggest loss",
}


def write(path: Path, recorder: Recorder, settings: Settings, *, full: bool) -> None:
    """Write the Markdown document for ``recorder``'s figures to ``path``."""
    from bench import sections_doc

    lines = [
        "# Benchmarks",
        "",
        "<!-- Written by `make bench` (`.venv/bin/python -m bench`); do not edit by hand. -->",
        "",
        f"Run finished {time.strftime('%Y-%m-%d %H:%M %Z')}"
        + (" (quick smoke run: 64x64 inputs, short windows; not for decisions)."
           if settings.quick else "."),
        "Every figure below is also a JSON line in "
        + ", ".join(f"`{_relative(p)}`" for p in recorder.sources or [recorder.path]) + ".",
        "Reproduce everything with `make bench`; each section's command is given under it.",
        "",
    ]
    lines += _conditions(recorder, settings)
    lines += _goals(recorder)
    for section in recorder.sections:
        lines += [f"## {TITLES.get(section, section)}", ""]
        lines += sections_doc.describe(section, settings)
        lines += sections_doc.table(section, recorder)
        lines += explain.misses(section, recorder)
        if section == "profile":
            lines += explain.biggest_loss(recorder)
        lines += [f"Reproduce: `{recorder.sections[section]['command']}`", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n")


def _relative(path: Path) -> str:
    from bench.context import ROOT

    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _conditions(recorder: Recorder, settings: Settings) -> list[str]:
    from bench.load import shutil_which_wrk
    from worker.pipeline.host import host_info

    host = host_info()
    libraries = dict(host.libraries)
    for name in EXTRA_LIBRARIES:
        try:
            libraries[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libraries[name] = "not installed"
    lines = [
        "## Conditions",
        "",
        f"- CPU: {host.cpu_model}, {host.logical_cpus} logical CPUs, SIMD flags: "
        f"{', '.join(host.cpu_flags) or 'none found'} (no VNNI means no fast int8 dot products)",
        f"- Platform: {host.platform}, Python {host.python}",
        f"- Code: {_git_state()}",
        "- Libraries: " + ", ".join(f"{k} {v}" for k, v in sorted(libraries.items())),
        "- Threads: every latency figure uses 1 intra-op thread (ATen, lite interpreter, "
        "ExecuTorch's XNNPACK pool, ONNX Runtime); conversions use the default threads.",
        f"- Inputs: {settings.image_size}x{settings.image_size} images, batch 1, for resnet18 "
        "and mobilenet_v2; batches of 8 16x16 digits for the digits CNN. "
        f"{settings.samples} calibration and {settings.samples} held-out samples per model.",
        f"- Latency: p50 of {settings.runs} timed calls after {settings.warmup} warm-up calls, "
        "candidates interleaved one call each in turn, so load from other processes hits all "
        "alike; `min_ratio` is the ratio of the fastest calls, the least disturbed.",
        f"- HTTP load: {'wrk (2 threads)' if shutil_which_wrk() else 'asyncio client'}, "
        f"64 connections, {settings.poll_seconds:g} s windows, loopback only.",
        "- Shared machine: two other engineers ran test suites on the same 2 cores, so absolute "
        "times are noisy; ratios were timed interleaved. The 1-minute load average before and "
        "after each section:",
        "",
        "| section | load before | load after | seconds | outcome |",
        "| --- | --- | --- | --- | --- |",
    ]
    for section, info in recorder.sections.items():
        outcome = f"failed: {info['error']}" if info.get("error") else "ran"
        lines.append(f"| {section} | {info['load_before']} | {info.get('load_after', '')} | "
                     f"{info.get('seconds', '')} | {outcome} |")
    return [*lines, ""]


def _git_state() -> str:
    """The commit measured, and whether the engine or service had uncommitted changes."""
    import subprocess

    from bench.context import ROOT

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return result.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "worker", "service")
    note = ("with uncommitted changes in worker/ or service/ when the run ended (other people "
            "work in this tree)" if dirty else "worker/ and service/ as committed")
    return f"commit {commit}, {note}"


def _goals(recorder: Recorder) -> list[str]:
    lines = ["## Goals", "", "| section | figure | model | value | goal | met |",
             "| --- | --- | --- | --- | --- | --- |"]
    for figure in recorder.figures:
        if figure.get("goal") is None:
            continue
        lines.append(
            f"| {figure['section']} | {figure['name']} | {figure['model'] or ''} | "
            f"{format_value(figure['value'])} {figure['unit']} | {figure['goal']} | "
            f"{'yes' if figure['met'] else '**no**'} |"
        )
    return [*lines, ""]


def format_value(value: Any) -> str:
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3f}"
    return str(value)
