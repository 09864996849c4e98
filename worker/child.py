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
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

logger = logging.getLogger("worker.child")

_MEMORY_MARKERS = ("can't allocate memory", "std::bad_alloc", "out of memory")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worker.child")
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--recipe", type=Path, required=True, help="recipe JSON file")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--calibration", type=Path)
    parser.add_argument("--evaluation", type=Path)
    parser.add_argument("--progress-fd", type=int, required=True)
    parser.add_argument("--memory-limit", type=int, default=0, help="bytes, for messages")
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
        logger.warning("Job %s: conversion failed (%s): %s", args.job_id, exc.code, exc.message)
        emit(event="error", code=exc.code, message=exc.message)
        return 1
    except MemoryError:
        emit(event="error", code="resource-limit", message=_memory_message(args.memory_limit))
        return 1
    except Exception as exc:
        if any(marker in str(exc) for marker in _MEMORY_MARKERS):
            emit(event="error", code="resource-limit", message=_memory_message(args.memory_limit))
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


def _memory_message(limit: int) -> str:
    size = f"{limit / 1024**3:.1f} GiB" if limit else "its"
    return (
        f"The conversion ran out of memory: it hit the {size} address-space limit "
        "(MOBILECONV_CHILD_MEMORY_BYTES). Use a smaller input_shape or raise the limit."
    )


if __name__ == "__main__":
    sys.exit(main())
