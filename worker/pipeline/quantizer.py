"""The XNNPACK PT2E quantizer, extended with conv/linear + clamp patterns.

The stock quantizer treats conv+ReLU as one unit but not conv+ReLU6 (an ``aten.hardtanh``
after export) or conv+clamp: the clamp shares the conv output's observer, so int8 steps are
spread over the raw pre-activation range (often 30 to 60 times wider than [0, 6]). Here the
conv gets its input, weight and bias specs and the clamp gets the output spec, exactly as the
stock conv+ReLU pattern does, so the observed range is the clamped one. The XNNPACK partitioner
already lowers conv -> hardtanh with the clamp fused into the conv's output range.
"""

from __future__ import annotations

import torch
from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
    QuantPattern,
    XNNPACKQuantizer,
    get_symmetric_quantization_config,
)
from executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils import (
    OP_TO_ANNOTATOR,
    register_annotator,
)
from torch.fx import GraphModule, Node
from torchao.quantization.pt2e.quantizer import (
    QuantizationAnnotation,
    QuantizationConfig,
    get_bias_qspec,
    get_input_act_qspec,
    get_output_act_qspec,
    get_weight_qspec,
)
from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

CLAMP_TARGETS = {
    torch.ops.aten.hardtanh.default,
    torch.ops.aten.hardtanh_.default,
    torch.ops.aten.clamp.default,
    torch.ops.aten.relu6.default,
}
CONV_TARGETS = {torch.ops.aten.conv2d.default, torch.ops.aten.conv1d.default}
LINEAR_TARGETS = {torch.ops.aten.linear.default}


def xnnpack_config(per_channel: bool, dynamic: bool) -> QuantizationConfig:
    """Symmetric int8 weights (per channel by default) and int8 activations."""
    return get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=dynamic)


def _is_annotated(nodes: list[Node]) -> bool:
    return any(
        Q_ANNOTATION_KEY in n.meta and n.meta[Q_ANNOTATION_KEY]._annotated for n in nodes
    )


def annotate_weighted_clamp(
    gm: GraphModule,
    config: QuantizationConfig | None,
    filter_fn=None,
) -> list[list[Node]]:
    """Annotate conv/linear -> clamp so the clamp's output is what gets observed."""
    partitions = []
    if config is None:
        return partitions
    for clamp in gm.graph.nodes:
        if clamp.op != "call_function" or clamp.target not in CLAMP_TARGETS:
            continue
        producer = clamp.args[0]
        if not isinstance(producer, Node) or producer.op != "call_function":
            continue
        if producer.target not in CONV_TARGETS | LINEAR_TARGETS or len(producer.users) != 1:
            continue

        input_act, weight = producer.args[0], producer.args[1]
        bias = producer.args[2] if len(producer.args) > 2 else None
        partition = [clamp, producer, weight] + ([bias] if isinstance(bias, Node) else [])
        if _is_annotated(partition) or (filter_fn and not all(filter_fn(n) for n in partition)):
            continue

        qspec_map = {input_act: get_input_act_qspec(config), weight: get_weight_qspec(config)}
        if isinstance(bias, Node):
            qspec_map[bias] = get_bias_qspec(config)
        producer.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(
            input_qspec_map=qspec_map, _annotated=True
        )
        clamp.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(
            output_qspec=get_output_act_qspec(config), _annotated=True
        )
        for node in partition[2:]:
            node.meta.setdefault(Q_ANNOTATION_KEY, QuantizationAnnotation(_annotated=True))
        partitions.append(partition)
    return partitions


if "mobileconv_weighted_clamp" not in OP_TO_ANNOTATOR:
    register_annotator("mobileconv_weighted_clamp")(annotate_weighted_clamp)


class MobileXNNPACKQuantizer(XNNPACKQuantizer):
    """XNNPACKQuantizer that also fuses conv/linear with ReLU6, hardtanh and clamp."""

    SUPPORTED_PATTERNS = [
        QuantPattern(
            "mobileconv_weighted_clamp", False, False, CONV_TARGETS | LINEAR_TARGETS
        ),
        *XNNPACKQuantizer.SUPPORTED_PATTERNS,
    ]


class StockXNNPACKQuantizer(XNNPACKQuantizer):
    """The unmodified quantizer, kept for side-by-side comparisons."""
