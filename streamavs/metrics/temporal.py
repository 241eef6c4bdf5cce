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


class TemporalMeter:
    """Transition mIoU / FPR and flicker over a stream of clips.

    One ``update`` is one clip; consecutive pairs are taken inside a clip only.
    Results: ``miou_started`` (percent), ``fpr_silenced`` (fraction), ``flicker``
    (fraction), with their counts ``n_started``, ``n_silenced`` (frames) and
    ``n_stable`` (GT-stable pixel pairs). NaN when there is nothing to average.
    """

    def __init__(self, threshold: float = 0.5):
        self.threshold = check_threshold(threshold)
        self.reset()

    def reset(self) -> None:
        """Forget everything added so far."""
        self._iou_sum = 0.0
        self.n_started = 0
        self._fpr_sum = 0.0
        self.n_silenced = 0
        self._flips = 0
        self.n_stable = 0

    def update(self, pred: np.ndarray, gt: np.ndarray, started: np.ndarray, silenced: np.ndarray) -> None:
        """Add one clip: `pred` (T, H, W) probabilities in [0, 1], `gt` (T, H, W) bool or
        0/1, `started` and `silenced` (T,) bool (see :func:`transition_flags`)."""
        pred = check_pred(pred, layout="(T, H, W)")
        gt = check_gt(gt, pred.shape)
        t = pred.shape[0]
        started = _as_bool(started, "started", (t,))
        silenced = _as_bool(silenced, "silenced", (t,))
        per_frame = frame_metrics(pred, gt, self.threshold)
        self._iou_sum += float(per_frame["iou"][started].sum())
        self.n_started += int(started.sum())
        self._fpr_sum += float(per_frame["fpr"][silenced].sum())
        self.n_silenced += int(silenced.sum())
        if t >= 2:
            fg = pred > self.threshold  # (T, H, W)
            stable = gt[1:] == gt[:-1]  # (T - 1, H, W)
            self._flips += int(((fg[1:] != fg[:-1]) & stable).sum())
            self.n_stable += int(stable.sum())

    def result(self) -> dict[str, float]:
        """``{"miou_started": %, "fpr_silenced": fraction, "flicker": fraction,
        "n_started", "n_silenced", "n_stable"}``."""
        nan = float("nan")
        return {
            "miou_started": 100.0 * self._iou_sum / self.n_started if self.n_started else nan,
            "fpr_silenced": self._fpr_sum / self.n_silenced if self.n_silenced else nan,
            "flicker": self._flips / self.n_stable if self.n_stable else nan,
            "n_started": self.n_started,
            "n_silenced": self.n_silenced,
            "n_stable": self.n_stable,
        }
