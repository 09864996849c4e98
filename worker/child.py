"""The conversion process: runs the engine on one job inside the limits the sandbox set, and
reports to its parent through JSON lines on the file descriptor ``--progress-fd``.

Events, one JSON object per line::

    {"event": "stage", "stage": "quantizing", "progress": 0.4}
    {"event": "done"}
    {"event": "error", "code": "invalid-model", "message": "..."}

Exit status 0 means the artifacts and ``report.json`` are in ``--out``; 1 a conversion error
(reported as an event); 2 a bug in the engine (reported as ``internal``).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

logger = logging.getLogger("worker.child")

_MEMORY_MARKERS = ("can't allocate memory", "std::bad_alloc", "out of memory")
# Python ignores SIGXFSZ, so a write over RLIMIT_FSIZE fails with EFBIG instead of killing
# the process; libraries that write in C++ report it in their own words.
_FILE_SIZE_MARKERS = ("file too large", "efbig")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker.child")
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--recipe", type=Path, required=True, help="recipe JSON file")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--calibration", type=Path)
    parser.add_argument("--evaluation", type=Path)
    parser.add_argument("--progress-fd", type=int, required=True)
    parser.add_argument(
        "--memory-limit", type=int, default=0, help="bytes (unused: the rlimit is read)"
    )
    return parser.parse_args(argv)


def _emitter(stream: IO[str]) -> Callable[..., None]:
    def emit(**event: object) -> None:
        stream.write(json.dumps(event) + "\n")
        stream.flush()

    return emit


def main(argv: list[str] | None = None) -> int:
    """Run one conversion; see the module docstring for the protocol."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    emit = _emitter(os.fdopen(args.progress_fd, "w", buffering=1))

    from service.errors import ConversionError
    from service.schemas import Recipe

    try:
        recipe = Recipe.model_validate_json(args.recipe.read_text())
        from worker.pipeline.run import convert

        convert(
            args.model,
            recipe,
            args.out,
            calibration_path=args.calibration,
            evaluation_path=args.evaluation,
            on_stage=lambda stage, progress: emit(
                event="stage", stage=stage, progress=float(progress)
            ),
        )
    except ConversionError as exc:
        limit = _limit_hit(exc)
        if limit is not None:
            emit(event="error", code="resource-limit", message=limit)
            return 1
        logger.warning("Job %s: conversion failed (%s): %s", args.job_id, exc.code, exc.message)
        emit(event="error", code=exc.code, message=exc.message)
        return 1
    except Exception as exc:
        limit = _limit_hit(exc)
        if limit is not None:
            logger.warning("Job %s: stopped by a resource limit: %s", args.job_id, limit)
            emit(event="error", code="resource-limit", message=limit)
            return 1
        logger.exception("Job %s: the engine failed unexpectedly.", args.job_id)
        emit(
            event="error",
            code="internal",
            message=f"The conversion failed unexpectedly ({type(exc).__name__}: {exc}). "
            "This is a bug in mobileconv; the worker log has the traceback.",
        )
        return 2
    emit(event="done")
    return 0


def _limit_hit(exc: BaseException) -> str | None:
    """Return a message naming the limit when ``exc`` (or what caused it) is the memory or
    file-size limit at work, else ``None``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).lower()
        if isinstance(current, MemoryError) or any(m in text for m in _MEMORY_MARKERS):
            return _memory_message()
        too_large = isinstance(current, OSError) and current.errno == errno.EFBIG
        if too_large or any(m in text for m in _FILE_SIZE_MARKERS):
            return _file_size_message()
        current = current.__cause__ or current.__context__
    return None


def _memory_message() -> str:
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    size = f"the {limit / 1024**3:.1f} GiB" if limit != resource.RLIM_INFINITY else "its"
    return (
        f"The conversion ran out of memory: it hit {size} address-space limit "
        "(MOBILECONV_CHILD_MEMORY_BYTES). Use a smaller model or input_shape, or raise the "
        "limit."
    )


def _file_size_message() -> str:
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    size = f"the {limit}-byte" if limit != resource.RLIM_INFINITY else "its"
    return (
        f"The conversion tried to write a file larger than {size} file-size limit "
        "(MOBILECONV_CHILD_FILE_BYTES) and was stopped. Use a smaller model, or raise the "
        "limit."
    )


if __name__ == "__main__":
    sys.exit(main())
