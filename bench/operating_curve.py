"""A model's operating curve: the same streamed probabilities cut at several mask thresholds.

The temporal ablation (``--sweep``) records one per model; on validation clips (``--split val``)
:func:`select_operating_point` picks the threshold an engine ships with (``streamavs export
--mask-threshold``). The test split only ever measures the curve.
"""

from __future__ import annotations

import argparse

import numpy as np

from streamavs.bench.report import fmt_cell
from streamavs.bench.temporal_targets import compare
from streamavs.datasets.streaming import StreamClip
from streamavs.engine.thresholds import check_threshold_value
from streamavs.errors import InputError

__all__ = ["OperatingPoint", "operating_points", "select_operating_point", "parse_thresholds", "curve_table"]


class OperatingPoint:
    """The temporal metrics, the robust table and the predicted mask area at one mask threshold."""

    def __init__(self, threshold: float):
        from streamavs.metrics import RobustMeter, TemporalMeter

        self.threshold = threshold
        self.temporal, self.robust = TemporalMeter(threshold), RobustMeter(threshold)
        self._fg = self._gt = self._pixels = 0

    def update(self, prob: np.ndarray, clip: StreamClip) -> None:
        """Add one streamed clip: `prob` (T, H, W) in [0, 1]."""
        self.temporal.update(prob, clip.gt, clip.started, clip.silenced)
        conds = np.array(clip.eval_condition)
        for cond in sorted(set(clip.eval_condition)):
            sel = conds == cond
            self.robust.update(cond, prob[sel], clip.gt_eval[sel])
        self._fg += int((prob > self.threshold).sum())
        self._gt += int(clip.gt.sum())
        self._pixels += prob.size

    def area(self) -> dict[str, float]:
        """Share of all pixels predicted foreground, and the share that is (``gt``)."""
        n = max(self._pixels, 1)
        return {"predicted": self._fg / n, "gt": self._gt / n}


def operating_points(candidate: dict, frame_only: dict) -> list[dict]:
    """The stage's targets at each threshold of `candidate`'s sweep, against frame-only at its own
    threshold: ``[{"threshold", "targets": compare(...), "all_met"}]``. A threshold at which every
    target is met shows the stage's operating curve passes above frame-only's operating point; it
    is a measurement of the curve, not a threshold to ship (pick a threshold on validation)."""
    rows = []
    for row in candidate.get("sweep", []):
        point = {"temporal": row["temporal"], "robust": {"global": {"g_miou": row["g_miou"]}}}
        targets = compare(point, frame_only)
        rows.append({"threshold": row["threshold"], "targets": targets,
                     "all_met": all(t["met"] for t in targets.values())})
    return rows


def select_operating_point(points: list[dict], candidate: dict) -> float | None:
    """The mask threshold to ship a stage with, chosen on VALIDATION clips (``--split val``):
    among the thresholds of `points` (:func:`operating_points`) at which every target of
    :func:`compare` is met (FPR just after silence strictly lower, mIoU just after onsets
    strictly higher, flicker strictly lower, G-mIoU at most TARGET_G_MIOU_DROP lower than
    frame-only at its threshold), the one with the highest G-mIoU of `candidate`'s sweep; None
    when there is none."""
    g_miou = {row["threshold"]: row["g_miou"] for row in candidate.get("sweep", [])}
    allowed = [p["threshold"] for p in points if p["all_met"] and g_miou.get(p["threshold"]) is not None]
    return max(allowed, key=lambda t: g_miou[t]) if allowed else None


def parse_thresholds(text: str) -> tuple[float, ...]:
    """argparse type of --sweep: "0.4,0.5,0.6" -> (0.4, 0.5, 0.6), each strictly between 0 and 1."""
    try:
        values = tuple(check_threshold_value(float(x), f"each --sweep threshold ({x.strip()})")
                       for x in text.split(",") if x.strip())
    except InputError as exc:  # a number outside (0, 1)
        raise argparse.ArgumentTypeError(str(exc)) from None
    except ValueError:  # not a number
        raise argparse.ArgumentTypeError(f"expected comma-separated thresholds such as 0.4,0.5,0.6; got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated thresholds such as 0.4,0.5,0.6; got {text!r}")
    return values


def curve_table(report: dict, rows: tuple[tuple[str, str], ...]) -> list[str]:
    """Text lines: each model's curve (`rows`: (results key, label)) with the thresholds at which
    every target is met, then the thresholds selected on validation."""
    lines: list[str] = []
    for key, label in rows:
        r = report["results"].get(key) or {}
        if not r.get("sweep"):
            continue
        met = {p["threshold"]: p["all_met"] for p in report.get("operating_points", {}).get(key, [])}
        lines.append(f"\noperating curve, {label} (every target vs frame-only at its own threshold):")
        lines.append(f"  {'threshold':>9s} {'mIoU start%':>11s} {'FPR silenc':>10s} {'flicker':>8s} {'G-mIoU%':>8s} "
                     f"{'mask area':>9s}  all targets")
        for row in r["sweep"]:
            t = row["temporal"]
            all_met = {True: "MET", False: "-", None: ""}[met.get(row["threshold"])]
            lines.append(f"  {row['threshold']:9.3f} {fmt_cell(t['miou_started'], 2):>11s} {fmt_cell(t['fpr_silenced'], 4):>10s} "
                         f"{fmt_cell(t['flicker'], 4):>8s} {fmt_cell(row['g_miou'], 2):>8s} {fmt_cell(row['area']['predicted'], 4):>9s}  {all_met}")
    for key, threshold in (report.get("selected_threshold") or {}).items():
        chosen = "none meets every target" if threshold is None else f"{threshold:g}"
        lines.append(f"selected on validation, {dict(rows)[key]}: mask threshold {chosen} "
                     "(every target met, then the highest G-mIoU)")
    return lines
