"""Stage 4b: export for the PyTorch Mobile lite interpreter (``.ptl``).

``optimize_for_mobile`` runs where the installed torch was built with XNNPACK. The pip wheels
since 2.13 are not, and the call fails inside the XNNPACK rewrite pass; then the model is
frozen (which folds conv+batch-norm and other constants) and the portable passes below run,
and the report lists exactly which passes ran.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from service.errors import ExportFailed

logger = logging.getLogger(__name__)

PORTABLE_PASSES = ("freeze", "remove_dropout", "fuse_add_relu")


def script_module(module: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """Trace a module to TorchScript (a ScriptModule is returned as it is)."""
    if isinstance(module, torch.jit.ScriptModule):
        return module.eval()
    if not isinstance(module, torch.fx.GraphModule):
        # Modules unlifted from an ExportedProgram refuse eval(); they are in eval mode.
        module.eval()
    try:
        with torch.no_grad():
            return torch.jit.trace(module, (example,), check_trace=False)
    except Exception as exc:
        raise ExportFailed(
            f"Tracing to TorchScript for the lite interpreter failed: {_first_line(exc)}",
            field="targets",
        ) from exc


def optimize(scripted: torch.jit.ScriptModule) -> tuple[torch.jit.ScriptModule, list[str]]:
    """Mobile optimizations: ``optimize_for_mobile`` if it works here, else portable passes."""
    from torch.utils.mobile_optimizer import optimize_for_mobile

    try:
        return optimize_for_mobile(scripted.eval()), ["optimize_for_mobile"]
    except RuntimeError as exc:
        if "XNNPACK" not in str(exc):
            raise ExportFailed(
                f"optimize_for_mobile failed: {_first_line(exc)}", field="targets"
            ) from exc
        logger.warning("torch has no XNNPACK; running the portable passes instead")

    frozen = torch.jit.freeze(scripted.eval())
    torch._C._jit_pass_remove_dropout(frozen._c)
    torch._C._jit_pass_fuse_add_relu(frozen.graph)
    return frozen, list(PORTABLE_PASSES)


def export_ptl(
    scripted: torch.jit.ScriptModule, path: Path, bytecode_version: int | None
) -> dict[str, object]:
    """Optimize, save for the lite interpreter, backport if asked, write the operator list."""
    from torch.jit.mobile import (
        _backport_for_mobile,
        _export_operator_list,
        _get_model_bytecode_version,
        _load_for_lite_interpreter,
    )

    optimized, passes = optimize(scripted)
    optimized._save_for_lite_interpreter(str(path))
    written_version = _get_model_bytecode_version(str(path))

    if bytecode_version is not None and bytecode_version < written_version:
        backported = path.with_suffix(".backport.ptl")
        if not _backport_for_mobile(str(path), str(backported), bytecode_version):
            raise ExportFailed(
                f"Backporting the .ptl from bytecode version {written_version} to "
                f"{bytecode_version} failed; the oldest version this torch can write is 4.",
                field="bytecode_version",
            )
        backported.replace(path)
        written_version = _get_model_bytecode_version(str(path))

    operators = sorted(_export_operator_list(_load_for_lite_interpreter(str(path))))
    ops_path = path.with_name("model.ops.yaml")
    ops_path.write_text("".join(f"- {op}\n" for op in operators))
    logger.info("wrote %s (bytecode v%d, %d operators)", path.name, written_version, len(operators))
    return {
        "passes": passes,
        "optimize_for_mobile": passes == ["optimize_for_mobile"],
        "bytecode_version": written_version,
        "operators": len(operators),
        "operator_list_file": ops_path.name,
    }


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
