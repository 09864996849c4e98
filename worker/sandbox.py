"""Run one conversion in a child process with resource limits, and watch it.

The model file is untrusted, so it is opened only in ``python -m worker.child``, started with:

- ``setrlimit`` limits on address space, CPU time, file size and open files;
- an environment reduced to an allow-list (no broker URLs, keys or cloud credentials);
- a private working directory as ``cwd``, ``HOME`` and ``TMPDIR``;
- its own session, so the whole process group can be killed, and a parent-death signal,
  so it dies with the Celery worker process that started it.

The parent reads progress events from a pipe, checks for cancellation every
``poll_seconds``, and enforces the job's wall-clock limit.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import resource
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_ENV_ALLOW = ("PATH", "LANG", "LC_ALL", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VIRTUAL_ENV")
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Limits:
    """Resource limits of the conversion process (bytes and seconds)."""

    memory_bytes: int
    cpu_seconds: int
    file_bytes: int
    open_files: int
    wall_seconds: int


@dataclass(frozen=True)
class Outcome:
    """How the conversion process ended: ``succeeded``, ``failed`` or ``cancelled``."""

    status: str
    code: str = ""
    message: str = ""


@dataclass(frozen=True)
class ChildJob:
    """The files of one conversion, all inside the private working directory."""

    job_id: str
    model: Path
    recipe: Path
    out_dir: Path
    workdir: Path
    calibration: Path | None = None
    evaluation: Path | None = None


def _limit_child(limits: Limits) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass

    return apply


def _child_env(workdir: Path) -> dict[str, str]:
    env = {name: os.environ[name] for name in _ENV_ALLOW if name in os.environ}
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    env.update(
        HOME=str(workdir),
        TMPDIR=str(tmp),
        PYTHONPATH=str(PROJECT_ROOT),
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def run_child(
    job: ChildJob,
    limits: Limits,
    *,
    on_stage: Callable[[str, float], None],
    should_stop: Callable[[], bool],
    poll_seconds: float = 1.0,
    child_module: str = "worker.child",
) -> Outcome:
    """Run the conversion of ``job`` and return how it ended.

    Args:
        job: the inputs and output directory.
        limits: resource limits of the child.
        on_stage: called with (stage, progress) for every progress event.
        should_stop: polled every ``poll_seconds``; ``True`` kills the child (cancellation).
        poll_seconds: cancellation polling interval in seconds.
        child_module: the module run with ``python -m`` (tests substitute a stand-in).
    """
    command = [
        sys.executable, "-m", child_module,
        "--job-id", job.job_id, "--model", str(job.model), "--recipe", str(job.recipe),
        "--out", str(job.out_dir), "--memory-limit", str(limits.memory_bytes),
    ]  # fmt: skip
    for flag, path in (("--calibration", job.calibration), ("--evaluation", job.evaluation)):
        if path is not None:
            command += [flag, str(path)]
    read_fd, write_fd = os.pipe()
    command += ["--progress-fd", str(write_fd)]
    log_path = job.workdir / "child.log"

    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=job.workdir,
            env=_child_env(job.workdir),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
            preexec_fn=_limit_child(limits),
            start_new_session=True,
        )
    os.close(write_fd)
    logger.info("Job %s: conversion process %d started.", job.job_id, process.pid)
    try:
        return _watch(job, limits, process, read_fd, log_path, on_stage, should_stop, poll_seconds)
    finally:
        os.close(read_fd)
        _kill(process)


def _watch(
    job: ChildJob,
    limits: Limits,
    process: subprocess.Popen[bytes],
    read_fd: int,
    log_path: Path,
    on_stage: Callable[[str, float], None],
    should_stop: Callable[[], bool],
    poll_seconds: float,
) -> Outcome:
    deadline = time.monotonic() + limits.wall_seconds
    selector = selectors.DefaultSelector()
    selector.register(read_fd, selectors.EVENT_READ)
    buffer = b""
    error: Outcome | None = None
    done = False
    next_check = time.monotonic() + poll_seconds
    open_pipe = True

    while True:
        if open_pipe and selector.select(timeout=min(poll_seconds, 0.5)):
            chunk = os.read(read_fd, 65536)
            if not chunk:
                open_pipe = False
                selector.unregister(read_fd)
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                event = _decode(line)
                if event.get("event") == "stage":
                    on_stage(str(event.get("stage")), float(event.get("progress", 0.0)))
                elif event.get("event") == "error":
                    error = Outcome("failed", str(event.get("code")), str(event.get("message")))
                elif event.get("event") == "done":
                    done = True
        elif not open_pipe:
            time.sleep(0.05)
        if process.poll() is not None and not open_pipe:
            break
        now = time.monotonic()
        if now >= next_check:
            next_check = now + poll_seconds
            if should_stop():
                logger.info("Job %s: cancelled; stopping the conversion process.", job.job_id)
                _kill(process)
                return Outcome("cancelled")
        if now >= deadline:
            logger.warning("Job %s: wall-clock limit reached; killing it.", job.job_id)
            _kill(process)
            return Outcome(
                "failed",
                "resource-limit",
                f"The conversion exceeded the job time limit of {limits.wall_seconds} s "
                "(MOBILECONV_JOB_TIMEOUT_SECONDS) and was stopped.",
            )

    return _conclude(job, limits, process.wait(), error, done, log_path)


def _conclude(
    job: ChildJob,
    limits: Limits,
    returncode: int,
    error: Outcome | None,
    done: bool,
    log_path: Path,
) -> Outcome:
    if returncode == 0 and done:
        return Outcome("succeeded")
    if error is not None:
        return error
    if returncode < 0:
        return Outcome("failed", "resource-limit", _signal_message(-returncode, limits))
    tail = log_path.read_text(errors="replace")[-2000:]
    logger.error(
        "Job %s: conversion process exited %d; log tail:\n%s", job.job_id, returncode, tail
    )
    return Outcome(
        "failed",
        "internal",
        f"The conversion process exited with status {returncode} without a result. "
        "This is a bug in mobileconv; the worker log has the details.",
    )


def _signal_message(signum: int, limits: Limits) -> str:
    if signum == signal.SIGXCPU:
        return (
            f"The conversion used more than its CPU-time limit of {limits.cpu_seconds} s "
            "(MOBILECONV_CHILD_CPU_SECONDS) and was stopped."
        )
    if signum == signal.SIGXFSZ:
        return (
            f"The conversion tried to write a file larger than the {limits.file_bytes}-byte "
            "limit (MOBILECONV_CHILD_FILE_BYTES) and was stopped."
        )
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    return (
        f"The conversion process was killed by {name}; the most likely cause is memory: it "
        f"may use {limits.memory_bytes / 1024**3:.1f} GiB of address space "
        "(MOBILECONV_CHILD_MEMORY_BYTES) within what the host can give."
    )


def _decode(line: bytes) -> dict[str, object]:
    try:
        event = json.loads(line)
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()
