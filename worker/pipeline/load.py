"""Stage 1: recognise an untrusted model file by its contents and load it safely.

Three inputs are accepted: an ExportedProgram (``torch.export.save``), a TorchScript archive
(``torch.jit.save``) and a ``state_dict`` (``torch.save``) for a torchvision architecture the
recipe names. Nothing is unpickled with weights-only mode off: ``torch.export.load`` falls back
to a full unpickle for some payloads, so the loader forces PyTorch's weights-only mode for the
whole process (``TORCH_FORCE_WEIGHTS_ONLY_LOAD``).
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from service.errors import InputMismatch, InvalidModel, ResourceLimit
from service.hashing import file_sha256
from service.schemas import Recipe

logger = logging.getLogger(__name__)

ModelFormat = Literal["exported-program", "torchscript", "torchvision"]

# Declared sizes above this are refused before anything is decompressed (zip bombs).
MAX_UNCOMPRESSED_BYTES = 4 * 1024**3
MAX_ARCHIVE_ENTRIES = 100_000
DEFAULT_IMAGE_SHAPE = [1, 3, 224, 224]


@dataclass
class LoadedModel:
    """A model ready for the later stages, with what is known about its input."""

    module: nn.Module
    format: ModelFormat
    input_shape: list[int]
    sha256: str
    file_bytes: int
    architecture: str | None = None

    @property
    def example_input(self) -> torch.Tensor:
        return torch.zeros(self.input_shape)

    @property
    def has_module_structure(self) -> bool:
        return self.format == "torchvision"


def force_weights_only_unpickling() -> None:
    """Make every ``torch.load`` in this process refuse arbitrary Python objects."""
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)


def load_model(path: Path, recipe: Recipe) -> LoadedModel:
    """Load ``path`` according to its contents and check it runs on the recipe's input shape."""
    force_weights_only_unpickling()
    names = _archive_names(path)
    model_format = detect_format(names, recipe)

    if model_format == "exported-program":
        module, file_shape = _load_exported_program(path)
    elif model_format == "torchscript":
        module, file_shape = _load_torchscript(path), None
    else:
        module, file_shape = _load_torchvision(path, recipe), None

    input_shape = _resolve_input_shape(model_format, recipe, file_shape)
    _check_runs(module, input_shape)
    loaded = LoadedModel(
        module=module,
        format=model_format,
        input_shape=input_shape,
        sha256=file_sha256(path),
        file_bytes=path.stat().st_size,
        architecture=recipe.architecture,
    )
    logger.info("loaded %s model, input %s", model_format, input_shape)
    return loaded


def _archive_names(path: Path) -> list[str]:
    """The entry names of a model zip, after checking it is whole and not a bomb."""
    if not zipfile.is_zipfile(path):
        raise InvalidModel(
            "The model file is not a PyTorch archive (no zip structure found; it may be "
            "truncated, or not a model at all). Upload a file written by torch.export.save, "
            "torch.jit.save, or torch.save(model.state_dict()).",
            field="model",
        )
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidModel(f"The model archive is corrupt: {exc}.", field="model") from exc

    declared = sum(info.file_size for info in infos)
    if len(infos) > MAX_ARCHIVE_ENTRIES or declared > MAX_UNCOMPRESSED_BYTES:
        raise ResourceLimit(
            f"The model archive declares {len(infos)} entries and {declared} bytes "
            f"uncompressed; the limits are {MAX_ARCHIVE_ENTRIES} entries and "
            f"{MAX_UNCOMPRESSED_BYTES} bytes.",
            field="model",
        )
    return [info.filename for info in infos]


def detect_format(names: list[str], recipe: Recipe) -> ModelFormat:
    """Tell the three accepted layouts apart from the archive's entry names."""
    relative = {name.split("/", 1)[1] for name in names if "/" in name}

    if "archive_format" in relative or any(n.startswith("models/") for n in relative):
        model_format: ModelFormat = "exported-program"
    elif any(n.startswith("code/") for n in relative) or "constants.pkl" in relative:
        model_format = "torchscript"
    elif "data.pkl" in relative:
        if recipe.architecture is None:
            raise InvalidModel(
                "The model file is a torch.save pickle (a state_dict or a whole module), "
                "which cannot be loaded without code. Name its torchvision architecture in "
                "recipe.architecture, or upload torch.export.save / torch.jit.save output.",
                field="recipe.architecture",
            )
        return "torchvision"
    else:
        raise InvalidModel(
            "The model file is a zip archive, but not one PyTorch wrote (no ExportedProgram, "
            "TorchScript or torch.save layout inside).",
            field="model",
        )

    if recipe.architecture is not None:
        raise InvalidModel(
            f"recipe.architecture is {recipe.architecture!r}, but the file is a {model_format} "
            "that carries its own graph; leave architecture empty, or upload a state_dict.",
            field="recipe.architecture",
        )
    return model_format


def _load_exported_program(path: Path) -> tuple[nn.Module, list[int]]:
    try:
        program = torch.export.load(str(path))
    except Exception as exc:
        raise InvalidModel(
            f"The ExportedProgram could not be loaded: {_first_line(exc)}. Files containing "
            "pickled Python objects are refused; export with torch.export.save.",
            field="model",
        ) from exc

    user_inputs = program.graph_signature.user_inputs
    if len(user_inputs) != 1:
        raise InvalidModel(
            f"The ExportedProgram takes {len(user_inputs)} inputs; mobileconv converts models "
            "with exactly one tensor input.",
            field="model",
        )
    placeholder = next(n for n in program.graph.nodes if n.name == user_inputs[0])
    shape = [int(d) for d in placeholder.meta["val"].shape]
    return program.module(), shape


def _load_torchscript(path: Path) -> nn.Module:
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:
        raise InvalidModel(
            f"The TorchScript archive could not be loaded: {_first_line(exc)}.", field="model"
        ) from exc


def _load_torchvision(path: Path, recipe: Recipe) -> nn.Module:
    import torchvision

    builder = getattr(torchvision.models, recipe.architecture)
    module = builder(weights=None, num_classes=recipe.num_classes)
    try:
        state_dict = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InvalidModel(
            "The state_dict could not be read safely: it holds Python objects other than "
            f"tensors ({_first_line(exc)}). Save it with torch.save(model.state_dict()).",
            field="model",
        ) from exc

    if not isinstance(state_dict, dict):
        raise InvalidModel(
            f"The file holds a {type(state_dict).__name__}, not a state_dict; save it with "
            "torch.save(model.state_dict()).",
            field="model",
        )
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise InvalidModel(
            f"The state_dict does not fit torchvision's {recipe.architecture} with "
            f"num_classes={recipe.num_classes}: {_first_line(exc)}",
            field="recipe.architecture",
        ) from exc
    return module.eval()


def _resolve_input_shape(
    model_format: ModelFormat, recipe: Recipe, file_shape: list[int] | None
) -> list[int]:
    if file_shape is not None:
        if recipe.input_shape is not None and recipe.input_shape != file_shape:
            raise InputMismatch(
                f"recipe.input_shape is {recipe.input_shape}, but the ExportedProgram was "
                f"exported for {file_shape}; drop input_shape or re-export the model.",
                field="recipe.input_shape",
            )
        return file_shape
    if recipe.input_shape is not None:
        return list(recipe.input_shape)
    if model_format == "torchvision":
        return list(DEFAULT_IMAGE_SHAPE)
    raise InputMismatch(
        "A TorchScript file does not record its input shape; set recipe.input_shape, "
        "e.g. [1, 3, 224, 224].",
        field="recipe.input_shape",
    )


def _check_runs(module: nn.Module, input_shape: list[int]) -> None:
    try:
        with torch.inference_mode():
            output = module(torch.zeros(input_shape))
    except Exception as exc:
        raise InputMismatch(
            f"The model does not run on an input of shape {input_shape}: "
            f"{_first_line(exc)}. Set recipe.input_shape to the shape the model expects.",
            field="recipe.input_shape",
        ) from exc
    if not isinstance(output, torch.Tensor):
        raise InvalidModel(
            f"The model returns a {type(output).__name__}; mobileconv converts models that "
            "return one tensor.",
            field="model",
        )


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    if "Weights only load failed" in text:
        return "it holds pickled Python objects that a weights-only load refuses"
    lines = text.splitlines()
    return lines[0][:300].rstrip(".") if lines else type(exc).__name__
