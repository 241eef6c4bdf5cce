"""The sample dict every data set here yields (AVSBench's per-second format), numpy only.

Per-frame sample (``per="frame"``):

* ``frame`` (H, W, 3) uint8 RGB
* ``log_mel`` (96, 64) float32, the log-mel example of the second of audio ending at the frame
* ``mask`` (H, W) uint8 {0, 1}: training target (empty under negative audio)
* ``eval_mask`` (H, W) uint8 {0, 1}: the original object mask (for mIoU_N / F_N)
* ``label`` int: 1 positive audio, 0 negative; ``condition``: positive | silence | noise | offscreen
* ``category`` str, ``name`` str (the video), ``second`` int

A clip sample (``per="clip"``) gives every array a leading T axis and ``condition`` as a list
of T strings (:func:`stack_samples`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from streamavs.errors import InputError
from streamavs.metrics import CONDITIONS

__all__ = ["CONDITIONS", "make_sample", "stack_samples"]


def make_sample(frame: np.ndarray, log_mel: np.ndarray, mask: np.ndarray, condition: str,
                category: str, name: str, second: int) -> dict:
    """The per-frame sample dict; `mask` is the ORIGINAL object mask, emptied here for negatives."""
    if condition not in CONDITIONS:
        raise InputError(f"condition must be one of {CONDITIONS}, got {condition!r}")
    positive = condition == "positive"
    eval_mask = np.ascontiguousarray(mask, dtype=np.uint8)
    return {
        "frame": frame,
        "log_mel": np.ascontiguousarray(log_mel, dtype=np.float32),
        "mask": eval_mask if positive else np.zeros_like(eval_mask),
        "eval_mask": eval_mask,
        "label": int(positive),
        "condition": condition,
        "category": category,
        "name": name,
        "second": int(second),
    }


def stack_samples(samples: Sequence[dict]) -> dict:
    """Per-second sample dicts of one clip -> one clip dict (arrays gain a leading T axis)."""
    out = {k: np.stack([s[k] for s in samples]) for k in ("frame", "log_mel", "mask", "eval_mask")}
    out["label"] = np.array([s["label"] for s in samples], dtype=np.int64)
    out["condition"] = [s["condition"] for s in samples]
    out["second"] = np.array([s["second"] for s in samples], dtype=np.int64)
    out["category"] = samples[0]["category"]
    out["name"] = samples[0]["name"]
    return out
