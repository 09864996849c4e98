"""The service's own limits on a recipe, checked in the API before anything is queued.

The recipe schema (``service.schemas``) bounds every value to what the engine can do at all;
these limits are the operator's, configurable per deployment, and tighter: how large an input
a job may ask for, how many calibration samples and benchmark runs it may spend. A recipe over
one is a 422 naming the field and the setting that sets the limit, so a client learns what
to change without reading the server's configuration.

Limits that only the worker can apply (memory, CPU time, file size, wall-clock time of a
conversion) live in ``worker.sandbox``; the upload size is Werkzeug's ``MAX_CONTENT_LENGTH``.
"""

from __future__ import annotations

import math

from service.errors import InvalidRecipe
from service.schemas import Recipe
from service.settings import Settings

# The shape torchvision architectures are converted at when the recipe gives none.
_DEFAULT_SHAPE = (1, 3, 224, 224)


def check_recipe_limits(recipe: Recipe, settings: Settings) -> None:
    """Refuse a recipe that asks for more than this deployment allows.

    Raises:
        InvalidRecipe: a value is over its limit; ``field`` names it.
    """
    shape = list(recipe.input_shape or _DEFAULT_SHAPE)
    largest = max(shape)
    if largest > settings.max_input_dimension:
        _refuse(
            "recipe.input_shape",
            f"a dimension is {largest}",
            f"at most {settings.max_input_dimension} per dimension",
            "MOBILECONV_MAX_INPUT_DIMENSION",
        )
    elements = math.prod(shape)
    if elements > settings.max_input_elements:
        _refuse(
            "recipe.input_shape",
            f"the shape {shape} has {elements} elements",
            f"at most {settings.max_input_elements}",
            "MOBILECONV_MAX_INPUT_ELEMENTS",
        )
    checks = (
        (
            "recipe.quantization.calibration_samples",
            recipe.quantization.calibration_samples,
            settings.max_calibration_samples,
            "MOBILECONV_MAX_CALIBRATION_SAMPLES",
        ),
        (
            "recipe.benchmark.eval_samples",
            recipe.benchmark.eval_samples,
            settings.max_eval_samples,
            "MOBILECONV_MAX_EVAL_SAMPLES",
        ),
        (
            "recipe.benchmark.runs",
            recipe.benchmark.runs + recipe.benchmark.warmup,
            settings.max_benchmark_runs,
            "MOBILECONV_MAX_BENCHMARK_RUNS",
        ),
        (
            "recipe.benchmark.threads",
            recipe.benchmark.threads,
            settings.max_benchmark_threads,
            "MOBILECONV_MAX_BENCHMARK_THREADS",
        ),
    )
    for field, value, limit, setting in checks:
        if value > limit:
            what = "runs plus warmup" if field == "recipe.benchmark.runs" else "the value"
            _refuse(field, f"{what} is {value}", f"at most {limit}", setting)


def _refuse(field: str, found: str, allowed: str, setting: str) -> None:
    raise InvalidRecipe(
        f"{field} is over this service's limit: {found}; {allowed} is allowed ({setting}).",
        field=field,
    )
