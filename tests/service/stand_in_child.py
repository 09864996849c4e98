"""A stand-in for ``worker.child`` used only by the sandbox tests: it speaks the same progress
protocol without the engine, and misbehaves on request (``--recipe`` names the behaviour)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    for flag in ("--job-id", "--model", "--recipe", "--out", "--memory-limit"):
        parser.add_argument(flag)
    parser.add_argument("--progress-fd", type=int)
    args = parser.parse_args()
    out = os.fdopen(args.progress_fd, "w", buffering=1)
    out.write(json.dumps({"event": "stage", "stage": "loading", "progress": 0.1}) + "\n")
    behaviour = args.recipe
    if behaviour == "spin":
        while True:
            pass
    if behaviour == "sleep":
        time.sleep(60)
    if behaviour == "fail":
        out.write(json.dumps({"event": "error", "code": "invalid-model", "message": "No."}) + "\n")
        return 1
    out.write(json.dumps({"event": "done"}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
