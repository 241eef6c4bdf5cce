"""Paired bootstrap over clips: is model A really better than model B on the temporal metrics and G-mIoU?

The temporal metrics are pooled over a few hundred transition frames; on the real-media
benchmark a handful of clips decide a difference of 10-20% in FPR just after silence
(bench/README.md, "Is the difference real"). Two models streamed over the SAME clips are
compared clip by clip: the clips are resampled with replacement (the same draw for both
models, which keeps the pairing), each metric is pooled over the resample exactly as
:class:`~streamavs.metrics.TemporalMeter` and :class:`~streamavs.metrics.RobustMeter` pool it,
and the spread of the difference over the resamples is the uncertainty of the measured
difference. What is resampled is the test clips, not the training run: a second training seed
is another source of spread.

One clip is one row of :data:`CLIP_COLUMNS` (:class:`ClipRows` collects them): the clip's
TemporalMeter sums (:data:`~streamavs.metrics.temporal.SUM_COLUMNS`), then the per-frame IoU
sums and frame counts of its positive-audio and negative-audio frames (:func:`global_sums`),
from which G-mIoU is pooled as in the robust table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamavs.errors import InputError
from streamavs.metrics.frame import frame_metrics
from streamavs.metrics.global_metrics import g_metric
from streamavs.metrics.meters import CONDITIONS
from streamavs.metrics.temporal import SUM_COLUMNS, TemporalMeter, metrics_from_sums

__all__ = ["BETTER", "CLIP_COLUMNS", "DEFAULT_RESAMPLES", "GLOBAL_COLUMNS", "METRIC_UNITS", "ClipRows",
           "clip_metrics", "global_sums", "paired_bootstrap"]

GLOBAL_COLUMNS = ("iou_sum_positive", "n_positive", "iou_sum_negative", "n_negative")
CLIP_COLUMNS = SUM_COLUMNS + GLOBAL_COLUMNS  # one streamed clip's row
BETTER = {"miou_started": 1.0, "fpr_silenced": -1.0, "flicker": -1.0, "g_miou": 1.0}  # +1: higher is better
METRIC_UNITS = {"miou_started": "percent", "fpr_silenced": "fraction", "flicker": "fraction", "g_miou": "percent"}
DEFAULT_RESAMPLES = 2000


def global_sums(pred: np.ndarray, gt_eval: np.ndarray, conditions: Sequence[str], threshold: float) -> np.ndarray:
    """One clip's :data:`GLOBAL_COLUMNS`: `pred` (T, H, W) probabilities, `gt_eval` (T, H, W) the
    masks the robust table scores against, `conditions` (T,) each frame's audio condition
    (:data:`~streamavs.metrics.CONDITIONS`, e.g. a StreamClip's ``eval_condition``).
    Returns (len(GLOBAL_COLUMNS),) float64."""
    pred = np.asarray(pred)
    conditions = np.asarray(conditions)
    if conditions.ndim != 1 or pred.ndim != 3 or conditions.shape[0] != pred.shape[0]:
        raise InputError(f"need one audio condition per frame: pred (T, H, W) and conditions (T,); got pred "
                         f"{pred.shape} and conditions {conditions.shape}. Pass the clip's eval_condition.")
    unknown = sorted(set(conditions.tolist()) - set(CONDITIONS))
    if unknown:
        raise InputError(f"unknown audio conditions {unknown}; expected each of {CONDITIONS}.")
    iou = frame_metrics(pred, gt_eval, threshold)["iou"]  # (T,)
    positive = conditions == "positive"
    return np.array([iou[positive].sum(), positive.sum(), iou[~positive].sum(), (~positive).sum()], dtype=np.float64)


class ClipRows:
    """One :data:`CLIP_COLUMNS` row per streamed clip at one mask threshold, for
    :func:`paired_bootstrap`; its ``temporal`` meter is an ordinary :class:`TemporalMeter`."""

    def __init__(self, threshold: float = 0.5):
        self.temporal = TemporalMeter(threshold)
        self._global: list[np.ndarray] = []

    def update(self, pred: np.ndarray, gt: np.ndarray, started: np.ndarray, silenced: np.ndarray,
               gt_eval: np.ndarray, conditions: Sequence[str]) -> None:
        """Add one clip: the arguments of :meth:`TemporalMeter.update`, then those of :func:`global_sums`."""
        self.temporal.update(pred, gt, started, silenced)
        self._global.append(global_sums(pred, gt_eval, conditions, self.temporal.threshold))

    def per_clip(self) -> np.ndarray:
        """(clips, len(CLIP_COLUMNS)) float64, in the order the clips were added."""
        rows = np.array(self._global, dtype=np.float64).reshape(len(self._global), len(GLOBAL_COLUMNS))
        return np.concatenate([self.temporal.per_clip(), rows], axis=1)


def clip_metrics(sums: np.ndarray) -> dict[str, np.ndarray]:
    """The metrics of :data:`BETTER` from summed :data:`CLIP_COLUMNS` (shape (..., len(CLIP_COLUMNS))):
    each (...), NaN where there is nothing to average; units in :data:`METRIC_UNITS`."""
    sums = np.asarray(sums, dtype=np.float64)
    if sums.shape[-1:] != (len(CLIP_COLUMNS),):
        raise InputError(f"summed rows must have {len(CLIP_COLUMNS)} columns {CLIP_COLUMNS}; got shape {sums.shape}.")
    out = metrics_from_sums(sums[..., :len(SUM_COLUMNS)])
    pos_sum, n_pos, neg_sum, n_neg = np.moveaxis(sums[..., len(SUM_COLUMNS):], -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pos, neg = pos_sum / n_pos, neg_sum / n_neg  # mIoU on positive / negative audio, fractions
    g = np.vectorize(lambda p, n: 100.0 * g_metric(p, n) if np.isfinite(p) and np.isfinite(n) else np.nan,
                     otypes=[np.float64])
    out["g_miou"] = g(pos, neg)
    return out


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = DEFAULT_RESAMPLES, confidence: float = 0.95,
                     seed: int = 0) -> dict[str, dict[str, float]]:
    """A vs B from their per-clip rows ((clips, len(CLIP_COLUMNS)), :meth:`ClipRows.per_clip`, the
    same clips in the same order).

    Returns per metric of :data:`BETTER`: ``{"a", "b", "diff"}`` on all the clips (diff = a - b),
    ``"low", "high"``: the central `confidence` interval of the difference over `resamples`
    paired resamples of the clips (percentile bootstrap), ``"a_better"`` and ``"b_better"``: the
    shares of resamples in which A, and B, is strictly better (the rest are ties; resamples where
    a metric is undefined, e.g. no onset drawn, are left out of all three). Units: :data:`METRIC_UNITS`.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    width = len(CLIP_COLUMNS)
    for name, rows in (("A", a), ("B", b)):
        if rows.ndim != 2 or rows.shape[1] != width:
            raise InputError(f"per-clip rows of {name} must be (clips, {width}) ({', '.join(CLIP_COLUMNS)}); got "
                             f"{rows.shape}. Rows of reports written before G-mIoU was added have 6 columns: "
                             "stream the clips again.")
    if a.shape != b.shape:
        raise InputError(f"A and B must be rows of the same clips; got {a.shape[0]} and {b.shape[0]} clips. "
                         "Stream both models over the same clips.")
    if not len(a):
        raise InputError("no clips to compare: stream at least one clip through both models")
    if not isinstance(resamples, (int, np.integer)) or resamples < 1 or not 0.0 < confidence < 1.0:
        raise InputError(f"resamples must be an integer >= 1 and confidence in (0, 1); got {resamples!r} and {confidence!r}")
    n = len(a)
    draw = np.random.default_rng(seed).integers(0, n, size=(resamples, n))  # (R, clips)
    counts = np.zeros((resamples, n))  # how often each clip is drawn in each resample
    np.add.at(counts, (np.arange(resamples)[:, None], draw), 1.0)
    whole_a, whole_b = clip_metrics(a.sum(axis=0)), clip_metrics(b.sum(axis=0))
    boot_a, boot_b = clip_metrics(counts @ a), clip_metrics(counts @ b)  # each metric (R,)
    tail = 50.0 * (1.0 - confidence)
    out = {}
    for name, sign in BETTER.items():
        diff = boot_a[name] - boot_b[name]  # (R,)
        defined = sign * diff[np.isfinite(diff)]  # > 0 where A is better
        low, high = np.percentile(diff[np.isfinite(diff)], [tail, 100.0 - tail]) if len(defined) else (np.nan, np.nan)
        share = (lambda x: float(np.mean(x))) if len(defined) else (lambda x: float("nan"))  # noqa: E731
        out[name] = {"a": float(whole_a[name]), "b": float(whole_b[name]), "diff": float(whole_a[name] - whole_b[name]),
                     "low": float(low), "high": float(high), "a_better": share(defined > 0), "b_better": share(defined < 0)}
    return out
