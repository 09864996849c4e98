"""Per-layer int8 sensitivity and the automatic mixed-precision search for the ``.pte`` path.

Everything here works on one captured graph (``torch.export`` of the model), so node names are
the same in the float graph and in every quantized variant. A variant is the PT2E flow run on
a copy of that graph with some Conv/Linear nodes left unannotated: XNNPACK then runs those
layers in float32 inside the same delegate.

Two figures per layer:

- ``sqnr_db``: the layer's output in the all-int8 model against the float model's, on the
  held-out samples (errors accumulated upstream included);
- ``gain_db``: how much the model's output SQNR improves when that layer alone stays float
  (measured by quantizing again without it, only for the worst layers by ``sqnr_db``).

The greedy search keeps the layer with the largest gain float, re-measures, and repeats until
the fidelity target is met or the cap on float layers is reached.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field

import torch
from torch.fx import GraphModule, Interpreter, Node

from service.schemas import LayerSensitivity, QuantizationConfig

from .fidelity import sqnr_db

logger = logging.getLogger(__name__)

# A layer is kept float only for at least this much output SQNR: below it, the float layer
# costs size and latency for a difference no measurement on a few held-out batches resolves.
MIN_GAIN_DB = 0.5

WEIGHTED_OPS = {
    torch.ops.aten.conv1d.default,
    torch.ops.aten.conv2d.default,
    torch.ops.aten.linear.default,
}


@dataclass
class Variant:
    """One quantized version of the captured graph and how close it stays to float."""

    model: GraphModule
    float_nodes: frozenset[str]
    sqnr_db: float
    top1_agreement: float


@dataclass
class SearchResult:
    chosen: Variant
    all_int8: Variant
    sensitivity: list[LayerSensitivity]
    met: bool
    cap: int
    layer_names: dict[str, str] = field(default_factory=dict)
    causes: list[str] = field(default_factory=list)


def capture(module: torch.nn.Module, example: torch.Tensor) -> GraphModule:
    return torch.export.export(module, (example,)).module()


def weighted_nodes(graph_module: GraphModule) -> list[Node]:
    return [
        n for n in graph_module.graph.nodes if n.op == "call_function" and n.target in WEIGHTED_OPS
    ]


def module_path(node: Node) -> str:
    """The innermost module a node came from, e.g. ``features.3.conv.0.0``."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return node.name
    return str(list(stack.values())[-1][0])


def quantize_variant(
    captured: GraphModule,
    calibration: list[torch.Tensor],
    config: QuantizationConfig,
    float_nodes: frozenset[str] = frozenset(),
) -> GraphModule:
    """Run PT2E on a copy of ``captured``, leaving ``float_nodes`` unannotated."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from .quantizer import MobileXNNPACKQuantizer, xnnpack_config

    quantizer = MobileXNNPACKQuantizer()
    quantizer.set_global(xnnpack_config(per_channel=config.per_channel, dynamic=False))
    if float_nodes:
        quantizer.set_filter_function(lambda node: node.name not in float_nodes)
    prepared = prepare_pt2e(copy.deepcopy(captured), quantizer)
    with torch.no_grad():
        for batch in calibration:
            prepared(batch)
    return convert_pt2e(prepared)


def evaluate(
    model: GraphModule, held_out: list[torch.Tensor], reference: torch.Tensor
) -> tuple[float, float]:
    """Output SQNR and top-1 agreement of ``model`` against the float outputs."""
    with torch.no_grad():
        outputs = torch.cat([model(batch) for batch in held_out])
    agreement = float((outputs.argmax(-1) == reference.argmax(-1)).double().mean())
    return sqnr_db(reference, outputs), agreement


class _Recorder(Interpreter):
    """Runs a graph and keeps the outputs of its Conv/Linear nodes."""

    def __init__(self, module: GraphModule) -> None:
        super().__init__(module)
        self.outputs: dict[str, list[torch.Tensor]] = {}

    def run_node(self, node: Node) -> object:
        result = super().run_node(node)
        if node.op == "call_function" and node.target in WEIGHTED_OPS:
            self.outputs.setdefault(node.name, []).append(result.detach())
        return result


def layer_sqnrs(
    float_model: GraphModule, quantized: GraphModule, held_out: list[torch.Tensor]
) -> dict[str, float]:
    """SQNR of every Conv/Linear output in ``quantized`` against the same node in float."""
    from torchao.quantization.pt2e.utils import _fuse_conv_bn_

    # PT2E folds batch norm into the conv before observing; fold it in the float copy too, so
    # both graphs compare the same tensor at each conv.
    folded = copy.deepcopy(float_model)
    _fuse_conv_bn_(folded)
    recorders = (_Recorder(folded), _Recorder(quantized))
    with torch.no_grad():
        for batch in held_out:
            for recorder in recorders:
                recorder.run(batch)
    reference, candidate = recorders[0].outputs, recorders[1].outputs
    return {
        name: sqnr_db(torch.cat(reference[name]), torch.cat(candidate[name]))
        for name in reference
        if name in candidate
    }


def search(
    module: torch.nn.Module,
    example: torch.Tensor,
    calibration: list[torch.Tensor],
    held_out: list[torch.Tensor],
    config: QuantizationConfig,
) -> SearchResult:
    """Quantize, and keep the most sensitive layers float until the target is met."""
    target = config.fidelity
    captured = capture(module, example)
    with torch.no_grad():
        reference = torch.cat([captured(batch) for batch in held_out])
    nodes = weighted_nodes(captured)
    names = {node.name: module_path(node) for node in nodes}
    cap = max(1, math.floor(target.max_float_layer_share * len(nodes))) if nodes else 0

    def variant(float_nodes: frozenset[str]) -> Variant:
        model = quantize_variant(captured, calibration, config, float_nodes)
        sqnr, agreement = evaluate(model, held_out, reference)
        return Variant(model, float_nodes, sqnr, agreement)

    all_int8 = variant(frozenset())
    per_layer = layer_sqnrs(captured, all_int8.model, held_out)
    worst = sorted(per_layer, key=per_layer.get)[: target.sensitivity_layers]

    def meets(candidate: Variant) -> bool:
        agreement_ok = (
            target.min_top1_agreement is None
            or candidate.top1_agreement >= target.min_top1_agreement
        )
        return candidate.sqnr_db >= target.min_sqnr_db and agreement_ok

    gains: dict[str, float] = {}
    chosen = all_int8
    if not meets(all_int8) and cap > 0:
        for name in worst:
            gains[name] = variant(frozenset({name})).sqnr_db - all_int8.sqnr_db
        chosen = _greedy(variant, meets, gains, all_int8, cap)

    sensitivity = [
        LayerSensitivity(
            layer=names[name], node=name, sqnr_db=round(per_layer[name], 2),
            gain_db=None if name not in gains else round(gains[name], 2),
        )
        for name in worst
    ]
    logger.info(
        "mixed precision: %d float layers, SQNR %.1f -> %.1f dB (target %.1f)",
        len(chosen.float_nodes), all_int8.sqnr_db, chosen.sqnr_db, target.min_sqnr_db,
    )
    causes = [] if meets(all_int8) else diagnose(captured, _samples(calibration), sensitivity)
    return SearchResult(chosen, all_int8, sensitivity, meets(chosen), cap, names, causes)


def _samples(batches: list[torch.Tensor]) -> int:
    return sum(int(batch.shape[0]) for batch in batches)


def _greedy(variant, meets, gains: dict[str, float], start: Variant, cap: int) -> Variant:
    """Add layers float in order of their single-layer gain while each adds MIN_GAIN_DB."""
    best = start
    chosen: set[str] = set()
    for name in sorted(gains, key=gains.get, reverse=True):
        if len(chosen) >= cap or meets(best):
            break
        if gains[name] < MIN_GAIN_DB:
            break
        candidate = variant(frozenset(chosen | {name}))
        if candidate.sqnr_db >= best.sqnr_db + MIN_GAIN_DB:
            chosen.add(name)
            best = candidate
    return best


OUTLIER_RATIO = 30.0
FEW_CALIBRATION_SAMPLES = 32


def diagnose(
    captured: GraphModule, calibration_samples: int, sensitivity: list[LayerSensitivity]
) -> list[str]:
    """Likely causes of poor int8 fidelity, each as a sentence that says what would help."""
    from .quantizer import CLAMP_TARGETS

    causes = []
    unfused = [
        n.name
        for n in captured.graph.nodes
        if n.op == "call_function"
        and n.target in CLAMP_TARGETS
        and isinstance(n.args[0], Node)
        and n.args[0].target in WEIGHTED_OPS
        and len(n.args[0].users) > 1
    ]
    if unfused:
        causes.append(
            f"{len(unfused)} ReLU6/clamp activation(s) cannot be fused with the layer before "
            "them (that layer's output has other users), so int8 spends its range on values "
            "the clamp throws away."
        )

    worst_ratio, worst_layer = _worst_weight_outlier(captured)
    if worst_ratio > OUTLIER_RATIO:
        causes.append(
            f"Layer {worst_layer} has outlier weights (a channel's largest weight is "
            f"{worst_ratio:.0f}x its mean magnitude), so per-channel int8 rounds that channel's "
            "other weights to few levels; keep it float or fine-tune with weight decay."
        )
    if calibration_samples < FEW_CALIBRATION_SAMPLES:
        causes.append(
            f"Only {calibration_samples} calibration samples were used; give at least "
            f"{FEW_CALIBRATION_SAMPLES} real samples."
        )
    if sensitivity and not causes:
        worst = sensitivity[0]
        causes.append(
            f"The most sensitive layer is {worst.layer} ({worst.sqnr_db:.1f} dB at its output); "
            "raising quantization.fidelity.max_float_layer_share lets the search keep more "
            "layers float."
        )
    return causes


def _worst_weight_outlier(captured: GraphModule) -> tuple[float, str]:
    params = dict(captured.named_parameters())
    params.update(dict(captured.named_buffers()))
    worst_ratio, worst_layer = 0.0, ""
    for node in weighted_nodes(captured):
        weight_node = node.args[1]
        if not isinstance(weight_node, Node) or weight_node.op != "get_attr":
            continue
        weight = params.get(str(weight_node.target))
        if weight is None or weight.dim() < 2:
            continue
        magnitudes = weight.detach().abs().flatten(1)
        ratio = float((magnitudes.max(1).values / (magnitudes.mean(1) + 1e-12)).max())
        if ratio > worst_ratio:
            worst_ratio, worst_layer = ratio, module_path(node)
    return worst_ratio, worst_layer
