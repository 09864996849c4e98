"""Real conversions of real models, loaded back by the runtimes that will run them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from service.schemas import Recipe
from tests.conftest import FAST_BENCHMARK
from worker.pipeline import readback
from worker.pipeline.run import convert


def run_lite(path: Path, batch: torch.Tensor) -> torch.Tensor:
    from torch.jit.mobile import _load_for_lite_interpreter

    return _load_for_lite_interpreter(str(path))(batch)


def run_executorch(path: Path, batch: torch.Tensor) -> torch.Tensor:
    from executorch.runtime import Runtime

    return Runtime.get().load_program(path).load_method("forward").execute((batch,))[0]


RUNNERS = {"ptl": run_lite, "pte": run_executorch}


@pytest.fixture(scope="module")
def digits_int8(digits_files, tmp_path_factory):
    """The digits CNN, static int8, both targets, evaluated on the whole labelled test split."""
    out = tmp_path_factory.mktemp("digits-int8")
    recipe = Recipe.model_validate({"benchmark": {**FAST_BENCHMARK, "eval_samples": 392}})
    report = convert(
        digits_files["pt2"],
        recipe,
        out,
        calibration_path=digits_files["calibration"],
        evaluation_path=digits_files["evaluation"],
    )
    return report, out


@pytest.mark.parametrize("target", ["pte", "ptl"])
def test_digits_int8_keeps_accuracy_within_two_points(digits_int8, target):
    report, _ = digits_int8
    artifact = next(a for a in report.artifacts if a.target == target)
    fidelity = artifact.measurement.fidelity

    assert artifact.int8 and fidelity.samples == 392
    assert fidelity.reference_top1_accuracy > 0.9
    assert fidelity.top1_accuracy >= fidelity.reference_top1_accuracy - 0.02


def test_report_fidelity_matches_a_recomputation_from_the_artifacts(digits, digits_int8):
    model, data = digits
    report, out = digits_int8
    inputs = torch.from_numpy(data.test_x[:392])
    labels = data.test_y[:392]
    with torch.no_grad():
        reference = torch.cat([model(b) for b in inputs.split(8)]).double().numpy()

    for artifact in report.artifacts:
        run = RUNNERS[artifact.target]
        outputs = torch.cat([run(out / artifact.file, b) for b in inputs.split(8)])
        outputs = outputs.detach().double().numpy()
        error = reference - outputs
        sqnr = 10 * np.log10((reference**2).sum() / (error**2).sum())
        claimed = artifact.measurement.fidelity

        assert sqnr == pytest.approx(claimed.sqnr_db, abs=1e-6)
        assert np.abs(error).max() == pytest.approx(claimed.max_abs_error, abs=1e-6)
        agreement = (reference.argmax(1) == outputs.argmax(1)).mean()
        assert agreement == pytest.approx(claimed.top1_agreement)
        assert (outputs.argmax(1) == labels).mean() == pytest.approx(claimed.top1_accuracy)


def test_report_records_conditions(digits_int8):
    report, out = digits_int8

    assert report.host.cpu_model and report.host.libraries["torch"].startswith("2.14")
    assert {a.measurement.latency.threads for a in report.artifacts} == {1}
    assert set(report.stage_seconds) >= {"loading", "quantizing", "exporting", "benchmarking"}
    assert (out / "report.json").exists() and (out / "model.ops.yaml").exists()


def test_resnet18_structured_pruning_halves_macs(torchvision_file, tmp_path):
    from torch.jit.mobile import _get_model_bytecode_version

    recipe = Recipe.model_validate(
        {
            "architecture": "resnet18",
            "input_shape": [1, 3, 64, 64],
            "pruning": {"method": "channel", "amount": 0.5},
            "bytecode_version": 5,
            "benchmark": FAST_BENCHMARK,
        }
    )
    report = convert(torchvision_file("resnet18"), recipe, tmp_path)
    batch = torch.randn(1, 3, 64, 64)

    assert report.pruning.macs_after * 2 <= report.pruning.macs_before
    assert report.pruning.params_after < report.pruning.params_before / 2
    assert _get_model_bytecode_version(str(tmp_path / "model.ptl")) == 5
    ptl = next(a for a in report.artifacts if a.target == "ptl")
    assert ptl.export["bytecode_version"] == 5
    for target, run in RUNNERS.items():
        assert run(tmp_path / f"model.{target}", batch).shape == (1, 1000)


def test_mobilenet_v2_converts_to_both_runtimes(torchvision_file, tmp_path):
    recipe = Recipe.model_validate(
        {"architecture": "mobilenet_v2", "input_shape": [1, 3, 64, 64], "benchmark": FAST_BENCHMARK}
    )
    report = convert(torchvision_file("mobilenet_v2"), recipe, tmp_path)
    batch = torch.randn(1, 3, 64, 64)

    pte = next(a for a in report.artifacts if a.target == "pte")
    assert pte.export["non_delegated_operators"] == 0
    assert any("synthetic" in warning for warning in report.warnings)
    for target, run in RUNNERS.items():
        assert torch.isfinite(run(tmp_path / f"model.{target}", batch)).all()


def test_magnitude_pruning_zeros_survive_export(digits_files, tmp_path):
    recipe = Recipe.model_validate(
        {"pruning": {"method": "magnitude", "amount": 0.5}, "benchmark": FAST_BENCHMARK}
    )
    report = convert(
        digits_files["pt2"], recipe, tmp_path, calibration_path=digits_files["calibration"]
    )

    assert report.pruning.sparsity >= 0.5
    for artifact in report.artifacts:
        assert artifact.weight_sparsity >= 0.5
    ptl_zeros = readback.zero_share(readback.ptl_weights(tmp_path / "model.ptl"))
    assert ptl_zeros >= 0.5
    assert "not" in report.pruning.note and "faster" in report.pruning.note


def test_torchscript_input_converts_to_both_targets(digits_files, tmp_path):
    recipe = Recipe.model_validate({"input_shape": [8, 1, 16, 16], "benchmark": FAST_BENCHMARK})
    report = convert(
        digits_files["torchscript"],
        recipe,
        tmp_path,
        calibration_path=digits_files["calibration"],
        evaluation_path=digits_files["evaluation"],
    )

    assert report.model.format == "torchscript"
    for artifact in report.artifacts:
        assert artifact.measurement.fidelity.sqnr_db > 15
    operators = (tmp_path / "model.ops.yaml").read_text()
    assert "quantized::conv2d" in operators


def test_dynamic_quantization_of_a_linear_model(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
    ).eval()
    path = tmp_path / "mlp.pt2"
    torch.export.save(torch.export.export(model, (torch.zeros(4, 64),)), path)
    recipe = Recipe.model_validate(
        {"quantization": {"mode": "dynamic"}, "benchmark": FAST_BENCHMARK}
    )
    report = convert(path, recipe, tmp_path / "out")

    assert report.quantization.schemes == {"pte": "pt2e-xnnpack-dynamic-int8",
                                           "ptl": "qnnpack-dynamic-int8"}
    for artifact in report.artifacts:
        assert artifact.measurement.fidelity.sqnr_db > 20
    assert "quantized::linear_dynamic" in (tmp_path / "out" / "model.ops.yaml").read_text()
