"""Streaming accumulators for the segmentation and robustness tables.

A meter keeps running sums, never the masks: add batches with ``update`` and read
``result()`` / ``table()`` at any time.

Units of every result (also in :data:`UNITS`): mIoU and F-score in **percent**
(0-100, as in the papers' tables); FPR, FDR and G-FPR as **fractions** (0-1, as the
AVSBench-Robust tables print FPR, e.g. 0.186); G-mIoU and G-F in percent. A metric with
no sample to average over is NaN.
"""

from __future__ import annotations

import math

import numpy as np

from streamavs.errors import ConfigError, InputError
from streamavs.metrics.frame import (
    BETA2,
    NUM_THRESHOLDS,
    check_gt,
    check_pred,
    check_threshold,
    frame_metrics,
    fscore_curves,
)
from streamavs.metrics.global_metrics import g_metric

FSCORE_MODES = ("set", "avsbench")
CONDITIONS = ("positive", "silence", "noise", "offscreen")
NEGATIVE_CONDITIONS = ("silence", "noise", "offscreen")
UNITS = {
    "miou": "percent",
    "fscore": "percent",
    "fpr": "fraction",
    "fdr": "fraction",
    "g_miou": "percent",
    "g_f": "percent",
    "g_fpr": "fraction",
}


def _mean(total: float, count: int) -> float:
    return total / count if count else float("nan")


class SegmentationMeter:
    """mIoU, F-score, FPR and FDR over a stream of batches.

    ``fscore_mode="set"`` (default, batch-independent): the per-frame F curves of every
    frame with a non-empty GT are summed, and ``result()`` takes the max over thresholds
    of their mean (:func:`~streamavs.metrics.frame.fscore` on the whole set).
    ``fscore_mode="avsbench"``: every ``update`` is one AVSBench test batch; its score is
    ``Eval_Fmeasure`` of that batch (max of the batch-mean curve, 0 for a batch with only
    empty GTs) and the result is the unweighted mean over batches, so it depends on how
    the data was batched. Feed AVSBench-sized batches (videos per batch * 5 frames).

    mIoU, FPR and FDR are always means over frames (AVSBench averages mIoU per batch
    too, which equals the frame mean when all batches have the same size).
    """

    def __init__(self, threshold: float = 0.5, fscore_mode: str = "set", beta2: float = BETA2):
        if fscore_mode not in FSCORE_MODES:
            raise ConfigError(f"fscore_mode must be one of {FSCORE_MODES}; got {fscore_mode!r}.")
        try:
            self.threshold = check_threshold(threshold)
        except InputError as exc:
            raise ConfigError(str(exc)) from exc
        self.fscore_mode = fscore_mode
        self.beta2 = float(beta2)
        self.reset()

    def reset(self) -> None:
        """Forget everything added so far."""
        self.n = 0  # frames
        self._iou_sum = 0.0
        self._fpr_sum = 0.0
        self._fdr_sum = 0.0
        self._curve_sum = np.zeros(NUM_THRESHOLDS, dtype=np.float64)  # set mode
        self._n_curves = 0  # frames with a non-empty GT
        self._batch_f_sum = 0.0  # avsbench mode
        self._n_batches = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one batch: `pred` (B, H, W) float probabilities in [0, 1], `gt` (B, H, W)
        bool or 0/1. In ``avsbench`` mode the call is one AVSBench batch."""
        pred = check_pred(pred)
        gt = check_gt(gt, pred.shape)
        if pred.shape[0] == 0:
            return
        per_frame = frame_metrics(pred, gt, self.threshold)
        self.n += pred.shape[0]
        self._iou_sum += float(per_frame["iou"].sum())
        self._fpr_sum += float(per_frame["fpr"].sum())
        self._fdr_sum += float(per_frame["fdr"].sum())
        curves = fscore_curves(pred, gt, self.beta2, NUM_THRESHOLDS, float32=self.fscore_mode == "avsbench")
        if self.fscore_mode == "set":
            self._curve_sum += curves.sum(axis=0)
            self._n_curves += curves.shape[0]
        else:
            self._batch_f_sum += float(curves.mean(axis=0).max()) if curves.shape[0] else 0.0
            self._n_batches += 1

    def merge(self, other: "SegmentationMeter") -> "SegmentationMeter":
        """Add another meter's sums to this one (same threshold, mode and beta2); returns self."""
        same = (other.threshold, other.fscore_mode, other.beta2) == (self.threshold, self.fscore_mode, self.beta2)
        if not same:
            raise ConfigError(
                "can only merge meters with the same threshold, fscore_mode and beta2; got "
                f"{(self.threshold, self.fscore_mode, self.beta2)} and "
                f"{(other.threshold, other.fscore_mode, other.beta2)}."
            )
        self.n += other.n
        self._iou_sum += other._iou_sum
        self._fpr_sum += other._fpr_sum
        self._fdr_sum += other._fdr_sum
        self._curve_sum += other._curve_sum
        self._n_curves += other._n_curves
        self._batch_f_sum += other._batch_f_sum
        self._n_batches += other._n_batches
        return self

    def fscore(self) -> float:
        """The F-score so far as a fraction in [0, 1] (NaN before any frame with an object
        in ``set`` mode, before any batch in ``avsbench`` mode)."""
        if self.fscore_mode == "set":
            return float((self._curve_sum / self._n_curves).max()) if self._n_curves else float("nan")
        return _mean(self._batch_f_sum, self._n_batches)

    def result(self) -> dict[str, float]:
        """``{"miou": %, "fscore": %, "fpr": fraction, "fdr": fraction, "n": frames}``."""
        return {
            "miou": 100.0 * _mean(self._iou_sum, self.n),
            "fscore": 100.0 * self.fscore(),
            "fpr": _mean(self._fpr_sum, self.n),
            "fdr": _mean(self._fdr_sum, self.n),
            "n": self.n,
        }


class RobustMeter:
    """The AVSBench-Robust table: one :class:`SegmentationMeter` per audio condition.

    Conditions: ``"positive"`` (the original audio) and the negatives ``"silence"``,
    ``"noise"``, ``"offscreen"``. For a negative sample pass ``gt_eval`` = the ORIGINAL
    object mask of the frame (not the empty training target): mIoU_N and F_N measure how
    much of the visible, silent object is still segmented, and FPR ignores the GT anyway.
    """

    def __init__(self, threshold: float = 0.5, fscore_mode: str = "set", beta2: float = BETA2):
        self.meters = {c: SegmentationMeter(threshold, fscore_mode, beta2) for c in CONDITIONS}

    def reset(self) -> None:
        """Forget everything added so far."""
        for meter in self.meters.values():
            meter.reset()

    def update(self, condition: str, pred: np.ndarray, gt_eval: np.ndarray) -> None:
        """Add a batch of one condition: `pred` (B, H, W) probabilities, `gt_eval` (B, H, W)
        the original object masks."""
        if condition not in self.meters:
            raise InputError(f"unknown audio condition {condition!r}; expected one of {CONDITIONS}.")
        self.meters[condition].update(pred, gt_eval)

    def negatives(self) -> SegmentationMeter:
        """A new meter pooling all negative samples (silence, noise and off-screen)."""
        first = self.meters[NEGATIVE_CONDITIONS[0]]
        pooled = SegmentationMeter(first.threshold, first.fscore_mode, first.beta2)
        for c in NEGATIVE_CONDITIONS:
            pooled.merge(self.meters[c])
        return pooled

    def table(self) -> dict[str, dict[str, float]]:
        """The robust table (units in :data:`UNITS`).

        ``{"positive" | "silence" | "noise" | "offscreen": SegmentationMeter.result(),
        "negative": the same pooled over all negative samples (its miou is mIoU_N, its
        fscore F_N, its fpr G-FPR), "global": {"g_miou": %, "g_f": %, "g_fpr": fraction}}``.
        G-mIoU and G-F are NaN until both positives and negatives were added.
        """
        out = {c: m.result() for c, m in self.meters.items()}
        pos, neg = out["positive"], self.negatives().result()
        out["negative"] = neg

        def g(key: str) -> float:
            p, n = pos[key], neg[key]
            return float("nan") if math.isnan(p) or math.isnan(n) else 100.0 * g_metric(p / 100.0, n / 100.0)

        out["global"] = {"g_miou": g("miou"), "g_f": g("fscore"), "g_fpr": neg["fpr"]}
        return out
