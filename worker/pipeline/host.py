"""Facts about the measuring host that a latency figure means nothing without."""

from __future__ import annotations

import os
import platform
from importlib import metadata

from service.schemas import HostInfo

RELEVANT_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni",
                  "amx_int8", "asimd", "asimddp", "i8mm")
LIBRARIES = ("torch", "torchvision", "executorch", "torchao", "torch-pruning", "numpy")


def host_info() -> HostInfo:
    model, flags = _cpuinfo()
    return HostInfo(
        cpu_model=model,
        cpu_flags=[flag for flag in RELEVANT_FLAGS if flag in flags],
        logical_cpus=os.cpu_count() or 1,
        platform=platform.platform(),
        python=platform.python_version(),
        libraries={name: _version(name) for name in LIBRARIES},
    )


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key in ("flags", "Features"):
                    flags = set(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return model, flags


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
