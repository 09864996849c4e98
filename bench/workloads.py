"""The models and data every section shares, built on this machine with nothing downloaded.

- ``resnet18`` and ``mobilenet_v2``: random-init torchvision models whose batch-norm statistics
  are re-estimated on image crops, so activations have a realistic scale and fidelity is not
  degenerate (QUANTIZATION-NOTES: a random mobilenet_v2 otherwise has logits near 6e-9).
- ``digits``: the digits CNN of ``tests.models``, trained in seconds on scikit-learn's digits.

Image data are random resized crops of the two photographs that ship with scikit-learn
(``load_sample_images``), normalised with the ImageNet mean and deviation: real image
statistics, though only two scenes. Calibration, evaluation and batch-norm crops use different
seeds.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

IMAGE_MODELS = ("resnet18", "mobilenet_v2")
ALL_MODELS = ("resnet18", "mobilenet_v2", "digits")
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None]
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None]


@dataclass
class Workload:
    """One model as a file the engine takes, its recipe basics and its data files."""

    name: str
    model_path: Path
    calibration: Path
    evaluation: Path
    input_shape: list[int]
    architecture: str | None

    def recipe(self, **overrides: Any) -> dict[str, Any]:
        """A recipe dict for this model; ``overrides`` replace top-level fields."""
        recipe: dict[str, Any] = {"targets": ["pte", "ptl"]}
        if self.architecture is not None:
            recipe.update(architecture=self.architecture, input_shape=self.input_shape)
        recipe.update(overrides)
        return recipe

    def eval_inputs(self) -> np.ndarray:
        with np.load(self.evaluation) as data:
            return data["inputs"]

    def eval_labels(self) -> np.ndarray | None:
        with np.load(self.evaluation) as data:
            return data["labels"] if "labels" in data.files else None

    def calibration_inputs(self) -> np.ndarray:
        with np.load(self.calibration) as data:
            return data["inputs"]

    def eager_module(self) -> nn.Module:
        """The original float model, loaded the way the engine loads it."""
        import torch

        if self.architecture is None:
            return torch.export.load(str(self.model_path)).module()
        import torchvision

        module = getattr(torchvision.models, self.architecture)(weights=None)
        module.load_state_dict(torch.load(self.model_path, weights_only=True))
        return module.eval()


def image_crops(size: int, count: int, seed: int) -> np.ndarray:
    """``count`` normalised random resized crops (3 x size x size) of scikit-learn's photos."""
    import torch
    from sklearn.datasets import load_sample_images

    photos = [torch.from_numpy(p).permute(2, 0, 1).float() / 255.0
              for p in load_sample_images().images]
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(count):
        photo = photos[int(rng.integers(len(photos)))]
        _, height, width = photo.shape
        side = int(rng.uniform(0.3, 1.0) * min(height, width))
        top = int(rng.integers(0, height - side + 1))
        left = int(rng.integers(0, width - side + 1))
        crop = photo[:, top : top + side, left : left + side][None]
        crop = torch.nn.functional.interpolate(
            crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )[0]
        if rng.random() < 0.5:
            crop = crop.flip(-1)
        crops.append(((crop.numpy() - MEAN) / STD).astype(np.float32))
    return np.stack(crops)


def recalibrate_batchnorm(module: nn.Module, images: np.ndarray, batch: int = 16) -> None:
    """Re-estimate every BatchNorm's running mean and variance on ``images`` (cumulative)."""
    import torch

    for sub in module.modules():
        if isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
            sub.reset_running_stats()
            sub.momentum = None
    module.train()
    with torch.no_grad():
        for start in range(0, len(images), batch):
            module(torch.from_numpy(images[start : start + batch]))
    module.eval()


def build(name: str, root: Path, size: int, samples: int) -> Workload:
    """Write (or reuse) the model file and data files of ``name`` under ``root``."""
    folder = root / f"{name}-{size}-{samples}"
    meta = folder / "workload.json"
    if meta.exists():
        return _from_meta(json.loads(meta.read_text()))
    folder.mkdir(parents=True, exist_ok=True)
    workload = _build_digits(folder) if name == "digits" else _build_image(
        name, folder, size, samples
    )
    meta.write_text(json.dumps({**workload.__dict__, "model_path": str(workload.model_path),
                                "calibration": str(workload.calibration),
                                "evaluation": str(workload.evaluation)}))
    return workload


def _from_meta(meta: dict[str, Any]) -> Workload:
    return Workload(
        name=meta["name"],
        model_path=Path(meta["model_path"]),
        calibration=Path(meta["calibration"]),
        evaluation=Path(meta["evaluation"]),
        input_shape=list(meta["input_shape"]),
        architecture=meta["architecture"],
    )


def _build_image(name: str, folder: Path, size: int, samples: int) -> Workload:
    import torch
    import torchvision

    torch.manual_seed(0)
    module = getattr(torchvision.models, name)(weights=None)
    recalibrate_batchnorm(module, image_crops(size, max(32, samples), seed=2))
    model_path = folder / f"{name}.pt"
    torch.save(module.state_dict(), model_path)
    np.savez(folder / "calibration.npz", inputs=image_crops(size, samples, seed=0))
    np.savez(folder / "evaluation.npz", inputs=image_crops(size, samples, seed=1))
    logger.info("built %s at %dx%d with %d calibration samples", name, size, size, samples)
    return Workload(name, model_path, folder / "calibration.npz", folder / "evaluation.npz",
                    [1, 3, size, size], name)


def _build_digits(folder: Path) -> Workload:
    import torch

    from tests.models import DIGITS_SHAPE, accuracy, digits_data, trained_digits_cnn

    data = digits_data()
    model = trained_digits_cnn(data)
    logger.info("digits CNN trained, test accuracy %.3f", accuracy(model, data))
    model_path = folder / "digits.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(DIGITS_SHAPE),)), model_path)
    np.savez(folder / "calibration.npz", inputs=data.train_x[:128])
    np.savez(folder / "evaluation.npz", inputs=data.test_x, labels=data.test_y)
    return Workload("digits", model_path, folder / "calibration.npz", folder / "evaluation.npz",
                    list(DIGITS_SHAPE), None)


def batches(inputs: np.ndarray, shape: list[int]) -> list[torch.Tensor]:
    """Whole batches of the model's batch size, as the engine splits them."""
    import torch

    size = shape[0]
    count = len(inputs) // size
    return [torch.from_numpy(np.ascontiguousarray(inputs[i * size : (i + 1) * size]))
            for i in range(count)]
