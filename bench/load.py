"""HTTP load on loopback for a bounded time: ``wrk`` when installed, else an asyncio client.

Either way there are ``connections`` keep-alive clients, each sending its next GET as soon as
the previous answer arrives, for ``seconds`` seconds. Only 127.0.0.1 is ever targeted.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench.timing import summarise

logger = logging.getLogger(__name__)


@dataclass
class LoadResult:
    """Throughput and latency of one load window."""

    tool: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    seconds: float


def shutil_which_wrk() -> bool:
    """Whether ``wrk`` is installed (then it generates the load)."""
    return shutil.which("wrk") is not None


def hammer(url: str, connections: int, seconds: float) -> LoadResult:
    """Load ``url`` (which must be on 127.0.0.1) with ``connections`` clients."""
    if urlsplit(url).hostname != "127.0.0.1":
        raise ValueError(f"Load is only ever sent to 127.0.0.1, not to {url}.")
    if shutil_which_wrk():
        return _wrk(url, connections, seconds)
    return _asyncio_load(url, connections, seconds)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _wrk(url: str, connections: int, seconds: float) -> LoadResult:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
               "--timeout", "10s", url]
    text = subprocess.run(command, check=True, capture_output=True, text=True).stdout

    def latency(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
        return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")

    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", text)
    failed = int(errors.group(1)) if errors else 0
    if socket_errors:
        failed += sum(int(g) for g in socket_errors.groups())
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    return LoadResult("wrk 2 threads", rps, latency("50"), latency("99"),
                      int(total.group(1)) if total else 0, failed, seconds)


def _asyncio_load(url: str, connections: int, seconds: float) -> LoadResult:
    processes = 2
    shares = [connections // processes + (i < connections % processes)
              for i in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        parts = pool.starmap(_asyncio_part, [(url, share, seconds) for share in shares])
    latencies = [v for part in parts for v in part[0]]
    errors = sum(part[1] for part in parts)
    stats = summarise(latencies or [float("nan")])
    return LoadResult("asyncio, 2 processes", len(latencies) / seconds, stats.p50_ms,
                      stats.p99_ms, len(latencies), errors, seconds)


def _asyncio_part(url: str, connections: int, seconds: float) -> tuple[list[float], int]:
    return asyncio.run(_clients(url, connections, seconds))


async def _clients(url: str, connections: int, seconds: float) -> tuple[list[float], int]:
    parts = urlsplit(url)
    request = (f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
               "Connection: keep-alive\r\n\r\n").encode()
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    errors = [0]

    async def client() -> None:
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        while time.monotonic() < deadline:
            start = time.perf_counter_ns()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
            await reader.readexactly(length)
            latencies.append((time.perf_counter_ns() - start) / 1e6)
            if not head.startswith(b"HTTP/1.1 2"):
                errors[0] += 1
        writer.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return latencies, errors[0]
