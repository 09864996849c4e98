"""Stage 2: pruning.

Two methods:

- magnitude: unstructured L1 pruning of Conv and Linear weights, ranked over all layers
  (global) or within each layer; the zeros make compressed files smaller but the dense kernels
  of XNNPACK and the lite interpreter run just as long.
- channel: structured pruning with Torch-Pruning's dependency graph (Fang et al., "DepGraph:
  Towards Any Structural Pruning", CVPR 2023), which removes whole channels together with
  everything that depends on them, so the pruned model is smaller and does fewer MACs.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from service.errors import UnsupportedRecipe
from service.schemas import PruningConfig, PruningReport

from .load import LoadedModel

logger = logging.getLogger(__name__)

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)

MAGNITUDE_NOTE = (
    "Unstructured pruning zeroes weights in place: the artifacts compress better (zip, gzip) "
    "but are not smaller on disk and run no faster, since the kernels stay dense."
)
CHANNEL_NOTE = "Structured pruning removed whole channels: fewer MACs and parameters."


def prune_model(loaded: LoadedModel, config: PruningConfig) -> PruningReport | None:
    """Prune ``loaded.module`` in place as ``config`` says; None when no pruning was asked."""
    if config.method == "none":
        return None
    if config.method == "magnitude":
        return prune_magnitude(loaded.module, config)
    return prune_channels(loaded, config)


def prune_magnitude(module: nn.Module, config: PruningConfig) -> PruningReport:
    """Zero the ``config.amount`` smallest weights by absolute value."""
    params_before = count_parameters(module)
    targets = _magnitude_targets(module, config.exclude)
    if not targets:
        raise UnsupportedRecipe(
            "Magnitude pruning found no Conv or Linear weights to prune (after "
            f"pruning.exclude={config.exclude}).",
            field="pruning.exclude",
        )

    with torch.no_grad():
        if config.scope == "global":
            _zero_smallest([weight for _, weight in targets], config.amount)
        else:
            for _, weight in targets:
                _zero_smallest([weight], config.amount)

    sparsity = weight_sparsity([weight for _, weight in targets])
    logger.info("magnitude pruning (%s) left %.1f%% zeros", config.scope, 100 * sparsity)
    return PruningReport(
        method="magnitude",
        amount=config.amount,
        scope=config.scope,
        sparsity=sparsity,
        params_before=params_before,
        params_after=count_parameters(module),
        note=MAGNITUDE_NOTE,
    )


def _magnitude_targets(module: nn.Module, exclude: list[str]) -> list[tuple[str, torch.Tensor]]:
    """Conv/Linear weights of an eager module, or 2-D+ float weights of a graph module."""
    targets = []
    for name, sub in module.named_modules():
        if isinstance(sub, PRUNABLE) and not _is_excluded(name, exclude):
            targets.append((name, sub.weight))
    if targets:
        return targets

    # Graph modules from ExportedProgram or TorchScript keep parameters but not layer types;
    # weights with two or more dimensions are the Conv and Linear kernels.
    for name, param in module.named_parameters():
        owner = name.rsplit(".", 1)[0]
        if param.dim() >= 2 and name.endswith("weight") and not _is_excluded(owner, exclude):
            targets.append((owner, param))
    return targets


def prunable_weights(module: nn.Module) -> list[torch.Tensor]:
    """Every weight magnitude pruning would consider, with nothing excluded."""
    return [weight for _, weight in _magnitude_targets(module, [])]


def _is_excluded(name: str, exclude: list[str]) -> bool:
    return any(name == entry or name.startswith(entry + ".") for entry in exclude)


def _zero_smallest(weights: list[torch.Tensor], amount: float) -> None:
    magnitudes = torch.cat([w.detach().abs().flatten() for w in weights])
    count = int(round(amount * magnitudes.numel()))
    if count == 0:
        return
    threshold = torch.kthvalue(magnitudes, count).values
    for weight in weights:
        # Writing zeros directly (not torch.nn.utils.prune's masks and hooks) works for
        # graph modules too, where no hooks can be installed.
        weight.data[weight.data.abs() <= threshold] = 0.0


def weight_sparsity(weights: list[torch.Tensor]) -> float:
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / total if total else 0.0


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def prune_channels(loaded: LoadedModel, config: PruningConfig) -> PruningReport:
    """Remove ``config.amount`` of the channels of every prunable group (DepGraph)."""
    if not loaded.has_module_structure:
        raise UnsupportedRecipe(
            f"Structured channel pruning needs the model's module structure, and a "
            f"{loaded.format} file has only a flattened graph. Upload a state_dict with "
            "recipe.architecture set, or use pruning.method 'magnitude'.",
            field="pruning.method",
        )
    import torch_pruning as tp

    module = loaded.module
    example = loaded.example_input
    macs_before, params_before = tp.utils.count_ops_and_params(module, example)
    ignored = _ignored_layers(module, config)

    pruner = tp.pruner.BasePruner(
        module,
        example,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=config.amount,
        ignored_layers=ignored,
        round_to=config.round_to,
    )
    pruner.step()
    module.eval()

    macs_after, params_after = tp.utils.count_ops_and_params(module, example)
    logger.info("channel pruning: MACs %d -> %d", macs_before, macs_after)
    return PruningReport(
        method="channel",
        amount=config.amount,
        macs_before=int(macs_before),
        macs_after=int(macs_after),
        params_before=int(params_before),
        params_after=int(params_after),
        note=CHANNEL_NOTE,
    )


def _ignored_layers(module: nn.Module, config: PruningConfig) -> list[nn.Module]:
    named = dict(module.named_modules())
    ignored = [named[name] for name in config.exclude if name in named]
    missing = [name for name in config.exclude if name not in named]
    if missing:
        raise UnsupportedRecipe(
            f"pruning.exclude names modules that do not exist: {missing}.",
            field="pruning.exclude",
        )
    if not config.prune_classifier:
        linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
        if linears:
            ignored.append(linears[-1])
    return ignored

