"""Time one artifact file in a fresh process and print the result as one JSON line::

    python -m bench.timeit executorch model.pte --shape 1,3,224,224 --runs 30 --warmup 5

The honesty check runs this so that nothing of the converting process (heap, caches, thread
pools) is shared with the figure it checks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, time the file and print its latency in milliseconds."""
    parser = argparse.ArgumentParser(prog="python -m bench.timeit")
    parser.add_argument("runtime", choices=("executorch", "lite", "onnxruntime"))
    parser.add_argument("path", type=Path)
    parser.add_argument("--shape", required=True, help="input shape, e.g. 1,3,224,224")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--inputs", type=Path, help=".npz whose first batch is timed")
    args = parser.parse_args(argv)

    import torch

    from bench import timing

    timing.set_threads(args.threads)
    shape = [int(d) for d in args.shape.split(",")]
    forward = timing.load(args.runtime, args.path, args.threads)
    if args.inputs is not None:
        import numpy as np

        with np.load(args.inputs) as data:
            sample = torch.from_numpy(np.ascontiguousarray(data["inputs"][: shape[0]]))
    else:
        sample = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    result = timing.time_one(forward, sample, args.runs, args.warmup)
    sys.stdout.write(json.dumps(result.as_dict()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
