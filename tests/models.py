"""Small models the tests build for themselves: nothing is downloaded.

The digits CNN is trained on the 8x8 digits set that ships with scikit-learn (1,797 images),
upsampled to 16x16, in a few seconds on two cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

DIGITS_SHAPE = [8, 1, 16, 16]


class DigitsCNN(nn.Module):
    """Conv-BN-ReLU blocks, a residual add and a linear classifier."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width),
                                   nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
                                  nn.BatchNorm2d(2 * width), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(8 * width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.block(x)
        x = self.pool(self.down(x))
        return self.fc(torch.flatten(x, 1))


@dataclass
class DigitsData:
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def digits_data(seed: int = 0) -> DigitsData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
    images = torch.nn.functional.interpolate(images, size=16, mode="bilinear").numpy()
    images = (images - 0.3) / 0.35
    order = np.random.default_rng(seed).permutation(len(images))
    images, labels = images[order].astype(np.float32), digits.target[order].astype(np.int64)
    cut = 1400
    return DigitsData(images[:cut], labels[:cut], images[cut:], labels[cut:])


def train_digits(model: nn.Module, data: DigitsData, epochs: int = 12) -> nn.Module:
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
    return model.eval()


def accuracy(model: nn.Module, data: DigitsData) -> float:
    with torch.no_grad():
        logits = model(torch.from_numpy(data.test_x))
    return float((logits.argmax(1).numpy() == data.test_y).mean())


def trained_digits_cnn(data: DigitsData) -> nn.Module:
    """A DigitsCNN with seeded initialisation, trained on ``data``."""
    torch.manual_seed(0)
    return train_digits(DigitsCNN(), data)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: expand 1x1, depthwise 3x3, project 1x1, residual when shapes match."""

    def __init__(self, channels_in: int, channels_out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = channels_in * expand
        self.use_residual = stride == 1 and channels_in == channels_out
        self.conv = nn.Sequential(
            nn.Conv2d(channels_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, channels_out, 1, bias=False), nn.BatchNorm2d(channels_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class DigitsMobileNet(nn.Module):
    """A MobileNetV2-like net for 16x16 digits: ReLU6, depthwise convs, residual adds."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(16), nn.ReLU6())
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 1, 4),
            InvertedResidual(16, 24, 2, 4),
            InvertedResidual(24, 24, 1, 4),
            InvertedResidual(24, 32, 2, 4),
            InvertedResidual(32, 32, 1, 4),
        )
        self.head = nn.Sequential(nn.Conv2d(32, 64, 1, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def trained_digits_mobilenet(data: DigitsData) -> nn.Module:
    torch.manual_seed(0)
    return train_digits(DigitsMobileNet(), data, epochs=6)
