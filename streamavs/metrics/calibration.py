"""Does the uncertainty know where the mask is wrong, and are the probabilities calibrated?

Two streaming meters and the baseline score for the first, numpy only, constant memory
(histograms, never the pixels):

- :class:`ErrorDetectionMeter`: AUROC of a per-pixel score (the temporal stage's uncertainty)
  for detecting the pixels whose thresholded mask is wrong (``(pred > threshold) != gt``).
  0.5 is chance, 1.0 a perfect error detector. The score is binned into ``bins`` equal-width
  bins over [0, 1] for errors and for correct pixels; the AUROC is the Mann-Whitney statistic
  on the binned scores (ties count one half), so it is exact up to the bin width.
- :func:`threshold_margin`: the baseline an uncertainty must beat: the mask probability's own
  closeness to the threshold (1 at the threshold, 0 at 0 or 1 on the far side). Fed to an
  ``ErrorDetectionMeter`` it gives the AUROC of "the mask is wrong where it is least sure",
  which needs no uncertainty head at all.
- :class:`CalibrationMeter`: expected calibration error of the foreground probability
  (reliability diagram of the positive class): pixels are binned by ``p`` into ``bins`` equal
  bins, and ``ECE = sum_b n_b / N * |mean(gt in b) - mean(p in b)|``, a fraction in [0, 1].
"""

from __future__ import annotations

import numpy as np

from streamavs.errors import InputError
from streamavs.metrics.frame import check_gt, check_pred, check_threshold

ERROR_BINS = 1000
"""Uncertainty bins of the AUROC histograms."""
ECE_BINS = 15
"""Probability bins of the expected calibration error (the usual 15)."""


def _check_bins(bins: int) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise InputError(f"bins must be a positive integer, got {bins!r}")
    return int(bins)


def _bin(x: np.ndarray, bins: int) -> np.ndarray:
    """Values in [0, 1] -> bin indices 0 .. bins-1 (1.0 falls in the last bin)."""
    return np.minimum((x * bins).astype(np.int64), bins - 1)


def threshold_margin(prob: np.ndarray, threshold: float) -> np.ndarray:
    """1 - |prob - threshold| / max(threshold, 1 - threshold): in [0, 1], 1 at the threshold."""
    t = check_threshold(threshold)
    return (1.0 - np.abs(np.asarray(prob, dtype=np.float32) - t) / max(t, 1.0 - t)).clip(0.0, 1.0)


class ErrorDetectionMeter:
    """AUROC of a per-pixel score in [0, 1] for the pixels where the mask is wrong."""

    def __init__(self, threshold: float = 0.5, bins: int = ERROR_BINS):
        self.threshold = check_threshold(threshold)
        self.bins = _check_bins(bins)
        self.reset()

    def reset(self) -> None:
        """Forget everything added so far."""
        self._errors = np.zeros(self.bins, dtype=np.int64)
        self._correct = np.zeros(self.bins, dtype=np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray, score: np.ndarray) -> None:
        """pred: (T, H, W) probabilities; gt: (T, H, W) bool or 0/1; score: (T, H, W) in [0, 1]."""
        pred = check_pred(pred, layout="(T, H, W)")
        gt = check_gt(gt, pred.shape)
        score = check_pred(score, name="score", layout="(T, H, W)")
        if score.shape != pred.shape:
            raise InputError(f"score must have the shape of pred {pred.shape}; got {score.shape}.")
        wrong = (pred > self.threshold) != gt
        idx = _bin(score, self.bins)
        self._errors += np.bincount(idx[wrong], minlength=self.bins)
        self._correct += np.bincount(idx[~wrong], minlength=self.bins)

    def result(self) -> dict[str, float]:
        """``{"auroc": fraction (NaN without both classes), "n_error", "n_correct", "error_rate"}``."""
        n_err, n_ok = int(self._errors.sum()), int(self._correct.sum())
        total = n_err + n_ok
        if n_err == 0 or n_ok == 0:
            auroc = float("nan")
        else:  # P(score_err > score_ok) + 0.5 P(equal bins)
            ok_below = np.cumsum(self._correct) - self._correct  # correct pixels in lower bins
            wins = (self._errors * ok_below).sum() + 0.5 * (self._errors * self._correct).sum()
            auroc = float(wins) / (n_err * n_ok)
        return {"auroc": auroc, "n_error": n_err, "n_correct": n_ok,
                "error_rate": n_err / total if total else float("nan")}


class CalibrationMeter:
    """Expected calibration error of per-pixel foreground probabilities."""

    def __init__(self, bins: int = ECE_BINS):
        self.bins = _check_bins(bins)
        self.reset()

    def reset(self) -> None:
        """Forget everything added so far."""
        self._count = np.zeros(self.bins, dtype=np.int64)
        self._prob = np.zeros(self.bins, dtype=np.float64)
        self._fg = np.zeros(self.bins, dtype=np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """pred: (T, H, W) probabilities in [0, 1]; gt: (T, H, W) bool or 0/1."""
        pred = check_pred(pred, layout="(T, H, W)")
        gt = check_gt(gt, pred.shape)
        idx = _bin(pred, self.bins).ravel()
        self._count += np.bincount(idx, minlength=self.bins)
        self._prob += np.bincount(idx, weights=pred.ravel().astype(np.float64), minlength=self.bins)
        self._fg += np.bincount(idx[gt.ravel()], minlength=self.bins)

    def result(self) -> dict[str, float]:
        """``{"ece": fraction (NaN when empty), "n": pixels}``."""
        n = int(self._count.sum())
        if n == 0:
            return {"ece": float("nan"), "n": 0}
        used = self._count > 0
        gap = np.abs(self._fg[used] / self._count[used] - self._prob[used] / self._count[used])
        return {"ece": float((self._count[used] / n * gap).sum()), "n": n}
