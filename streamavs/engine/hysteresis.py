"""Mask hysteresis: a stream's masks hold their state against small changes of probability; numpy only.

A pixel that was in the previous frame's mask stays in while its probability is at least
``mask - band``; a pixel that was out enters only at ``mask + band`` or above. Boundary pixels whose
probability hovers around the threshold (what the flicker metric counts) stop flipping.
Onsets and stops pass straight through: when the sounding probability moved by more than
``reset`` since the previous frame (the audio changed), the frame is cut at the plain threshold.

It acts on the published probability, so every subscriber that cuts at the manifest's
``thresholds.mask`` sees the hysteresis mask without knowing about it::

    p' = clip(p + band, 0, 1) where the previous mask was on, clip(p - band, 0, 1) where off

and ``p' >= mask`` exactly when the hysteresis rule keeps or sets the pixel. ``band = 0`` (the
default of every manifest without ``thresholds.hysteresis``) leaves the probability untouched.

Measured on the real-media validation clips (bench/README.md, "Mask hysteresis"): the sounding
probability moves by more than 0.2 at 88% of the sounding-state changes and at 6% of the other
frame steps, so the default reset lets onsets and stops through and keeps the band elsewhere.
"""

from __future__ import annotations

import numpy as np

from streamavs.engine.thresholds import DEFAULT_RESET, check_band, check_reset, check_threshold_value
from streamavs.errors import InputError

__all__ = ["MaskHysteresis", "hysteresis_clip"]


class MaskHysteresis:
    """The hysteresis of one stream: call it on each frame's (mask_prob, sounding) in order.

    threshold: the mask threshold the probabilities are cut at; band: the half-width of the
    hysteresis in probability units (0: off); reset: the sounding-probability change that cuts
    a frame at the plain threshold (a sounding probability that is not a number counts as a
    change). The first frame after construction or :meth:`restart`, and a frame of another
    size than the previous one, are cut at the plain threshold too.
    """

    def __init__(self, threshold: float, band: float, reset: float = DEFAULT_RESET) -> None:
        self.threshold = check_threshold_value(threshold, "the mask threshold")
        self.band = check_band(band, "the hysteresis band")
        self.reset = check_reset(reset, "the hysteresis reset")
        self._band = np.float32(self.band)  # float32 throughout: no float64 temporaries per frame
        self._on: np.ndarray | None = None  # (H, W) bool: the previous frame's mask
        self._sounding: float | None = None

    def restart(self) -> None:
        """Forget the stream (a new stream starts)."""
        self._on, self._sounding = None, None

    def __call__(self, prob: np.ndarray, sounding: float) -> np.ndarray:
        """This frame's published probability: `prob` (H, W) float32 in [0, 1] with the band
        applied against the previous frame's mask. `prob` is never changed; without a band (or on
        a frame cut plainly) it is returned as it is."""
        prob = np.asarray(prob, dtype=np.float32)
        if self.band == 0.0:  # no state to keep: the engine's probability as it is
            return prob
        sounding = float(sounding)
        plain = (self._on is None or self._on.shape != prob.shape
                 or not abs(sounding - self._sounding) <= self.reset)  # a NaN sounding counts as a change
        out = prob if plain else np.clip(prob + np.where(self._on, self._band, -self._band), 0.0, 1.0)
        self._on, self._sounding = out >= self.threshold, sounding
        return out


def hysteresis_clip(prob: np.ndarray, sounding: np.ndarray, threshold: float, band: float,
                    reset: float = DEFAULT_RESET) -> np.ndarray:
    """A whole stream at once: prob (T, H, W), sounding (T,) -> (T, H, W) float32, the first frame a stream start."""
    if prob.ndim != 3 or np.shape(sounding) != (prob.shape[0],):
        raise InputError(f"expected prob (T, H, W) and sounding (T,), got {prob.shape} and {np.shape(sounding)}")
    step = MaskHysteresis(threshold, band, reset)
    return np.stack([step(p, s) for p, s in zip(prob, sounding)]) if len(prob) else np.asarray(prob, np.float32)
