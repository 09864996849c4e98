"""Independent runners and timers for every runtime the benchmarks compare.

These load artifacts with the runtimes' own public APIs, not with the engine's benchmark code,
so the honesty check compares two separate implementations. Candidates are timed interleaved
(one call of each in turn), so a burst of load from other processes on the shared cores hits
every candidate alike and the ratios stay fair.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

Forward = Callable[["torch.Tensor"], "torch.Tensor"]


@dataclass
class Timing:
    """Latency of one candidate in milliseconds."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    runs: int

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.__dict__.items()}


def set_threads(threads: int) -> None:
    """Give ATen, the lite interpreter and ExecuTorch's XNNPACK pool ``threads`` threads."""
    import torch
    from executorch.extension.pybindings import portable_lib

    torch.set_num_threads(threads)
    portable_lib._unsafe_reset_threadpool(threads)


def eager(module: nn.Module) -> Forward:
    import torch

    def forward(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(batch)

    return forward


def executorch(path: Path) -> Forward:
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).load_method("forward")
    return lambda batch: method.execute([batch])[0]


def lite(path: Path, engine: str = "qnnpack") -> Forward:
    """The lite interpreter on ``path``, with quantized kernels of ``engine``.

    Quantized weights are repacked for the process-wide engine when the file is loaded, so it
    is set first: ``qnnpack`` is what the engine builds ``.ptl`` files for and measures with
    (a fresh process would otherwise use ``x86``/fbgemm kernels, a different runtime).
    """
    import torch
    from torch.jit.mobile import _load_for_lite_interpreter

    torch.backends.quantized.engine = engine
    module = _load_for_lite_interpreter(str(path))

    def forward(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(batch)

    return forward


def onnxruntime(path: Path, threads: int) -> Forward:
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: torch.from_numpy(session.run(None, {name: batch.numpy()})[0])


def load(runtime: str, path: Path, threads: int = 1) -> Forward:
    """A forward function for ``path`` in ``runtime`` (executorch, lite, onnxruntime)."""
    if runtime == "executorch":
        return executorch(path)
    if runtime == "lite":
        return lite(path)
    if runtime == "onnxruntime":
        return onnxruntime(path, threads)
    raise ValueError(f"Unknown runtime {runtime!r}; use executorch, lite or onnxruntime.")


def summarise(samples_ms: list[float]) -> Timing:
    ordered = sorted(samples_ms)

    def pct(p: float) -> float:
        rank = (len(ordered) - 1) * p / 100.0
        low = int(rank)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)

    return Timing(pct(50), pct(90), pct(99), statistics.fmean(ordered), ordered[0], len(ordered))


def time_one(forward: Forward, sample: torch.Tensor, runs: int, warmup: int) -> Timing:
    """Warm up, then time ``runs`` calls one after another."""
    for _ in range(warmup):
        forward(sample)
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        forward(sample)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return summarise(samples)


def interleaved(
    candidates: dict[str, Forward], sample: torch.Tensor, runs: int, warmup: int
) -> dict[str, Timing]:
    """Time ``runs`` calls of every candidate, one call of each in turn (round robin).

    Alternating single calls means a burst of load from other processes lands on every
    candidate alike, which blocks of consecutive calls do not guarantee.
    """
    for forward in candidates.values():
        for _ in range(warmup):
            forward(sample)
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(runs):
        for name, forward in candidates.items():
            start = time.perf_counter_ns()
            forward(sample)
            samples[name].append((time.perf_counter_ns() - start) / 1e6)
    return {name: summarise(values) for name, values in samples.items()}


def outputs(forward: Forward, batches: list[torch.Tensor]) -> torch.Tensor:
    import torch

    return torch.cat([forward(batch).detach().clone() for batch in batches])
