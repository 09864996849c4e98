"""Stage 5: load each artifact in the runtime that will run it and measure it.

Every runtime runs in this process at the same intra-op thread count: eager PyTorch and the
lite interpreter through ``torch.set_num_threads``, ExecuTorch's XNNPACK through its own
thread pool. Peak memory is the kernel's high-water mark of this process's resident set
(``VmHWM``), reset before each measurement through ``/proc/self/clear_refs``.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from service.schemas import BenchmarkConfig, LatencyStats, Measurement, MemoryStats

from .fidelity import compare

logger = logging.getLogger(__name__)

Forward = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class EvalSet:
    """Held-out batches, their labels, and the original model's outputs on them."""

    batches: list[torch.Tensor]
    labels: torch.Tensor | None
    reference: torch.Tensor | None = None


def eager_forward(module: nn.Module) -> Forward:
    def forward(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(batch)

    return forward


def lite_forward(path: Path) -> Forward:
    from torch.jit.mobile import _load_for_lite_interpreter

    lite = _load_for_lite_interpreter(str(path))

    def forward(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return lite(batch)

    return forward


def executorch_forward(path: Path) -> Forward:
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(path).load_method("forward")

    def forward(batch: torch.Tensor) -> torch.Tensor:
        return method.execute((batch,))[0]

    return forward


def set_threads(threads: int) -> int:
    """Use ``threads`` in ATen and in ExecuTorch's pool; returns the count ExecuTorch reports."""
    from executorch.extension.pybindings import portable_lib

    torch.set_num_threads(threads)
    portable_lib._unsafe_reset_threadpool(threads)
    return int(portable_lib._threadpool_get_thread_count())


def measure(
    runtime: str,
    load: Callable[[], Forward],
    evaluation: EvalSet,
    config: BenchmarkConfig,
) -> tuple[Measurement, torch.Tensor]:
    """Load with ``load``, time it, and compare it with the reference; returns its outputs."""
    threads = set_threads(config.threads)
    rss_before = _reset_peak_rss()

    forward = load()
    sample = evaluation.batches[0]
    for _ in range(config.warmup):
        forward(sample)
    timings = []
    for _ in range(config.runs):
        start = time.perf_counter_ns()
        forward(sample)
        timings.append((time.perf_counter_ns() - start) / 1e6)
    outputs = torch.cat([forward(batch).detach().clone() for batch in evaluation.batches])

    peak = _read_status_kib("VmHWM") * 1024
    memory = MemoryStats(peak_rss_increase_bytes=max(0, peak - rss_before), peak_rss_bytes=peak)
    fidelity = None
    if evaluation.reference is not None:
        fidelity = compare(evaluation.reference, outputs, evaluation.labels)
    latency = latency_stats(timings, config.warmup, threads)
    logger.info("%s: p50 %.3f ms over %d runs, %d threads", runtime, latency.p50_ms, len(timings),
                threads)
    return Measurement(runtime=runtime, latency=latency, memory=memory, fidelity=fidelity), outputs


def latency_stats(timings_ms: list[float], warmup: int, threads: int) -> LatencyStats:
    ordered = sorted(timings_ms)
    return LatencyStats(
        p50_ms=_percentile(ordered, 50),
        p90_ms=_percentile(ordered, 90),
        p99_ms=_percentile(ordered, 99),
        mean_ms=statistics.fmean(ordered),
        runs=len(ordered),
        warmup=warmup,
        threads=threads,
    )


def _percentile(ordered: list[float], pct: float) -> float:
    """Linear interpolation between closest ranks."""
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _reset_peak_rss() -> int:
    """Reset this process's VmHWM to its current RSS (Linux 4.0+); returns that RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        logger.warning("cannot reset the peak RSS; peak memory includes earlier stages")
    return _read_status_kib("VmRSS") * 1024


def _read_status_kib(key: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0
