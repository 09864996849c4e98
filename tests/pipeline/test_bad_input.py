"""Inputs the engine must refuse with a message that says what is wrong and what would fix it."""

from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from service.errors import (
    ConversionError,
    InputMismatch,
    InvalidData,
    InvalidModel,
    ResourceLimit,
    UnsupportedRecipe,
)
from service.schemas import Recipe
from tests.conftest import FAST_BENCHMARK
from worker.pipeline.run import convert

MARKER_NAME = "payload-ran"


class Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def convert_expecting(error: type[ConversionError], model: Path, tmp_path: Path, **kwargs):
    recipe = Recipe.model_validate({"benchmark": FAST_BENCHMARK, **kwargs.pop("recipe", {})})
    with pytest.raises(error) as caught:
        convert(model, recipe, tmp_path / "out", **kwargs)
    message = caught.value.message
    assert message.endswith((".", ")")) and len(message) > 40
    return caught.value


def test_truncated_archive(digits_files, tmp_path):
    truncated = tmp_path / "truncated.pt2"
    data = digits_files["pt2"].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])

    error = convert_expecting(InvalidModel, truncated, tmp_path)
    assert "truncated" in error.message and error.field == "model"


def test_zip_that_is_not_a_model(tmp_path):
    path = tmp_path / "notes.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes/readme.txt", "hello")

    error = convert_expecting(InvalidModel, path, tmp_path)
    assert "not one PyTorch wrote" in error.message


@pytest.mark.parametrize("container", ["state_dict", "raw-pickle", "pt2-sample-inputs"])
def test_pickle_payload_never_runs(container, digits_files, tmp_path):
    marker = tmp_path / MARKER_NAME
    path = tmp_path / "evil.pt"
    recipe = {}
    if container == "state_dict":
        torch.save({"conv1.weight": Payload(marker)}, path)
        recipe = {"architecture": "resnet18"}
    elif container == "raw-pickle":
        path.write_bytes(pickle.dumps(Payload(marker)))
    else:
        _replace_entry(digits_files["pt2"], path, "data/sample_inputs/", Payload(marker))

    convert_expecting(InvalidModel, path, tmp_path, recipe=recipe)
    assert not marker.exists()


def _replace_entry(source: Path, target: Path, name_part: str, payload: object) -> None:
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as rewritten:
        for info in original.infolist():
            data = original.read(info)
            if name_part in info.filename:
                buffer_path = target.with_suffix(".payload")
                torch.save(payload, buffer_path)
                data = buffer_path.read_bytes()
            rewritten.writestr(info, data)


def test_archive_declaring_absurd_sizes_is_refused_unopened(digits_files, tmp_path):
    bomb = tmp_path / "bomb.pt2"
    data = bytearray(digits_files["pt2"].read_bytes())
    offset = data.find(b"PK\x01\x02")
    while offset != -1:
        struct.pack_into("<I", data, offset + 24, 0xFFFF0000)
        offset = data.find(b"PK\x01\x02", offset + 4)
    bomb.write_bytes(bytes(data))

    error = convert_expecting(ResourceLimit, bomb, tmp_path)
    assert "limits are" in error.message


def test_structured_pruning_of_torchscript_is_refused(digits_files, tmp_path):
    recipe = {"input_shape": [8, 1, 16, 16], "pruning": {"method": "channel", "amount": 0.3}}
    error = convert_expecting(UnsupportedRecipe, digits_files["torchscript"], tmp_path,
                              recipe=recipe)
    assert "module structure" in error.message and error.field == "pruning.method"


def test_input_shape_that_does_not_fit(digits_files, tmp_path):
    error = convert_expecting(
        InputMismatch, digits_files["torchscript"], tmp_path,
        recipe={"input_shape": [1, 3, 224, 224]},
    )
    assert "[1, 3, 224, 224]" in error.message and error.field == "recipe.input_shape"


def test_torchscript_without_input_shape(digits_files, tmp_path):
    error = convert_expecting(InputMismatch, digits_files["torchscript"], tmp_path)
    assert "set recipe.input_shape" in error.message


@pytest.mark.parametrize(
    ("array", "phrase"),
    [
        (np.zeros((16, 3, 16, 16), np.float32), "[1, 16, 16]"),
        (np.zeros((16, 1, 16, 16), np.int64), "float32"),
        (np.array([{"a": 1}] * 16, dtype=object), "pickled"),
    ],
    ids=["wrong-shape", "wrong-dtype", "pickled-objects"],
)
def test_bad_calibration_data(array, phrase, digits_files, tmp_path):
    path = tmp_path / "calibration.npy"
    np.save(path, array, allow_pickle=True)

    error = convert_expecting(InvalidData, digits_files["pt2"], tmp_path, calibration_path=path)
    assert phrase in error.message and error.field == "calibration"


@pytest.mark.parametrize(
    ("recipe", "location"),
    [
        ({"pruning": {"method": "magnitude", "amount": 0.99}}, ("pruning", "amount")),
        ({"pruning": {"method": "magnitude", "amount": -0.1}}, ("pruning", "amount")),
        ({"targets": ["apk"]}, ("targets", 0)),
        ({"input_shape": [1, 0, 4]}, ("input_shape",)),
        ({"quantisation": {}}, ("quantisation",)),
    ],
)
def test_recipe_values_out_of_range_name_their_field(recipe, location):
    with pytest.raises(ValidationError) as caught:
        Recipe.model_validate(recipe)
    assert caught.value.errors()[0]["loc"] == location
