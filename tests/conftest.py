"""Shared fixtures: small real models and data files, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

FAST_BENCHMARK = {"runs": 5, "warmup": 1}


@pytest.fixture(scope="session")
def digits():
    from tests.models import accuracy, digits_data, trained_digits_cnn

    data = digits_data()
    model = trained_digits_cnn(data)
    assert accuracy(model, data) > 0.9, "the digits CNN did not train"
    return model, data


@pytest.fixture(scope="session")
def digits_files(digits, tmp_path_factory) -> dict[str, Path]:
    """The trained digits CNN as ExportedProgram and TorchScript, with data files."""
    import torch

    from tests.models import DIGITS_SHAPE

    model, data = digits
    root = tmp_path_factory.mktemp("digits")
    example = torch.zeros(DIGITS_SHAPE)
    torch.export.save(torch.export.export(model, (example,)), root / "digits.pt2")
    torch.jit.save(torch.jit.trace(model, (example,)), root / "digits.ts")
    np.savez(root / "calibration.npz", inputs=data.train_x[:128])
    np.savez(root / "evaluation.npz", inputs=data.test_x, labels=data.test_y)
    return {
        "pt2": root / "digits.pt2",
        "torchscript": root / "digits.ts",
        "calibration": root / "calibration.npz",
        "evaluation": root / "evaluation.npz",
    }


@pytest.fixture(scope="session")
def torchvision_file(tmp_path_factory):
    """Writes a random-init torchvision state_dict once per architecture."""
    import torch
    import torchvision

    root = tmp_path_factory.mktemp("torchvision")
    made: dict[str, Path] = {}

    def make(architecture: str) -> Path:
        if architecture not in made:
            torch.manual_seed(0)
            model = getattr(torchvision.models, architecture)(weights=None)
            made[architecture] = root / f"{architecture}.pt"
            torch.save(model.state_dict(), made[architecture])
        return made[architecture]

    return make
