"""Stage 3: int8 quantization, one scheme per target.

- ``.pte``: PT2E (``prepare_pt2e``/``convert_pt2e``) with the XNNPACK quantizer, extended so
  that conv/linear followed by ReLU6 or clamp is observed after the clamp
  (``worker.pipeline.quantizer``).
- ``.ptl`` from an eager module: FX graph mode with the ``qnnpack`` (or ``x86``) engine.
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
    for name in relu6_fed_modules(working, example):
        mapping.set_module_name(name, clamped_output_qconfig(config))
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


def relu6_fed_modules(module: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of Conv/Linear modules whose only consumer is a ReLU6 (or hardtanh 0..6)."""
    import torch.fx

    try:
        traced = torch.fx.symbolic_trace(module)
    except Exception:
        logger.warning("could not trace the model to find conv+ReLU6 pairs; using stock configs")
        return []
    modules = dict(traced.named_modules())
    names = []
    for node in traced.graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.Hardtanh):
            continue
        clamp = modules[node.target]
        producer = node.args[0]
        if (
            clamp.min_val == 0.0
            and isinstance(producer, torch.fx.Node)
            and producer.op == "call_module"
            and isinstance(modules.get(producer.target), (nn.Conv2d, nn.Linear, nn.BatchNorm2d))
            and len(producer.users) == 1
        ):
            names.append(_conv_owner(traced, producer))
    return [name for name in names if name]


def _conv_owner(traced: torch.fx.GraphModule, producer: torch.fx.Node) -> str | None:
    """The conv that produces ``producer``; FX fuses conv+bn, so the conv's qconfig governs."""
    modules = dict(traced.named_modules())
    node = producer
    if isinstance(modules.get(node.target), nn.BatchNorm2d):
        node = node.args[0]
        if not (isinstance(node, torch.fx.Node) and node.op == "call_module"):
            return None
        if not isinstance(modules.get(node.target), nn.Conv2d) or len(node.users) != 1:
            return None
    return str(node.target)


def clamped_output_qconfig(config: QuantizationConfig) -> torch.ao.quantization.QConfig:
    """Quantize a conv whose output goes through ReLU6 straight onto the range [0, 6].

    Values outside [0, 6] are exactly what ReLU6 clamps away, so saturating them in the conv's
    own output is lossless, and the 256 steps are spent on the range that survives.
    """
    from torch.ao.quantization import FixedQParamsObserver, QConfig

    activation = FixedQParamsObserver.with_args(
        scale=6.0 / 255.0, zero_point=0, dtype=torch.quint8, quant_min=0, quant_max=255
    )
    return QConfig(activation=activation, weight=ptl_qconfig(config).weight)
