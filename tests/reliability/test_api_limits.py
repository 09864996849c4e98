"""The service's configurable limits, enforced by the real API before anything is queued:
each over-limit request is a 4xx naming the field and the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.settings import Settings
from tests.reliability.conftest import LIGHT_RECIPE, MIB, ROOT, Client

OVER_LIMIT = [
    ({"input_shape": [1, 3, 4096, 4096]}, "recipe.input_shape", "MOBILECONV_MAX_INPUT_ELEMENTS"),
    ({"input_shape": [1, 5000]}, "recipe.input_shape", "MOBILECONV_MAX_INPUT_DIMENSION"),
    (
        {"quantization": {"mode": "static", "calibration_samples": 2000}},
        "recipe.quantization.calibration_samples",
        "MOBILECONV_MAX_CALIBRATION_SAMPLES",
    ),
    (
        {"benchmark": {"eval_samples": 2000}},
        "recipe.benchmark.eval_samples",
        "MOBILECONV_MAX_EVAL_SAMPLES",
    ),
    (
        {"benchmark": {"runs": 990, "warmup": 20}},
        "recipe.benchmark.runs",
        "MOBILECONV_MAX_BENCHMARK_RUNS",
    ),
    (
        {"benchmark": {"threads": 16}},
        "recipe.benchmark.threads",
        "MOBILECONV_MAX_BENCHMARK_THREADS",
    ),
]


@pytest.mark.parametrize(("change", "field", "setting"), OVER_LIMIT, ids=lambda v: str(v)[:40])
def test_recipe_over_a_limit_is_422_naming_field_and_setting(
    front: Client, models: dict[str, Path], change: dict[str, Any], field: str, setting: str
) -> None:
    response = front.submit(models["tiny"], {**LIGHT_RECIPE, **change})
    error = response.json()["error"]
    assert (response.status_code, error["code"], error["field"]) == (422, "invalid-recipe", field)
    assert setting in error["message"]


def test_upload_over_the_limit_is_413_naming_it(front: Client) -> None:
    response = front.submit(b"\0" * (MIB + 1), LIGHT_RECIPE)
    error = response.json()["error"]
    assert (response.status_code, error["code"]) == (413, "payload-too-large")
    assert "MOBILECONV_MAX_UPLOAD_BYTES" in error["message"] and str(MIB) in error["message"]


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [
        f"MOBILECONV_{name.upper()}"
        for name in Settings.model_fields
        if f"`MOBILECONV_{name.upper()}`" not in readme
    ]
    assert missing == []
