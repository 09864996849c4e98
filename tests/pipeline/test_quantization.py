"""Int8 that keeps its accuracy: fused clamp ranges, per-layer sensitivity, mixed precision."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from service.errors import FidelityMissed
from service.schemas import QuantizationConfig, Recipe
from tests.conftest import FAST_BENCHMARK
from tests.models import DIGITS_SHAPE, accuracy, trained_digits_mobilenet
from worker.pipeline import sensitivity
from worker.pipeline.export_pte import export_pte
from worker.pipeline.quantizer import MobileXNNPACKQuantizer, StockXNNPACKQuantizer, xnnpack_config
from worker.pipeline.run import convert

PLANTED_LAYER = "blocks.2.conv.6"


def quantize_with(quantizer, module: nn.Module, batches: list[torch.Tensor]) -> nn.Module:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer.set_global(xnnpack_config(per_channel=True, dynamic=False))
    prepared = prepare_pt2e(torch.export.export(module, (batches[0],)).module(), quantizer)
    for batch in batches:
        prepared(batch)
    return convert_pt2e(prepared)


@pytest.fixture(scope="module")
def mobilenet(digits):
    _, data = digits
    return trained_digits_mobilenet(data), data


@pytest.fixture(scope="module")
def batches(mobilenet):
    _, data = mobilenet
    inputs = torch.from_numpy(data.train_x)
    calibration = list(inputs[:96].split(DIGITS_SHAPE[0]))
    held_out = list(torch.from_numpy(data.test_x[:128]).split(DIGITS_SHAPE[0]))
    return calibration, held_out


def test_conv_relu6_block_is_within_one_quantization_step(tmp_path):
    from executorch.runtime import Runtime

    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.ReLU6()).eval()
    # Inputs and weights lie exactly on their int8 grids, so the only error left is the
    # rounding of the block's output; pre-activations reach about +-40, far beyond [0, 6].
    with torch.no_grad():
        levels = torch.randint(-127, 128, block[0].weight.shape).float()
        levels[:, 0, 0, 0] = 127.0
        block[0].weight.copy_(levels * 0.03)
    inputs = [torch.randint(0, 256, (2, 4, 8, 8)).float() / 255.0 for _ in range(8)]
    inputs[0][0, 0, 0, 0], inputs[0][0, 0, 0, 1] = 0.0, 1.0
    step = 6.0 / 255.0

    errors = {}
    for name, quantizer in [("ours", MobileXNNPACKQuantizer()), ("stock", StockXNNPACKQuantizer())]:
        path = tmp_path / f"{name}.pte"
        export_pte(quantize_with(quantizer, block, inputs), inputs[0], path)
        method = Runtime.get().load_program(path).load_method("forward")
        errors[name] = max(
            float((method.execute((x,))[0] - block(x)).abs().max()) for x in inputs
        )

    assert errors["ours"] <= step
    assert errors["stock"] > 2 * step


def test_ours_beats_stock_quantization_and_meets_the_target(mobilenet, batches):
    model, _ = mobilenet
    calibration, held_out = batches
    reference = torch.cat([model(b) for b in held_out]).detach()

    sqnr = {}
    for name, quantizer in [("ours", MobileXNNPACKQuantizer()), ("stock", StockXNNPACKQuantizer())]:
        quantized = quantize_with(quantizer, model, calibration)
        sqnr[name], _ = sensitivity.evaluate(quantized, held_out, reference)

    assert sqnr["ours"] >= sqnr["stock"]
    assert sqnr["ours"] >= QuantizationConfig().fidelity.min_sqnr_db


def test_digits_mobilenet_keeps_accuracy_through_the_engine(mobilenet, tmp_path):
    model, data = mobilenet
    model_path = tmp_path / "mobilenet.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(DIGITS_SHAPE),)), model_path)
    np.savez(tmp_path / "calibration.npz", inputs=data.train_x[:128])
    np.savez(tmp_path / "evaluation.npz", inputs=data.test_x, labels=data.test_y)
    recipe = Recipe.model_validate({"benchmark": {**FAST_BENCHMARK, "eval_samples": 392}})

    report = convert(
        model_path, recipe, tmp_path / "out",
        calibration_path=tmp_path / "calibration.npz",
        evaluation_path=tmp_path / "evaluation.npz",
    )
    mixed = report.quantization.mixed_precision

    assert mixed.enforced and mixed.met and mixed.held_out_samples == 32
    assert report.quantization.calibration_samples == 64  # the default cap
    for artifact in report.artifacts:
        fidelity = artifact.measurement.fidelity
        assert fidelity.top1_accuracy >= fidelity.reference_top1_accuracy - 0.02
    assert accuracy(model, data) > 0.9


def plant_outliers(model: nn.Module) -> nn.Module:
    """Make one conv hard to quantize without changing what it computes.

    Channel 0 of the ReLU6 feeding ``PLANTED_LAYER`` is silenced (its batch-norm bias is
    -100), then that input channel's weights are made 100x the largest: in float they meet
    only zeros, but they set every output channel's int8 scale, so the useful weights round
    to a few levels.
    """
    planted = copy.deepcopy(model)
    modules = dict(planted.named_modules())
    block = PLANTED_LAYER.rsplit(".", 1)[0]
    with torch.no_grad():
        modules[f"{block}.4"].bias[0] = -100.0
        weight = modules[PLANTED_LAYER].weight
        weight[:, 0] = 100.0 * weight.abs().amax(dim=(1, 2, 3)).view(-1, 1, 1)
    return planted


def test_search_keeps_exactly_the_planted_layer_float(mobilenet, batches):
    model, _ = mobilenet
    calibration, held_out = batches
    planted = plant_outliers(model)
    config = QuantizationConfig()

    result = sensitivity.search(planted, calibration[0], calibration, held_out, config)
    kept = [result.layer_names[n] for n in result.chosen.float_nodes]

    assert result.all_int8.sqnr_db < config.fidelity.min_sqnr_db
    assert kept == [PLANTED_LAYER] and result.met
    assert result.sensitivity[0].gain_db is not None
    assert any("outlier weights" in cause and PLANTED_LAYER in cause for cause in result.causes)


def test_fidelity_miss_can_fail_the_job(digits_files, tmp_path):
    recipe = Recipe.model_validate(
        {
            "quantization": {
                "fidelity": {"min_sqnr_db": 120, "max_float_layer_share": 0.0},
                "on_fidelity_miss": "fail",
            },
            "targets": ["pte"],
            "benchmark": FAST_BENCHMARK,
        }
    )
    with pytest.raises(FidelityMissed) as caught:
        convert(digits_files["pt2"], recipe, tmp_path, calibration_path=digits_files["calibration"])

    assert "120.0 dB" in caught.value.message and caught.value.field == "quantization.fidelity"


def test_fidelity_miss_warns_by_default(digits_files, tmp_path):
    recipe = Recipe.model_validate(
        {
            "quantization": {"fidelity": {"min_sqnr_db": 120, "max_float_layer_share": 0.0}},
            "targets": ["pte"],
            "benchmark": FAST_BENCHMARK,
        }
    )
    report = convert(
        digits_files["pt2"], recipe, tmp_path, calibration_path=digits_files["calibration"]
    )

    assert report.quantization.mixed_precision.met is False
    assert any("misses the fidelity target" in w for w in report.warnings)


def test_ptl_observes_conv_relu6_over_the_clamped_range(mobilenet, batches, monkeypatch):
    from worker.pipeline import quantize

    model, _ = mobilenet
    calibration, held_out = batches
    reference = torch.cat([model(b) for b in held_out]).detach()
    config = QuantizationConfig()
    clamped = quantize.relu6_fed_modules(model)

    ours = quantize.quantize_fx(model, calibration[0], calibration, config)
    monkeypatch.setattr(quantize, "relu6_fed_modules", lambda module: [])
    stock = quantize.quantize_fx(model, calibration[0], calibration, config)
    sqnr = {
        name: sensitivity.sqnr_db(reference, torch.cat([q(b) for b in held_out]))
        for name, q in [("ours", ours), ("stock", stock)]
    }

    assert "blocks.0.conv.0" in clamped and "stem.0" not in clamped  # stem reads the input
    assert ours.get_submodule("blocks.0.conv.0").scale <= 6.0 / 255.0 + 1e-6
    assert sqnr["ours"] >= sqnr["stock"] >= QuantizationConfig().fidelity.min_sqnr_db
