"""Measure what docs/QUANTIZATION.md reports: stock against fused-clamp int8, and the search.

Run: .venv/bin/python scripts/measure_quantization.py > /tmp/quantization.md
Everything is built here: the digits MobileNetV2-like net trains in about a minute.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.schemas import Recipe  # noqa: E402
from tests.models import DIGITS_SHAPE, digits_data, trained_digits_mobilenet  # noqa: E402
from tests.pipeline.test_quantization import plant_outliers, quantize_with  # noqa: E402
from worker.pipeline import sensitivity  # noqa: E402
from worker.pipeline.quantizer import MobileXNNPACKQuantizer, StockXNNPACKQuantizer  # noqa: E402
from worker.pipeline.run import convert  # noqa: E402


def accuracy(outputs: torch.Tensor, labels: np.ndarray) -> float:
    return float((outputs.argmax(1).numpy() == labels).mean())


def main() -> None:
    data = digits_data()
    model = trained_digits_mobilenet(data)
    calibration = list(torch.from_numpy(data.train_x[:96]).split(DIGITS_SHAPE[0]))
    test = torch.from_numpy(data.test_x[:392])
    labels = data.test_y[:392]
    with torch.no_grad():
        reference = torch.cat([model(b) for b in test.split(8)])

    print("| quantizer (.pte, PT2E, per-channel) | output SQNR dB | top-1 accuracy |")
    print("| --- | --- | --- |")
    print(f"| float32 | - | {accuracy(reference, labels):.4f} |")
    for name, quantizer in [("stock XNNPACKQuantizer", StockXNNPACKQuantizer()),
                            ("mobileconv (conv/linear + clamp fused)", MobileXNNPACKQuantizer())]:
        quantized = quantize_with(quantizer, model, calibration)
        with torch.no_grad():
            outputs = torch.cat([quantized(b) for b in test.split(8)])
        sqnr = sensitivity.sqnr_db(reference, outputs)
        print(f"| {name} | {sqnr:.2f} | {accuracy(outputs, labels):.4f} |")

    planted = plant_outliers(model)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        torch.export.save(torch.export.export(planted, (calibration[0],)), root / "m.pt2")
        np.savez(root / "cal.npz", inputs=data.train_x[:128])
        np.savez(root / "eval.npz", inputs=data.test_x, labels=data.test_y)
        recipe = Recipe.model_validate({"benchmark": {"eval_samples": 392}})
        report = convert(root / "m.pt2", recipe, root / "out", calibration_path=root / "cal.npz",
                         evaluation_path=root / "eval.npz")
    mixed = report.quantization.mixed_precision
    pte = next(a for a in report.artifacts if a.target == "pte")
    print()
    print("| planted-outlier net | value |")
    print("| --- | --- |")
    print(f"| layers kept float | {', '.join(mixed.float_layers) or 'none'} "
          f"(cap {mixed.max_float_layers}) |")
    print(f"| held-out SQNR before / after search | {mixed.sqnr_before_db} / "
          f"{mixed.sqnr_after_db} dB |")
    print(f"| .pte size all-int8 / chosen | {mixed.all_int8_bytes} / {pte.bytes} bytes |")
    print(f"| .pte p50 all-int8 / chosen | {mixed.all_int8_p50_ms:.3f} / "
          f"{pte.measurement.latency.p50_ms:.3f} ms |")
    for artifact in report.artifacts:
        fidelity = artifact.measurement.fidelity
        print(f"| {artifact.target} accuracy (float {fidelity.reference_top1_accuracy:.4f}) | "
              f"{fidelity.top1_accuracy:.4f}, SQNR {fidelity.sqnr_db:.2f} dB |")
    print()
    print("Worst layers:", ", ".join(f"{s.layer} {s.sqnr_db} dB (gain {s.gain_db})"
                                     for s in mixed.sensitivity[:3]))
    print("Warnings:", *report.warnings, sep="\n- ")


if __name__ == "__main__":
    main()
