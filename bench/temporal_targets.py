"""The temporal stage's targets (issue 16): what "better than frame-only" and "the uncertainty
earns its place" mean, as checks on two :func:`~streamavs.bench.temporal_ablation.evaluate_streaming`
results (or rows shaped like them)."""

from __future__ import annotations

import math

__all__ = ["TARGET_G_MIOU_DROP", "TARGET_ERROR_AUROC", "compare", "target_margins", "compare_uncertainty"]

TARGET_G_MIOU_DROP = 0.3  # points: the full stage may lose at most this much overall G-mIoU
TARGET_ERROR_AUROC = 0.8  # the uncertainty must detect mask errors on transition frames at least this well


def _row(value, base, ok) -> dict:
    """One target: the candidate's value, the value it is held against ("frame_only": frame-only's,
    the no-uncertainty stage's or a fixed target) and whether `ok(value, base)` (None if either is missing)."""
    met = None if value is None or base is None else bool(ok(value, base))
    return {"candidate": value, "frame_only": base, "met": met}


def compare(candidate: dict, frame_only: dict) -> dict:
    """The targets of the temporal stage, `candidate` vs `frame_only` (both evaluate_streaming results).

    fpr_silenced lower, miou_started higher, flicker lower, G-mIoU at most TARGET_G_MIOU_DROP
    points lower. Each entry: {"candidate", "frame_only", "met"} (met is None when a value is missing).
    """
    c, f = candidate, frame_only
    return {
        "fpr_silenced_lower": _row(c["temporal"]["fpr_silenced"], f["temporal"]["fpr_silenced"], lambda a, b: a < b),
        "miou_started_higher": _row(c["temporal"]["miou_started"], f["temporal"]["miou_started"], lambda a, b: a > b),
        "flicker_lower": _row(c["temporal"]["flicker"], f["temporal"]["flicker"], lambda a, b: a < b),
        "g_miou_within_target": _row(c["robust"]["global"]["g_miou"], f["robust"]["global"]["g_miou"],
                                   lambda a, b: a >= b - TARGET_G_MIOU_DROP),
    }


# how far each target of compare() is cleared, as a fraction of frame-only's value (c: candidate, f: frame-only)
_MARGINS = {
    "fpr_silenced_lower": lambda c, f: (f - c) / f if f else 0.0,
    "miou_started_higher": lambda c, f: (c - f) / f if f else (math.inf if c > f else 0.0),
    "flicker_lower": lambda c, f: (f - c) / f if f else 0.0,
    "g_miou_within_target": lambda c, f: (c - (f - TARGET_G_MIOU_DROP)) / f if f else math.inf,
}


def target_margins(targets: dict) -> dict[str, float]:
    """Each target of a :func:`compare` result as a margin: positive where it is met, in fractions of
    frame-only's value (G-mIoU against frame-only minus TARGET_G_MIOU_DROP)."""
    return {name: _MARGINS[name](row["candidate"], row["frame_only"]) for name, row in targets.items()}


def compare_uncertainty(full: dict, no_uncertainty: dict) -> dict:
    """What the uncertainty path adds: the full stage vs the same stage with it disabled.

    Transition metrics better (fpr_silenced lower, miou_started higher) and the full stage's
    error-detection AUROC on transition frames >= TARGET_ERROR_AUROC. Same row format as :func:`compare`.
    """
    c, n = full, no_uncertainty
    auroc = c["uncertainty"]["transition"]["error_auroc"]
    return {
        "fpr_silenced_lower": _row(c["temporal"]["fpr_silenced"], n["temporal"]["fpr_silenced"], lambda a, b: a < b),
        "miou_started_higher": _row(c["temporal"]["miou_started"], n["temporal"]["miou_started"], lambda a, b: a > b),
        "error_auroc_transition": _row(auroc, TARGET_ERROR_AUROC, lambda a, b: a >= b),
    }
