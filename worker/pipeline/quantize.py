"""Stage 3: int8 quantization, one scheme per target.

- ``.pte``: PT2E (``prepare_pt2e``/``convert_pt2e``) with the XNNPACK quantizer, extended so
  that conv/linear followed by ReLU6 or clamp is observed after the clamp
  (``worker.pipeline.quantizer``).
- ``.ptl`` from an eager module: FX graph mode with the ``qnnpack`` (or ``x86``) engine; a
  conv feeding a ReLU6 is observed over [0, 6], and every clamp gets a contiguous input
  (``ContiguousHardtanh``).
- ``.ptl`` from a graph-only model (ExportedProgram, TorchScript): TorchScript graph-mode
  quantization (``quantize_jit``), since FX cannot recognise layers in an aten graph.

Static schemes use per-channel symmetric int8 weights and histogram-observed activations.
Dynamic schemes quantize only Linear (and, for ``.ptl``, LSTM) weights.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from service.schemas import QuantizationConfig

from .quantizer import MobileXNNPACKQuantizer, xnnpack_config

logger = logging.getLogger(__name__)


def quantize_pt2e(
    module: nn.Module,
    example: torch.Tensor,
    calibration: list[torch.Tensor],
    config: QuantizationConfig,
) -> nn.Module:
    """Quantize for ExecuTorch: returns the converted PT2E graph module."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    captured = torch.export.export(module, (example,)).module()
    quantizer = MobileXNNPACKQuantizer()
    if config.mode == "dynamic":
        # Dynamic int8 convolutions make XNNPACK's execute() fail with "invalid parameter";
        # only Linear layers are quantized dynamically.
        dynamic = xnnpack_config(per_channel=config.per_channel, dynamic=True)
        quantizer.set_operator_type(torch.ops.aten.linear.default, dynamic)
    else:
        quantizer.set_global(xnnpack_config(per_channel=config.per_channel, dynamic=False))

    prepared = prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        for batch in calibration if config.mode == "static" else [example]:
            prepared(batch)
    return convert_pt2e(prepared)


def ptl_qconfig(config: QuantizationConfig) -> torch.ao.quantization.QConfig:
    """Per-channel symmetric int8 weights, full-range uint8 activations."""
    from torch.ao.quantization import (
        HistogramObserver,
        MinMaxObserver,
        PerChannelMinMaxObserver,
        QConfig,
    )

    # x86 without VNNI overflows int16 accumulators on full-range activations, so fbgemm
    # needs reduce_range; qnnpack (ARM) does not.
    reduce_range = config.ptl_engine == "x86"
    if config.per_channel:
        weight = PerChannelMinMaxObserver.with_args(
            dtype=torch.qint8, qscheme=torch.per_channel_symmetric
        )
    else:
        weight = MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    activation = HistogramObserver.with_args(dtype=torch.quint8, reduce_range=reduce_range)
    return QConfig(activation=activation, weight=weight)


def quantize_fx(
    module: nn.Module,
    example: torch.Tensor,
    calibration: list[torch.Tensor],
    config: QuantizationConfig,
    float_modules: list[str] | None = None,
) -> nn.Module:
    """Quantize an eager module for the lite interpreter with FX graph mode.

    ``float_modules`` (module paths) stay in float, as the ``.pte`` search decided.
    """
    from torch.ao.quantization import QConfigMapping, quantize_dynamic
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = config.ptl_engine
    working = copy.deepcopy(module).eval()
    if config.mode == "dynamic":
        return quantize_dynamic(working, {nn.Linear, nn.LSTM}, dtype=torch.qint8)

    mapping = QConfigMapping().set_global(ptl_qconfig(config))
    for conv_name in relu6_fed_modules(working):
        mapping.set_module_name(conv_name, clamped_output_qconfig(config))
    _guard_clamps(working)
    for name in float_modules or []:
        mapping.set_module_name(name, None)
    prepared = prepare_fx(working, mapping, (example,))
    with torch.no_grad():
        for batch in calibration:
            prepared(batch)
    return convert_fx(prepared)


def quantize_torchscript(
    scripted: torch.jit.ScriptModule,
    calibration: list[torch.Tensor],
    config: QuantizationConfig,
) -> torch.jit.ScriptModule:
    """Quantize a TorchScript module (from a graph-only model) with graph-mode quantization."""
    from torch.ao.quantization import quantize_dynamic_jit, quantize_jit

    torch.backends.quantized.engine = config.ptl_engine
    if config.mode == "dynamic":
        from torch.ao.quantization import per_channel_dynamic_qconfig

        return quantize_dynamic_jit(scripted, {"": per_channel_dynamic_qconfig})

    def calibrate(model: torch.jit.ScriptModule, batches: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for batch in batches:
                model(batch)

    return quantize_jit(scripted, {"": ptl_qconfig(config)}, calibrate, [calibration])


def relu6_fed_modules(module: nn.Module) -> list[str]:
    """Convs (with their batch norm) whose only consumer is a ReLU6, fed by another layer.

    FX uses a module's activation observer for its output and, when the producer has none,
    for its input too: a conv reading the model input directly is left out, or its input
    would be observed clamped to [0, 6].
    """
    import torch.fx

    try:
        traced = torch.fx.symbolic_trace(module)
    except Exception:
        logger.warning("could not trace the model to find conv+ReLU6 pairs; using stock ranges")
        return []
    modules = dict(traced.named_modules())
    names = []
    for node in traced.graph.nodes:
        clamp = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(clamp, nn.Hardtanh) or (clamp.min_val, clamp.max_val) != (0.0, 6.0):
            continue
        norm = _single_use_producer(node.args[0], modules, nn.BatchNorm2d)
        conv = _single_use_producer(norm.args[0] if norm else node.args[0], modules, nn.Conv2d)
        if conv is not None and getattr(conv.args[0], "op", "") != "placeholder":
            names.append(str(conv.target))
    return names


def _single_use_producer(node: object, modules: dict, kind: type) -> torch.fx.Node | None:
    """``node`` itself when it calls a module of ``kind`` and has one user."""
    if getattr(node, "op", None) != "call_module" or not isinstance(modules.get(node.target), kind):
        return None
    return node if len(node.users) == 1 else None


def clamped_output_qconfig(config: QuantizationConfig) -> torch.ao.quantization.QConfig:
    """Observe a conv whose output goes through ReLU6 over the clamped range only.

    Values outside [0, 6] are exactly what ReLU6 clamps away, so saturating them in the conv's
    own output is lossless, and the int8 steps go to the range that survives.
    """
    from torch.ao.quantization import QConfig

    activation = ClampedHistogramObserver.with_args(
        dtype=torch.quint8, reduce_range=config.ptl_engine == "x86"
    )
    return QConfig(activation=activation, weight=ptl_qconfig(config).weight)


class ClampedHistogramObserver(torch.ao.quantization.HistogramObserver):
    """A histogram observer that sees its input clamped to [0, 6]."""

    def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
        super().forward(x_orig.detach().clamp(0.0, 6.0))
        return x_orig


class ContiguousHardtanh(nn.Module):
    """Hardtanh/ReLU6 that makes its input contiguous first.

    torch 2.14's qnnpack quantized hardtanh returns wrong values (errors up to the full clamp
    range) for channels-last tensors, and every quantized conv output is channels-last; on a
    contiguous tensor it is exact. The copy costs one pass over the activation.
    """

    def __init__(self, min_val: float, max_val: float) -> None:
        super().__init__()
        self.min_val, self.max_val = min_val, max_val

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.hardtanh(x.contiguous(), self.min_val, self.max_val)


def _guard_clamps(module: nn.Module) -> None:
    for name, sub in list(module.named_modules()):
        if type(sub) in (nn.Hardtanh, nn.ReLU6):
            _set_submodule(module, name, ContiguousHardtanh(sub.min_val, sub.max_val))


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def prepare_graph_for_jit(graph_module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Fold batch norm into convs and guard clamps, before TorchScript quantization.

    ``quantize_jit`` quantizes an unfolded batch norm's parameters as activations, and
    qnnpack's quantized hardtanh is wrong on channels-last tensors (``ContiguousHardtanh``).
    """
    from torchao.quantization.pt2e.utils import _fuse_conv_bn_

    _fuse_conv_bn_(graph_module)
    clamps = {
        torch.ops.aten.hardtanh.default,
        torch.ops.aten.hardtanh_.default,
        torch.ops.aten.clamp.default,
        torch.ops.aten.relu6.default,
    }
    graph = graph_module.graph
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target in clamps:
            with graph.inserting_before(node):
                contiguous = graph.call_method("contiguous", (node.args[0],))
            node.replace_input_with(node.args[0], contiguous)
    graph_module.recompile()
    return graph_module
