"""Temporal metrics for the causal temporal stage (docs/metrics.md; the stage: docs/reference.md §6).

The temporal stage exists for objects whose sounding state changes from one second to
the next, so it is measured where that happens and by how much masks flicker:

- mIoU on *just-started* frames (some object sounds at t and did not at t-1), percent;
- FPR on *just-silenced* frames (nothing sounds at t, something did at t-1), fraction;
- flicker: among pixels whose GT label is the same at t-1 and t, the share whose
  predicted label changes, pooled over every consecutive pair of every clip, fraction.
  Pixels whose GT changes are left out of both numerator and denominator, so a correct
  mask change on a real transition is never counted.
"""

from __future__ import annotations

import numpy as np

from streamavs.errors import InputError
from streamavs.metrics.frame import check_gt, check_pred, check_threshold, frame_metrics


def _as_bool(x: np.ndarray, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    x = np.asarray(x)
    if shape is not None and x.shape != shape:
        raise InputError(f"{name} must have shape {shape}; got {x.shape}.")
    if x.dtype != np.bool_:
        if x.size and not ((x == 0) | (x == 1)).all():
            raise InputError(f"{name} must be bool (or 0/1); got values in [{x.min()}, {x.max()}].")
        x = x.astype(bool)
    return x


def transition_flags(sounding: np.ndarray, previous: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Transition frames of a clip from per-object sounding states.

    `sounding`: (T, n_objects) bool, ``sounding[t, k]`` = object k is visible and
    sounding at frame t; (T,) is read as one object. `previous`: (n_objects,) bool, the
    state just before the clip (a stream's last frame); without it frame 0 is never a
    transition. Returns ``(started, silenced)``, each (T,) bool:
    ``started[t]`` = some object sounds at t and did not at t-1;
    ``silenced[t]`` = no object sounds at t and some object did at t-1 (the GT becomes
    empty).
    """
    s = _as_bool(sounding, "sounding")
    if s.ndim == 1:
        s = s[:, None]  # (T, 1)
    if s.ndim != 2:
        raise InputError(f"sounding must be (T, n_objects) or (T,); got shape {s.shape}.")
    t = s.shape[0]
    started = np.zeros(t, dtype=bool)
    silenced = np.zeros(t, dtype=bool)
    if previous is not None:
        prev = _as_bool(previous, "previous", (s.shape[1],))
        s = np.concatenate([prev[None], s], axis=0)  # (T + 1, K)
        offset = 0
    else:
        offset = 1
    if s.shape[0] >= 2:
        before, now = s[:-1], s[1:]  # (T' - 1, K)
        started[offset:] = (now & ~before).any(axis=1)
        silenced[offset:] = ~now.any(axis=1) & before.any(axis=1)
    return started, silenced


SUM_COLUMNS = ("iou_sum", "n_started", "fpr_sum", "n_silenced", "flips", "n_stable")  # one clip's row of per_clip()


def metrics_from_sums(sums: np.ndarray) -> dict[str, np.ndarray]:
    """The three temporal metrics from summed :data:`SUM_COLUMNS` (shape (..., len(SUM_COLUMNS))): each (...),
    NaN where there is nothing to average. mIoU in percent, FPR and flicker as fractions."""
    sums = np.asarray(sums, dtype=np.float64)
    if sums.shape[-1:] != (len(SUM_COLUMNS),):
        raise InputError(f"sums must end in {len(SUM_COLUMNS)} columns {SUM_COLUMNS}; got shape {sums.shape}.")
    iou, n_started, fpr, n_silenced, flips, n_stable = np.moveaxis(sums, -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "miou_started": np.where(n_started > 0, 100.0 * iou / n_started, np.nan),
            "fpr_silenced": np.where(n_silenced > 0, fpr / n_silenced, np.nan),
            "flicker": np.where(n_stable > 0, flips / n_stable, np.nan),
        }


class TemporalMeter:
    """Transition mIoU / FPR and flicker over a stream of clips.

    One ``update`` is one clip; consecutive pairs are taken inside a clip only.
    Results: ``miou_started`` (percent), ``fpr_silenced`` (fraction), ``flicker``
    (fraction), with their counts ``n_started``, ``n_silenced`` (frames) and
    ``n_stable`` (GT-stable pixel pairs). NaN when there is nothing to average.
    :meth:`per_clip` keeps each clip's sums, so that two models streamed over the same clips
    can be compared clip by clip (:func:`streamavs.metrics.paired_bootstrap`).
    """

    def __init__(self, threshold: float = 0.5):
        self.threshold = check_threshold(threshold)
        self.reset()

    def reset(self) -> None:
        """Forget everything added so far."""
        self._clips: list[tuple[float, int, float, int, int, int]] = []

    def update(self, pred: np.ndarray, gt: np.ndarray, started: np.ndarray, silenced: np.ndarray) -> None:
        """Add one clip: `pred` (T, H, W) probabilities in [0, 1], `gt` (T, H, W) bool or
        0/1, `started` and `silenced` (T,) bool (see :func:`transition_flags`)."""
        pred = check_pred(pred, layout="(T, H, W)")
        gt = check_gt(gt, pred.shape)
        t = pred.shape[0]
        started = _as_bool(started, "started", (t,))
        silenced = _as_bool(silenced, "silenced", (t,))
        per_frame = frame_metrics(pred, gt, self.threshold)
        flips = n_stable = 0
        if t >= 2:
            fg = pred > self.threshold  # (T, H, W)
            stable = gt[1:] == gt[:-1]  # (T - 1, H, W)
            flips, n_stable = int(((fg[1:] != fg[:-1]) & stable).sum()), int(stable.sum())
        self._clips.append((float(per_frame["iou"][started].sum()), int(started.sum()),
                            float(per_frame["fpr"][silenced].sum()), int(silenced.sum()), flips, n_stable))

    def per_clip(self) -> np.ndarray:
        """(clips, len(SUM_COLUMNS)) float64: each clip's :data:`SUM_COLUMNS`, in the order the clips were added."""
        return np.array(self._clips, dtype=np.float64).reshape(len(self._clips), len(SUM_COLUMNS))

    def _count(self, column: str) -> int:
        return int(sum(row[SUM_COLUMNS.index(column)] for row in self._clips))

    n_started = property(lambda self: self._count("n_started"), doc="Just-started frames added so far.")
    n_silenced = property(lambda self: self._count("n_silenced"), doc="Just-silenced frames added so far.")
    n_stable = property(lambda self: self._count("n_stable"), doc="GT-stable pixel pairs added so far.")

    def result(self) -> dict[str, float]:
        """``{"miou_started": %, "fpr_silenced": fraction, "flicker": fraction,
        "n_started", "n_silenced", "n_stable"}``."""
        metrics = {k: float(v) for k, v in metrics_from_sums(self.per_clip().sum(axis=0)).items()}
        return {**metrics, "n_started": self.n_started, "n_silenced": self.n_silenced, "n_stable": self.n_stable}
