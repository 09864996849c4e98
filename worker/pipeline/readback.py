"""Read weights back out of written artifacts, to check what really landed in the file.

Used to report the zeros that unstructured pruning left in each artifact: a sparsity figure
computed on the model before export would not prove the exporter kept them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)


def ptl_weights(path: Path) -> list[torch.Tensor]:
    """Conv/Linear weights of a ``.ptl``: float constants and unpacked int8 packed params."""
    scripted = torch.jit.load(str(path), map_location="cpu")
    weights = []
    for node in scripted.inlined_graph.nodes():
        if node.kind() != "prim::Constant":
            continue
        kind = str(node.output().type())
        if "Conv2dPackedParamsBase" in kind:
            weight, _ = torch.ops.quantized.conv2d_unpack(node.output().toIValue())
            weights.append(weight.int_repr())
        elif "LinearPackedParamsBase" in kind:
            weight, _ = torch.ops.quantized.linear_unpack(node.output().toIValue())
            weights.append(weight.int_repr())
        elif kind == "Tensor":
            value = node.output().toIValue()
            if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.is_floating_point():
                weights.append(value)
    if not weights:
        # An unfrozen module keeps its weights as parameters.
        weights = [p.detach() for n, p in scripted.named_parameters() if p.dim() >= 2]
    return weights


def pte_weights(path: Path, weight_numels: set[int]) -> list[np.ndarray]:
    """Weight buffers of a ``.pte``'s XNNPACK data, recognised by their element counts.

    The named data segment stores raw bytes without dtypes; a buffer is taken as an int8
    weight when its length equals a Conv/Linear weight's element count, and as a float32
    weight when it is four times one. Scale buffers are skipped by name.
    """
    from executorch.exir._serialize._program import deserialize_pte_binary

    named = deserialize_pte_binary(path.read_bytes()).named_data
    found = []
    for key, entry in named.pte_data.items():
        if key.startswith("scale_"):
            continue
        buffer = named.buffers[entry.buffer_index]
        raw = buffer if isinstance(buffer, bytes | bytearray) else bytes(buffer)
        if len(raw) in weight_numels:
            found.append(np.frombuffer(raw, dtype=np.int8))
        elif len(raw) % 4 == 0 and len(raw) // 4 in weight_numels:
            found.append(np.frombuffer(raw, dtype=np.float32))
    return found


def zero_share(weights: list) -> float | None:
    """Share of exactly-zero values over all ``weights``; None when there are none."""
    total = sum(int(w.size if isinstance(w, np.ndarray) else w.numel()) for w in weights)
    if total == 0:
        return None
    zeros = sum(
        int((w == 0).sum()) if isinstance(w, np.ndarray) else int((w == 0).sum().item())
        for w in weights
    )
    return zeros / total
