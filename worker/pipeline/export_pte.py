"""Stage 4a: export an ExecuTorch program (``.pte``) lowered to the XNNPACK delegate."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from service.errors import ExportFailed, UnsupportedRecipe

from .load import LoadedModel

logger = logging.getLogger(__name__)


def exportable_module(loaded: LoadedModel) -> nn.Module:
    """A module ``torch.export`` can trace: TorchScript goes through the TS->EP converter."""
    if loaded.format != "torchscript":
        return loaded.module
    from torch._export.converter import TS2EPConverter

    try:
        program = TS2EPConverter(loaded.module, (loaded.example_input,)).convert()
    except Exception as exc:
        raise UnsupportedRecipe(
            "This TorchScript model could not be converted to an ExportedProgram for "
            f"ExecuTorch ({str(exc).splitlines()[0][:200]}). Export it with torch.export.save "
            "instead, or request only the 'ptl' target.",
            field="targets",
        ) from exc
    return program.module()


def export_pte(module: nn.Module, example: torch.Tensor, path: Path) -> dict[str, object]:
    """Lower ``module`` (float or PT2E-quantized) to XNNPACK and write it to ``path``."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    try:
        program = torch.export.export(module, (example,))
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        facts = delegation_facts(edge.exported_program().graph_module)
        buffer = edge.to_executorch().buffer
    except Exception as exc:
        raise ExportFailed(
            f"Lowering to ExecuTorch/XNNPACK failed: {str(exc).splitlines()[0][:300]}",
            field="targets",
        ) from exc

    path.write_bytes(buffer)
    logger.info(
        "wrote %s (%d bytes, %d delegated ops, %d not delegated)",
        path.name,
        len(buffer),
        facts["delegated_operators"],
        facts["non_delegated_operators"],
    )
    return facts


def delegation_facts(graph_module: torch.fx.GraphModule) -> dict[str, object]:
    """Count operators inside XNNPACK delegates and name the ones left to portable kernels."""
    delegated = 0
    for name, sub in graph_module.named_modules():
        original = getattr(sub, "original_module", None)
        if name.startswith("lowered_module") and original is not None:
            delegated += sum(
                1 for n in original.graph.nodes if n.op == "call_function"
            )

    outside = Counter()
    for node in graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        target = str(getattr(node.target, "__name__", node.target))
        if "executorch_call_delegate" in target or target == "getitem":
            continue
        outside[target] += 1

    return {
        "backend": "XnnpackBackend",
        "delegates": sum(1 for n in graph_module.graph.nodes if "call_delegate" in str(n.target)),
        "delegated_operators": delegated,
        "non_delegated_operators": sum(outside.values()),
        "non_delegated": dict(outside),
    }
