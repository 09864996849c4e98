"""The conversion engine's entry point: load -> prune -> quantize -> export -> benchmark.

``convert`` runs everything in the calling process (the CLI calls it directly; the Celery worker
calls it inside a sandboxed child process) and writes ``model.pte``, ``model.ptl``,
``model.ops.yaml`` and ``report.json`` into the output directory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from service.errors import InvalidData
from service.hashing import file_sha256
from service.schemas import (
    ArtifactReport,
    Measurement,
    MixedPrecisionReport,
    ModelInfo,
    QuantizationConfig,
    QuantizationReport,
    Recipe,
    Report,
)

from . import benchmark, data, export_pte, export_ptl, mixed, quantize, readback, sensitivity
from .fidelity import compare
from .host import host_info
from .load import LoadedModel, load_model
from .prune import prunable_weights, prune_model

logger = logging.getLogger(__name__)

StageCallback = Callable[[str, float], None]

# Where each stage starts on the 0..1 progress scale; the per-target stages (quantizing,
# exporting, benchmarking) share the span from 0.15 to 0.98 equally between targets.
STAGE_PROGRESS = {"loading": 0.02, "pruning": 0.10, "done": 1.0}
TARGET_SPAN = (0.15, 0.98)
TARGET_STAGE_OFFSET = {"quantizing": 0.0, "exporting": 0.3, "benchmarking": 0.8}
ARTIFACT_FILES = {"pte": "model.pte", "ptl": "model.ptl"}
TARGET_ORDER = ["pte", "ptl"]

SYNTHETIC_CALIBRATION_WARNING = (
    "Calibration used synthetic Gaussian inputs, so the int8 activation ranges and every "
    "fidelity figure here are not representative of real data. Upload calibration data "
    "(.npz with an 'inputs' array) for figures you can trust."
)
SYNTHETIC_EVALUATION_WARNING = (
    "Fidelity was measured on synthetic inputs, not on held-out data; upload calibration or "
    "evaluation data for representative figures."
)


class _Stages:
    """Announces stages to the caller and adds up the wall time spent in each."""

    def __init__(self, on_stage: StageCallback | None, targets: int) -> None:
        self.on_stage = on_stage
        self.targets = targets
        self.target_index = 0
        self.seconds: dict[str, float] = {}

    def progress(self, name: str) -> float:
        if name in STAGE_PROGRESS:
            return STAGE_PROGRESS[name]
        low, high = TARGET_SPAN
        share = (self.target_index + TARGET_STAGE_OFFSET[name]) / self.targets
        return round(low + (high - low) * share, 3)

    @contextmanager
    def stage(self, name: str, *, announce: bool = True) -> Iterator[None]:
        if announce and self.on_stage is not None:
            self.on_stage(name, self.progress(name))
        logger.info("stage %s started", name)
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.seconds[name] = round(self.seconds.get(name, 0.0) + elapsed, 3)


def convert(
    model_path: Path,
    recipe: Recipe,
    out_dir: Path,
    *,
    calibration_path: Path | None = None,
    evaluation_path: Path | None = None,
    on_stage: StageCallback | None = None,
) -> Report:
    """Convert one model as ``recipe`` says and return the report also written to disk.

    Raises:
        service.errors.ConversionError: for a model, recipe or data the engine cannot use; the
            message says what was expected and what was found.
    """
    torch.manual_seed(0)
    out_dir.mkdir(parents=True, exist_ok=True)
    stages = _Stages(on_stage, len(recipe.targets))
    warnings: list[str] = []

    with stages.stage("loading"):
        loaded = load_model(model_path, recipe)
        inputs = _prepare_data(loaded, recipe, calibration_path, evaluation_path, warnings)
    with stages.stage("benchmarking", announce=False):
        original = _measure_original(loaded, recipe, inputs.evaluation)

    with stages.stage("pruning"):
        pruning = prune_model(loaded, recipe.pruning)
        if pruning is not None:
            inputs.pruned_reference = _pruned_outputs(loaded, inputs.evaluation)

    artifacts = []
    # The .pte's mixed-precision search decides which layers the .ptl keeps float too.
    for index, target in enumerate(sorted(recipe.targets, key=TARGET_ORDER.index)):
        stages.target_index = index
        path = out_dir / ARTIFACT_FILES[target]
        facts = _build_artifact(target, loaded, recipe, inputs, path, stages)
        with stages.stage("benchmarking"):
            artifacts.append(_measure_artifact(target, path, facts, loaded, recipe, inputs))

    warnings += _result_warnings(artifacts)
    warnings += mixed.fidelity_warnings(
        inputs.mixed_precision,
        inputs.fidelity_causes,
        has_module_structure=loaded.has_module_structure,
    )
    report = Report(
        model=_model_info(loaded),
        recipe=recipe,
        pruning=pruning,
        quantization=_quantization_report(recipe, inputs),
        original=original,
        artifacts=artifacts,
        evaluation_source=inputs.evaluation_source,
        stage_seconds=stages.seconds,
        warnings=warnings,
        host=host_info(),
    )
    (out_dir / "report.json").write_text(report.model_dump_json(indent=2))
    if on_stage is not None:
        on_stage("done", STAGE_PROGRESS["done"])
    return report


class _Inputs:
    """Calibration batches and the evaluation set, with where each came from."""

    def __init__(
        self,
        calibration: data.SampleSet | None,
        evaluation: benchmark.EvalSet,
        evaluation_source: str,
        batch_size: int,
    ) -> None:
        self.calibration = calibration
        self.calibration_batches = [] if calibration is None else calibration.batches(batch_size)
        self.evaluation = evaluation
        self.evaluation_source = evaluation_source
        self.pruned_reference: torch.Tensor | None = None
        self.held_out_batches: list[torch.Tensor] = []
        self.mixed_precision: MixedPrecisionReport | None = None
        self.float_modules: list[str] = []
        self.fidelity_causes: list[str] = []


def _prepare_data(
    loaded: LoadedModel,
    recipe: Recipe,
    calibration_path: Path | None,
    evaluation_path: Path | None,
    warnings: list[str],
) -> _Inputs:
    shape, batch = loaded.input_shape, loaded.input_shape[0]
    quant, bench = recipe.quantization, recipe.benchmark

    calibration = held_out = None
    if calibration_path is not None:
        limit = quant.calibration_samples + bench.eval_samples
        samples = data.load_samples(calibration_path, shape, "calibration", limit)
        calibration, held_out = data.split_held_out(samples, batch)
        calibration = calibration.take(0, quant.calibration_samples)
    elif quant.mode == "static":
        calibration = data.synthetic_samples(shape, max(batch, min(quant.calibration_samples, 32)))
        warnings.append(SYNTHETIC_CALIBRATION_WARNING)

    if evaluation_path is not None:
        evaluation = data.load_samples(evaluation_path, shape, "evaluation", bench.eval_samples)
        source = "user"
    elif held_out is not None:
        evaluation = held_out.take(0, bench.eval_samples)
        source = "held-out-calibration"
    else:
        evaluation = data.synthetic_samples(shape, max(batch, min(bench.eval_samples, 16)), seed=1)
        source = "synthetic"
        warnings.append(SYNTHETIC_EVALUATION_WARNING)

    if calibration is not None and len(calibration) < batch:
        raise InvalidData(
            f"Calibration needs at least one whole batch of {batch} samples; "
            f"{len(calibration)} were given.",
            field="calibration",
        )
    if len(evaluation) < batch:
        raise InvalidData(
            f"Evaluation needs at least one whole batch of {batch} samples; "
            f"{len(evaluation)} were given.",
            field="evaluation",
        )
    eval_set = benchmark.EvalSet(evaluation.batches(batch), evaluation.batch_labels(batch))
    inputs = _Inputs(calibration, eval_set, source, batch)
    inputs.held_out_batches = [] if held_out is None else held_out.batches(batch)
    return inputs


def _measure_original(
    loaded: LoadedModel, recipe: Recipe, evaluation: benchmark.EvalSet
) -> Measurement:
    runtime = "torchscript" if loaded.format == "torchscript" else "eager-pytorch"
    measurement, outputs = benchmark.measure(
        runtime, lambda: benchmark.eager_forward(loaded.module), evaluation, recipe.benchmark
    )
    evaluation.reference = outputs
    if evaluation.labels is not None:
        labels = evaluation.labels[: outputs.shape[0]]
        accuracy = float((outputs.argmax(dim=1) == labels).double().mean())
        logger.info("original top-1 accuracy on the evaluation set: %.4f", accuracy)
    return measurement


def _pruned_outputs(loaded: LoadedModel, evaluation: benchmark.EvalSet) -> torch.Tensor:
    forward = benchmark.eager_forward(loaded.module)
    return torch.cat([forward(batch) for batch in evaluation.batches])


def _build_artifact(
    target: str, loaded: LoadedModel, recipe: Recipe, inputs: _Inputs, path: Path,
    stages: _Stages,
) -> dict[str, object]:
    if target == "pte":
        return _build_pte(loaded, recipe, inputs, path, stages)
    return _build_ptl(loaded, recipe, inputs, path, stages)


def _build_pte(
    loaded: LoadedModel, recipe: Recipe, inputs: _Inputs, path: Path, stages: _Stages
) -> dict[str, object]:
    example, config = loaded.example_input, recipe.quantization
    module = export_pte.exportable_module(loaded)
    search_result = None
    with stages.stage("quantizing"):
        if config.mode == "static" and inputs.held_out_batches:
            search_result = sensitivity.search(
                module, example, inputs.calibration_batches, inputs.held_out_batches, config
            )
            module = search_result.chosen.model
            _record_search(search_result, loaded, config, inputs)
        elif config.mode != "none":
            module = quantize.quantize_pt2e(module, example, inputs.calibration_batches, config)
    with stages.stage("exporting"):
        facts = export_pte.export_pte(module, example, path)

    if search_result is not None and search_result.chosen.float_nodes:
        with stages.stage("benchmarking"):
            mixed.measure_all_int8(search_result, example, path, inputs.mixed_precision,
                                   inputs.evaluation, recipe.benchmark)
    return facts


def _record_search(
    result: sensitivity.SearchResult, loaded: LoadedModel, config: QuantizationConfig,
    inputs: _Inputs,
) -> None:
    """Keep the search's outcome for the report and the .ptl; fail now if asked to."""
    held_out_samples = len(inputs.held_out_batches) * loaded.input_shape[0]
    inputs.mixed_precision = mixed.report_search(result, config, held_out_samples)
    inputs.fidelity_causes = result.causes
    inputs.float_modules = [result.layer_names[n] for n in sorted(result.chosen.float_nodes)]
    mixed.enforce_target(inputs.mixed_precision, result.causes, config)


def _build_ptl(
    loaded: LoadedModel, recipe: Recipe, inputs: _Inputs, path: Path, stages: _Stages
) -> dict[str, object]:
    example, config = loaded.example_input, recipe.quantization
    calibration = inputs.calibration_batches
    with stages.stage("quantizing"):
        if config.mode == "none":
            scripted = export_ptl.script_module(loaded.module, example)
        elif loaded.has_module_structure:
            quantized = quantize.quantize_fx(
                loaded.module, example, calibration, config, float_modules=inputs.float_modules
            )
            scripted = export_ptl.script_module(quantized, example)
        else:
            graph = quantize.prepare_graph_for_jit(export_pte.exportable_module(loaded))
            scripted = export_ptl.script_module(graph, example)
            scripted = quantize.quantize_torchscript(scripted, calibration, config)
    with stages.stage("exporting"):
        return export_ptl.export_ptl(scripted, path, recipe.bytecode_version)


def _measure_artifact(
    target: str,
    path: Path,
    facts: dict[str, object],
    loaded: LoadedModel,
    recipe: Recipe,
    inputs: _Inputs,
) -> ArtifactReport:
    if target == "pte":
        runtime, load = "executorch", lambda: benchmark.executorch_forward(path)
    else:
        runtime, load = "lite-interpreter", lambda: benchmark.lite_forward(path)
    measurement, outputs = benchmark.measure(runtime, load, inputs.evaluation, recipe.benchmark)
    vs_pruned = None
    if inputs.pruned_reference is not None:
        vs_pruned = compare(inputs.pruned_reference, outputs, inputs.evaluation.labels)

    sparsity = None
    if recipe.pruning.method == "magnitude":
        if target == "ptl":
            sparsity = readback.zero_share(readback.ptl_weights(path))
        else:
            numels = {int(w.numel()) for w in prunable_weights(loaded.module)}
            sparsity = readback.zero_share(readback.pte_weights(path, numels))

    return ArtifactReport(
        target=target,
        file=path.name,
        bytes=path.stat().st_size,
        sha256=file_sha256(path),
        int8=recipe.quantization.mode != "none",
        weight_sparsity=sparsity,
        fidelity_vs_pruned=vs_pruned,
        export=facts,
        measurement=measurement,
    )


def _quantization_report(recipe: Recipe, inputs: _Inputs) -> QuantizationReport:
    config = recipe.quantization
    schemes = {}
    for target in recipe.targets:
        if config.mode == "none":
            schemes[target] = "float32"
        elif target == "pte":
            schemes[target] = f"pt2e-xnnpack-{config.mode}-int8"
        else:
            schemes[target] = f"{config.ptl_engine}-{config.mode}-int8"
    source = "none" if inputs.calibration is None else inputs.calibration.source
    batch = inputs.evaluation.batches[0].shape[0]
    return QuantizationReport(
        mode=config.mode,
        calibration_source=source,
        calibration_samples=0 if inputs.calibration is None else len(inputs.calibration),
        held_out_samples=len(inputs.held_out_batches) * batch,
        schemes=schemes,
        mixed_precision=inputs.mixed_precision or mixed.unenforced(recipe.quantization, source),
    )


def _model_info(loaded: LoadedModel) -> ModelInfo:
    return ModelInfo(
        format=loaded.format,
        sha256=loaded.sha256,
        bytes=loaded.file_bytes,
        architecture=loaded.architecture,
        input_shape=loaded.input_shape,
        input_dtype="float32",
        parameters=sum(p.numel() for p in loaded.module.parameters()),
    )


def _result_warnings(artifacts: list[ArtifactReport]) -> list[str]:
    warnings = []
    for artifact in artifacts:
        fidelity, vs_pruned = artifact.measurement.fidelity, artifact.fidelity_vs_pruned
        if fidelity and vs_pruned and vs_pruned.sqnr_db - fidelity.sqnr_db > 6.0:
            warnings.append(
                f"Pruning changed the model's outputs (the {artifact.target} artifact has "
                f"{fidelity.sqnr_db:.1f} dB SQNR against the original but "
                f"{vs_pruned.sqnr_db:.1f} dB against the pruned float model); fine-tune the "
                "pruned model, or prune less."
            )
            break
    for artifact in artifacts:
        fidelity = artifact.measurement.fidelity
        if fidelity is not None and fidelity.distinct_top1_classes <= 2:
            warnings.append(
                f"The original model predicts only {fidelity.distinct_top1_classes} distinct "
                "class(es) on the evaluation inputs, so top-1 agreement says little; judge "
                "fidelity by centered_sqnr_db, or evaluate on real data."
            )
            break
    for artifact in artifacts:
        if artifact.export.get("optimize_for_mobile") is False:
            warnings.append(
                "optimize_for_mobile is unavailable (this torch was built without XNNPACK); "
                f"the .ptl got the portable passes instead: {artifact.export['passes']}."
            )
        if artifact.export.get("non_delegated_operators"):
            warnings.append(
                "Some operators stay outside the XNNPACK delegate and run on portable "
                f"kernels: {artifact.export['non_delegated']}."
            )
    return warnings
