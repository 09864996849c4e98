"""The plain script the service is compared with: the same conversion, in one process::

    python -m bench.script MODEL RECIPE_JSON OUT [--calibration C.npz] [--evaluation E.npz]

It loads the engine, converts and writes the artifacts, as a user would without the service.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Convert one model with the recipe in a JSON file; exit status 0 on success."""
    parser = argparse.ArgumentParser(prog="python -m bench.script")
    parser.add_argument("model", type=Path)
    parser.add_argument("recipe", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--calibration", type=Path)
    parser.add_argument("--evaluation", type=Path)
    args = parser.parse_args(argv)

    from service.schemas import Recipe
    from worker.pipeline.run import convert

    recipe = Recipe.model_validate(json.loads(args.recipe.read_text()))
    convert(args.model, recipe, args.out, calibration_path=args.calibration,
            evaluation_path=args.evaluation)
    return 0


if __name__ == "__main__":
    sys.exit(main())
