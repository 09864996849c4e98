"""The ``mobileconv`` command: convert a model on this machine, or talk to a running service.

``mobileconv convert`` runs the engine in-process and prints a progress line per stage and a
summary table; ``submit``, ``status`` and ``fetch`` talk to the REST service.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from service.errors import ConversionError
from service.schemas import Recipe, Report


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "convert":
        return run_convert(args)
    from service.client_cli import run_client_command

    return run_client_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mobileconv", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    commands = parser.add_subparsers(dest="command", required=True)
    add_convert_command(commands)
    try:
        from service.client_cli import add_client_commands
    except ImportError:
        pass
    else:
        add_client_commands(commands)
    return parser


def add_convert_command(commands: argparse._SubParsersAction) -> None:
    convert = commands.add_parser(
        "convert",
        help="convert a model here, without the service",
        description="Prune, quantize, export and benchmark MODEL; flags override the recipe.",
    )
    convert.add_argument("model", type=Path, help=".pt2, TorchScript, or state_dict file")
    convert.add_argument("--recipe", type=Path, help="recipe JSON file (see README)")
    convert.add_argument("--calibration", type=Path, help=".npy/.npz calibration inputs")
    convert.add_argument("--evaluation", type=Path, help=".npz evaluation inputs (+ labels)")
    convert.add_argument("--out", type=Path, required=True, help="output directory")
    convert.add_argument("--architecture", help="torchvision architecture of a state_dict")
    convert.add_argument("--num-classes", type=int)
    convert.add_argument("--input-shape", help="e.g. 1,3,224,224")
    convert.add_argument("--targets", help="pte,ptl (default both)")
    convert.add_argument("--prune", choices=["none", "magnitude", "channel"])
    convert.add_argument("--prune-amount", type=float)
    convert.add_argument("--quantize", choices=["static", "dynamic", "none"])
    convert.add_argument("--ptl-engine", choices=["qnnpack", "x86"])
    convert.add_argument("--bytecode-version", type=int)
    convert.add_argument("--threads", type=int)
    convert.add_argument("--runs", type=int)
    convert.add_argument("--json", action="store_true", help="print the report JSON at the end")


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The recipe file (if any) with the command-line flags laid over it."""
    document = json.loads(args.recipe.read_text()) if args.recipe else {}
    overrides = {
        ("architecture",): args.architecture,
        ("num_classes",): args.num_classes,
        ("input_shape",): _int_list(args.input_shape),
        ("targets",): args.targets.split(",") if args.targets else None,
        ("pruning", "method"): args.prune,
        ("pruning", "amount"): args.prune_amount,
        ("quantization", "mode"): args.quantize,
        ("quantization", "ptl_engine"): args.ptl_engine,
        ("bytecode_version",): args.bytecode_version,
        ("benchmark", "threads"): args.threads,
        ("benchmark", "runs"): args.runs,
    }
    for keys, value in overrides.items():
        if value is None:
            continue
        section = document
        for key in keys[:-1]:
            section = section.setdefault(key, {})
        section[keys[-1]] = value
    return Recipe.model_validate(document)


def _int_list(text: str | None) -> list[int] | None:
    if not text:
        return None
    return [int(part) for part in text.replace("x", ",").split(",") if part.strip()]


def run_convert(args: argparse.Namespace) -> int:
    try:
        recipe = recipe_from_args(args)
    except (ValidationError, ValueError, OSError) as exc:
        print(f"mobileconv: invalid recipe: {exc}", file=sys.stderr)
        return 2

    from worker.pipeline.run import convert

    progress = StageProgress()
    try:
        report = convert(
            args.model,
            recipe,
            args.out,
            calibration_path=args.calibration,
            evaluation_path=args.evaluation,
            on_stage=progress.update,
        )
    except ConversionError as exc:
        field = f" [{exc.field}]" if exc.field else ""
        print(f"\nmobileconv: {exc.code}{field}: {exc.message}", file=sys.stderr)
        return 1

    print(summary_table(report, args.out))
    if args.json:
        print(report.model_dump_json(indent=2))
    return 0


class StageProgress:
    """Prints one line per stage with the overall progress and elapsed time."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def update(self, stage: str, progress: float) -> None:
        elapsed = time.monotonic() - self.start
        print(f"[{progress:4.0%}] {stage:<13} {elapsed:6.1f} s", file=sys.stderr, flush=True)


def summary_table(report: Report, out_dir: Path) -> str:
    """One screen: each artifact's size, latency and fidelity beside the original model."""
    original = report.original
    rows = [
        ("original", original.runtime, report.model.bytes, original.latency.p50_ms, None),
        *(
            (a.file, a.measurement.runtime, a.bytes, a.measurement.latency.p50_ms,
             a.measurement.fidelity)
            for a in report.artifacts
        ),
    ]
    lines = [
        f"{'artifact':<12} {'runtime':<17} {'size':>10} {'p50 ms':>9} {'SQNR dB':>8} "
        f"{'top-1 agr':>9} {'accuracy':>9}",
    ]
    for name, runtime, size, p50, fidelity in rows:
        sqnr = f"{fidelity.sqnr_db:8.1f}" if fidelity else f"{'-':>8}"
        agreement = f"{fidelity.top1_agreement:9.1%}" if fidelity else f"{'-':>9}"
        accuracy = (
            f"{fidelity.top1_accuracy:9.1%}"
            if fidelity and fidelity.top1_accuracy is not None
            else f"{'-':>9}"
        )
        lines.append(
            f"{name:<12} {runtime:<17} {size / 1e6:8.2f}MB {p50:9.3f} {sqnr} {agreement} "
            f"{accuracy}"
        )
    threads = original.latency.threads
    lines.append(f"threads: {threads}; host: {report.host.cpu_model}; out: {out_dir}")
    if report.pruning is not None and report.pruning.macs_before:
        ratio = report.pruning.macs_after / report.pruning.macs_before
        lines.append(f"pruning: MACs x{ratio:.2f}, params {report.pruning.params_after:,}")
    for warning in report.warnings:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
