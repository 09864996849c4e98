"""Pydantic models that are mobileconv's contract: the recipe a client sends, the report the
engine writes, and the job document the API serves.

The worker imports these too, so the engine and the API cannot disagree about a field.
Nothing here imports torch.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

REPORT_SCHEMA_VERSION = 1

TORCHVISION_ARCHITECTURES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "shufflenet_v2_x1_0",
    "squeezenet1_1",
    "efficientnet_b0",
)

Target = Literal["pte", "ptl"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PruningConfig(_Strict):
    """How to prune before quantizing.

    Attributes:
        method: ``none``; ``magnitude`` zeroes the smallest weights (unstructured: smaller
            compressed files, no speed-up by itself); ``channel`` removes whole channels with
            Torch-Pruning's dependency graph (needs a torchvision architecture).
        amount: fraction of weights (magnitude) or channels (channel) to remove, 0 to 0.95.
        scope: ``global`` ranks all layers' weights together, ``layer`` prunes each layer by
            ``amount`` (magnitude only).
        exclude: module names never pruned (magnitude and channel).
        round_to: channel counts after pruning are multiples of this (channel only).
        prune_classifier: also prune the last Linear layer's inputs (channel only).
    """

    method: Literal["none", "magnitude", "channel"] = "none"
    amount: float = Field(0.0, ge=0.0, le=0.95)
    scope: Literal["global", "layer"] = "global"
    exclude: list[str] = Field(default_factory=list, max_length=1000)
    round_to: int = Field(8, ge=1, le=256)
    prune_classifier: bool = False


class FidelityTarget(_Strict):
    """What int8 must keep, checked on held-out calibration samples (``.pte`` search).

    Attributes:
        min_sqnr_db: least output SQNR against the float model, in dB (default 20).
        min_top1_agreement: least share of held-out samples with the float model's top-1
            class, 0 to 1 (default: not checked).
        max_float_layer_share: most Conv/Linear layers, as a share of all of them, that the
            search may keep in float (default 0.10; at least one layer when above 0).
        sensitivity_layers: how many of the worst layers are listed in the report and tried
            in float by the search (default 8).
    """

    min_sqnr_db: float = Field(20.0, ge=-50.0, le=150.0)
    min_top1_agreement: float | None = Field(None, ge=0.0, le=1.0)
    max_float_layer_share: float = Field(0.10, ge=0.0, le=1.0)
    sensitivity_layers: int = Field(8, ge=0, le=256)


class QuantizationConfig(_Strict):
    """How to quantize to int8.

    Attributes:
        mode: ``static`` (post-training, calibrated activations, per-channel weights),
            ``dynamic`` (weights int8, activations quantized at run time; for Linear/LSTM
            models) or ``none`` (float32 artifacts).
        calibration_samples: most samples used for calibration (default 64).
        ptl_engine: quantized engine the ``.ptl`` is built for; ``qnnpack`` is what phones run.
        per_channel: per-channel weight scales (default on; per-tensor loses about 10 dB).
        fidelity: the target static int8 must meet; layers are kept in float until it is.
        on_fidelity_miss: ``warn`` (default: the job succeeds with a warning and the best
            fidelity reached) or ``fail`` (the job fails with code fidelity-target-missed).
    """

    mode: Literal["none", "static", "dynamic"] = "static"
    calibration_samples: int = Field(64, ge=1, le=4096)
    ptl_engine: Literal["qnnpack", "x86"] = "qnnpack"
    per_channel: bool = True
    fidelity: FidelityTarget = Field(default_factory=FidelityTarget)
    on_fidelity_miss: Literal["warn", "fail"] = "warn"


class BenchmarkConfig(_Strict):
    """How to measure each artifact.

    Attributes:
        runs: timed runs after warm-up (default 30).
        warmup: untimed runs first (default 5).
        threads: intra-op threads for every runtime, original model included (default 1).
        eval_samples: most held-out samples used for fidelity (default 64).
    """

    runs: int = Field(30, ge=1, le=10_000)
    warmup: int = Field(5, ge=0, le=1000)
    threads: int = Field(1, ge=1, le=64)
    eval_samples: int = Field(64, ge=1, le=4096)


class Recipe(_Strict):
    """What to do with one model.

    Attributes:
        architecture: torchvision architecture to build; the uploaded file is then its
            ``state_dict``. Leave empty for ExportedProgram and TorchScript files.
        num_classes: classifier width for ``architecture`` (default 1000).
        input_shape: shape of one input batch, batch dimension included, e.g. [1, 3, 224, 224].
            Exported programs have static shapes, so artifacts take exactly this shape.
        input_dtype: dtype of the input (only float32 is supported).
        targets: artifacts to build, ``pte`` (ExecuTorch, XNNPACK) and/or ``ptl`` (lite
            interpreter).
        bytecode_version: write the ``.ptl`` at this older bytecode version (for older
            Android runtimes), e.g. 7, 6 or 5.
        pruning, quantization, benchmark: see their models.
        callback_url: where the final job document is POSTed (service only).
    """

    architecture: Literal[TORCHVISION_ARCHITECTURES] | None = None  # type: ignore[valid-type]
    num_classes: int = Field(1000, ge=1, le=100_000)
    input_shape: Annotated[list[int], Field(min_length=1, max_length=6)] | None = None
    input_dtype: Literal["float32"] = "float32"
    targets: Annotated[list[Target], Field(min_length=1, max_length=2)] = Field(
        default_factory=lambda: ["pte", "ptl"]
    )
    bytecode_version: int | None = Field(None, ge=4, le=9)
    pruning: PruningConfig = Field(default_factory=PruningConfig)
    quantization: QuantizationConfig = Field(default_factory=QuantizationConfig)
    benchmark: BenchmarkConfig = Field(default_factory=BenchmarkConfig)
    callback_url: HttpUrl | None = None

    @field_validator("input_shape")
    @classmethod
    def _dimensions_positive(cls, shape: list[int] | None) -> list[int] | None:
        if shape is not None and any(d < 1 or d > 8192 for d in shape):
            raise ValueError(f"every dimension must be between 1 and 8192, got {shape}")
        return shape

    @field_validator("targets")
    @classmethod
    def _targets_unique(cls, targets: list[str]) -> list[str]:
        if len(set(targets)) != len(targets):
            raise ValueError(f"targets must not repeat, got {targets}")
        return targets

    @model_validator(mode="after")
    def _pruning_needs_amount(self) -> Recipe:
        if self.pruning.method != "none" and self.pruning.amount == 0.0:
            raise ValueError("pruning.amount must be above 0 when pruning.method is set")
        return self


# ---------------------------------------------------------------------------------------------
# The report


class LatencyStats(BaseModel):
    """Wall-clock latency of one forward call, in milliseconds, after warm-up."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    runs: int = Field(description="Timed runs.")
    warmup: int = Field(description="Untimed runs before timing.")
    threads: int = Field(description="Intra-op threads the runtime used.")


class Fidelity(BaseModel):
    """An artifact's outputs against the original float model on the same held-out inputs."""

    samples: int = Field(description="Held-out samples compared.")
    sqnr_db: float = Field(description="10*log10(signal power / error power), higher is better.")
    centered_sqnr_db: float = Field(
        description="SQNR after subtracting each model's mean output over the samples; "
        "removes the input-independent part that flatters random-init models."
    )
    cosine_similarity: float = Field(description="Mean cosine similarity of output vectors.")
    max_abs_error: float
    top1_agreement: float = Field(description="Share of samples with the same argmax, 0 to 1.")
    confident_top1_agreement: float | None = Field(
        None,
        description="Agreement on samples where the original's softmax top-1 is >= 0.9; "
        "None when there are none.",
    )
    confident_samples: int = 0
    distinct_top1_classes: int = Field(
        description="Distinct argmax classes of the original model; 1 or 2 means agreement "
        "says little."
    )
    top1_accuracy: float | None = Field(None, description="Artifact accuracy when labels given.")
    reference_top1_accuracy: float | None = Field(
        None, description="Original model's accuracy on the same labelled samples."
    )


class MemoryStats(BaseModel):
    """Resident memory (RSS) measured from /proc while loading and running the artifact."""

    peak_rss_increase_bytes: int = Field(
        description="Peak RSS during load + warm-up + timed runs minus RSS just before load."
    )
    peak_rss_bytes: int = Field(description="Peak RSS of the measuring process.")


class Measurement(BaseModel):
    """Latency, memory and fidelity of one model in one runtime."""

    runtime: str = Field(description="eager-pytorch, lite-interpreter or executorch.")
    latency: LatencyStats
    memory: MemoryStats
    fidelity: Fidelity | None = None


class ArtifactReport(BaseModel):
    """One artifact as written and as measured in the runtime that will run it."""

    target: Target
    file: str
    bytes: int
    sha256: str
    int8: bool = Field(description="True when the artifact carries int8 weights.")
    weight_sparsity: float | None = Field(
        None, description="Share of exactly-zero weight values read back from the artifact."
    )
    fidelity_vs_pruned: Fidelity | None = Field(
        None,
        description="Fidelity against the pruned float model (before quantization), so the "
        "loss from quantization alone is visible; only when pruning ran.",
    )
    export: dict[str, object] = Field(
        default_factory=dict,
        description="Target-specific facts: delegated and non-delegated operators (pte); "
        "passes run, bytecode version and operator list file (ptl).",
    )
    measurement: Measurement


class PruningReport(BaseModel):
    method: str
    amount: float
    scope: str | None = None
    sparsity: float | None = Field(None, description="Zero share of prunable weights (magnitude).")
    macs_before: int | None = None
    macs_after: int | None = None
    params_before: int
    params_after: int
    note: str


class LayerSensitivity(BaseModel):
    """How badly one Conv/Linear layer takes int8."""

    layer: str = Field(description="Module path of the layer, e.g. features.3.conv.0.0.")
    node: str = Field(description="Node name in the exported graph.")
    sqnr_db: float = Field(description="The layer's output in the all-int8 model against float.")
    gain_db: float | None = Field(
        None, description="Model output SQNR gained when this layer alone stays float."
    )


class MixedPrecisionReport(BaseModel):
    """The fidelity target and what the search did to meet it (``.pte`` path)."""

    enforced: bool = Field(description="False with synthetic calibration: nothing to trust.")
    note: str
    target_sqnr_db: float
    target_top1_agreement: float | None = None
    met: bool | None = None
    held_out_samples: int = 0
    max_float_layers: int = 0
    float_layers: list[str] = Field(default_factory=list)
    sqnr_before_db: float | None = Field(None, description="All layers int8.")
    sqnr_after_db: float | None = Field(None, description="With float_layers kept in float.")
    top1_agreement_before: float | None = None
    top1_agreement_after: float | None = None
    all_int8_bytes: int | None = Field(None, description="Size of the all-int8 .pte, to compare.")
    all_int8_p50_ms: float | None = Field(None, description="Its latency in ExecuTorch.")
    sensitivity: list[LayerSensitivity] = Field(
        default_factory=list, description="The worst layers by sqnr_db, worst first."
    )


class QuantizationReport(BaseModel):
    mode: str
    calibration_source: Literal["user", "synthetic", "none"]
    calibration_samples: int
    held_out_samples: int = Field(description="Samples kept out of calibration for fidelity.")
    schemes: dict[str, str] = Field(description="Scheme used per target.")
    mixed_precision: MixedPrecisionReport | None = None


class ModelInfo(BaseModel):
    format: Literal["exported-program", "torchscript", "torchvision"]
    sha256: str
    bytes: int
    architecture: str | None = None
    input_shape: list[int]
    input_dtype: str
    parameters: int


class HostInfo(BaseModel):
    cpu_model: str
    cpu_flags: list[str] = Field(description="SIMD flags relevant to int8 kernels.")
    logical_cpus: int
    platform: str
    python: str
    libraries: dict[str, str]


class Report(BaseModel):
    """Everything the engine did and measured for one conversion (``report.json``)."""

    schema_version: int = REPORT_SCHEMA_VERSION
    model: ModelInfo
    recipe: Recipe
    pruning: PruningReport | None = None
    quantization: QuantizationReport
    original: Measurement = Field(description="The original float model in eager PyTorch.")
    artifacts: list[ArtifactReport]
    evaluation_source: Literal["user", "held-out-calibration", "synthetic"]
    stage_seconds: dict[str, float] = Field(description="Wall time of each stage.")
    warnings: list[str] = Field(default_factory=list)
    host: HostInfo


# ---------------------------------------------------------------------------------------------
# Jobs, as the API serves them


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

Stage = Literal["queued", "loading", "pruning", "quantizing", "exporting", "benchmarking", "done"]


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorDocument(BaseModel):
    error: ErrorBody


class Artifact(BaseModel):
    name: str
    media_type: str
    bytes: int
    sha256: str
    url: str
    expires_at: datetime


class Job(BaseModel):
    id: str
    status: JobStatus
    stage: Stage
    progress: float = Field(ge=0.0, le=1.0)
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    recipe: Recipe
    model_sha256: str
    error: ErrorBody | None = None
    report: Report | None = None
    artifacts: list[Artifact] = Field(default_factory=list)


class JobList(BaseModel):
    jobs: list[Job]
    next_cursor: str | None = None
