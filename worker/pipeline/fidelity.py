"""Fidelity of an artifact's outputs against the original model's, on the same inputs.

The figures follow what misleads on this stack (see QUANTIZATION-NOTES): plain SQNR and top-1
agreement flatter random-init models, so the centred SQNR, the number of distinct top-1
classes, and agreement on confident samples are reported beside them.
"""

from __future__ import annotations

import math

import torch

from service.schemas import Fidelity

CONFIDENT_PROBABILITY = 0.9
SQNR_CAP_DB = 200.0


def sqnr_db(reference: torch.Tensor, candidate: torch.Tensor) -> float:
    """10*log10(signal power / error power), capped at 200 dB for identical outputs."""
    signal = float(reference.double().pow(2).sum())
    noise = float((reference.double() - candidate.double()).pow(2).sum())
    if noise == 0.0:
        return SQNR_CAP_DB
    if signal == 0.0:
        return -SQNR_CAP_DB
    return max(-SQNR_CAP_DB, min(SQNR_CAP_DB, 10.0 * math.log10(signal / noise)))


def compare(
    reference: torch.Tensor, candidate: torch.Tensor, labels: torch.Tensor | None = None
) -> Fidelity:
    """Compare two [N, ...] output stacks; the last dimension holds the classes."""
    ref = reference.reshape(reference.shape[0], -1).double()
    out = candidate.reshape(candidate.shape[0], -1).double()

    cosine = torch.nn.functional.cosine_similarity(ref, out, dim=1, eps=1e-12)
    ref_top1, out_top1 = ref.argmax(dim=1), out.argmax(dim=1)
    agree = ref_top1 == out_top1
    confident = ref.softmax(dim=1).max(dim=1).values >= CONFIDENT_PROBABILITY

    fidelity = Fidelity(
        samples=int(ref.shape[0]),
        sqnr_db=sqnr_db(ref, out),
        centered_sqnr_db=sqnr_db(ref - ref.mean(dim=0), out - out.mean(dim=0)),
        cosine_similarity=float(cosine.mean()),
        max_abs_error=float((ref - out).abs().max()),
        top1_agreement=float(agree.double().mean()),
        confident_samples=int(confident.sum()),
        confident_top1_agreement=(
            float(agree[confident].double().mean()) if bool(confident.any()) else None
        ),
        distinct_top1_classes=int(ref_top1.unique().numel()),
    )
    if labels is not None:
        labels = labels[: ref.shape[0]]
        fidelity.top1_accuracy = float((out_top1 == labels).double().mean())
        fidelity.reference_top1_accuracy = float((ref_top1 == labels).double().mean())
    return fidelity
