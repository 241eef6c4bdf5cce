"""Paired bootstrap over clips: is model A really better than model B on the temporal metrics?

The temporal metrics are pooled over a few hundred transition frames; on the real-media
benchmark a handful of clips decide a difference of 10-20% in FPR just after silence
(bench/README.md, "Is the difference real"). Two models streamed over the SAME clips are
compared clip by clip: the clips are resampled with replacement (the same draw for both
models, which keeps the pairing), each metric is pooled over the resample exactly as
:class:`~streamavs.metrics.TemporalMeter` pools it, and the spread of the difference over
the resamples is the uncertainty of the measured difference. What is resampled is the test
clips, not the training run: a second training seed is another source of spread.
"""

from __future__ import annotations

import numpy as np

from streamavs.errors import InputError
from streamavs.metrics.temporal import SUM_COLUMNS, metrics_from_sums

__all__ = ["BETTER", "DEFAULT_RESAMPLES", "paired_bootstrap"]

BETTER = {"miou_started": 1.0, "fpr_silenced": -1.0, "flicker": -1.0}  # +1: higher is better, -1: lower is
DEFAULT_RESAMPLES = 2000


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int = DEFAULT_RESAMPLES, confidence: float = 0.95,
                     seed: int = 0) -> dict[str, dict[str, float]]:
    """A vs B from their per-clip sums (:meth:`TemporalMeter.per_clip`, (clips, 6), the same
    clips in the same order).

    Returns per metric of :data:`BETTER`: ``{"a", "b", "diff"}`` on all the clips (diff = a - b),
    ``"low", "high"``: the central `confidence` interval of the difference over `resamples`
    paired resamples of the clips (percentile bootstrap), and ``"a_better"``: the share of
    resamples in which A is strictly better than B (resamples where a metric is undefined,
    e.g. no onset drawn, are left out). Units as TemporalMeter's.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    width = len(SUM_COLUMNS)
    if a.ndim != 2 or a.shape[1] != width or a.shape != b.shape:
        raise InputError(f"per-clip sums must both be (clips, {width}) over the same clips; got {a.shape} and {b.shape}. "
                         "Stream both models over the same clips (TemporalMeter.per_clip).")
    if not len(a):
        raise InputError("no clips to compare: stream at least one clip through both models")
    if resamples < 1 or not 0.0 < confidence < 1.0:
        raise InputError(f"resamples must be >= 1 and confidence in (0, 1); got {resamples} and {confidence}")
    draw = np.random.default_rng(seed).integers(0, len(a), size=(resamples, len(a)))  # (R, clips)
    whole_a, whole_b = metrics_from_sums(a.sum(axis=0)), metrics_from_sums(b.sum(axis=0))
    boot_a, boot_b = metrics_from_sums(a[draw].sum(axis=1)), metrics_from_sums(b[draw].sum(axis=1))  # each (R,)
    tail = 50.0 * (1.0 - confidence)
    out = {}
    for name, sign in BETTER.items():
        diff = boot_a[name] - boot_b[name]  # (R,)
        defined = diff[np.isfinite(diff)]
        low, high = np.percentile(defined, [tail, 100.0 - tail]) if len(defined) else (np.nan, np.nan)
        out[name] = {"a": float(whole_a[name]), "b": float(whole_b[name]), "diff": float(whole_a[name] - whole_b[name]),
                     "low": float(low), "high": float(high),
                     "a_better": float(np.mean(sign * defined > 0)) if len(defined) else float("nan")}
    return out
