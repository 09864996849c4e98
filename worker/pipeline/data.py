"""Sample data for calibration and evaluation: read from ``.npy``/``.npz``, checked against the
model's input, split into batches of the exported size, or made up when none is given.

An ``.npz`` holds ``inputs`` (or ``x``) and optionally ``labels`` (or ``y``); an ``.npy`` holds
inputs only. Arrays are loaded with ``allow_pickle=False``: a pickled object array is refused.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from service.errors import InvalidData

logger = logging.getLogger(__name__)

INPUT_KEYS = ("inputs", "x", "images", "data")
LABEL_KEYS = ("labels", "y", "targets")


@dataclass
class SampleSet:
    """Input samples without a batch dimension, with labels when known."""

    inputs: torch.Tensor
    labels: torch.Tensor | None
    source: str

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def take(self, start: int, stop: int) -> SampleSet:
        labels = None if self.labels is None else self.labels[start:stop]
        return SampleSet(self.inputs[start:stop], labels, self.source)

    def batches(self, batch_size: int) -> list[torch.Tensor]:
        """Whole batches of ``batch_size``; a trailing partial batch is dropped."""
        count = len(self) // batch_size
        return [self.inputs[i * batch_size : (i + 1) * batch_size] for i in range(count)]

    def batch_labels(self, batch_size: int) -> torch.Tensor | None:
        if self.labels is None:
            return None
        return self.labels[: (len(self) // batch_size) * batch_size]


def load_samples(path: Path, input_shape: list[int], role: str, limit: int) -> SampleSet:
    """Read samples from ``path`` and check them against one batch of ``input_shape``.

    Args:
        path: an ``.npy`` or ``.npz`` file.
        input_shape: the model's input shape, batch dimension first.
        role: ``calibration`` or ``evaluation``, named in errors.
        limit: most samples kept.
    """
    inputs, labels = _read_arrays(path, role)
    sample_shape = list(input_shape[1:])
    if inputs.ndim == len(sample_shape):
        inputs = inputs[None]
    if list(inputs.shape[1:]) != sample_shape:
        raise InvalidData(
            f"The {role} inputs have samples of shape {list(inputs.shape[1:])}, but the model "
            f"takes {sample_shape} per sample (input_shape {input_shape}). Reshape the array "
            f"to [N, {', '.join(map(str, sample_shape))}].",
            field=role,
        )
    if not np.issubdtype(inputs.dtype, np.floating):
        raise InvalidData(
            f"The {role} inputs are {inputs.dtype}, but the model takes float32. Convert "
            "them (for images, scale to the range the model was trained on).",
            field=role,
        )
    if labels is not None and labels.shape[0] != inputs.shape[0]:
        raise InvalidData(
            f"The {role} file has {inputs.shape[0]} inputs but {labels.shape[0]} labels; "
            "give one label per input.",
            field=role,
        )
    if not np.isfinite(inputs).all():
        raise InvalidData(f"The {role} inputs contain NaN or infinite values.", field=role)

    inputs_t = torch.from_numpy(np.ascontiguousarray(inputs[:limit], dtype=np.float32))
    labels_t = None if labels is None else torch.from_numpy(labels[:limit].astype(np.int64))
    return SampleSet(inputs_t, labels_t, "user")


def _read_arrays(path: Path, role: str) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise InvalidData(
            f"The {role} file holds pickled Python objects, which are refused; save plain "
            "numeric arrays with numpy.save or numpy.savez.",
            field=role,
        ) from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InvalidData(
            f"The {role} file is not a readable .npy or .npz array file ({exc}).", field=role
        ) from exc

    if isinstance(loaded, np.ndarray):
        return loaded, None
    with loaded:
        inputs = _first_key(loaded, INPUT_KEYS)
        if inputs is None:
            raise InvalidData(
                f"The {role} .npz has arrays {sorted(loaded.files)}, but none is named "
                f"{' or '.join(INPUT_KEYS)}; name the inputs array 'inputs'.",
                field=role,
            )
        return inputs, _first_key(loaded, LABEL_KEYS)


def _first_key(archive: np.lib.npyio.NpzFile, keys: tuple[str, ...]) -> np.ndarray | None:
    for key in keys:
        if key in archive.files:
            return archive[key]
    return None


def synthetic_samples(input_shape: list[int], count: int, seed: int = 0) -> SampleSet:
    """Standard-normal inputs: enough to run a model, not to judge its int8 fidelity."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn([count, *input_shape[1:]], generator=generator)
    return SampleSet(inputs, None, "synthetic")


def split_held_out(samples: SampleSet, batch_size: int) -> tuple[SampleSet, SampleSet]:
    """Keep about a quarter of the samples (at least one batch) out of calibration."""
    held = max(batch_size, (len(samples) // 4) // batch_size * batch_size)
    if len(samples) - held < batch_size:
        raise InvalidData(
            f"{len(samples)} calibration samples cannot be split into calibration and "
            f"held-out parts of whole batches of {batch_size}; give at least "
            f"{2 * batch_size} samples, or an evaluation file.",
            field="calibration",
        )
    cut = len(samples) - held
    return samples.take(0, cut), samples.take(cut, len(samples))
