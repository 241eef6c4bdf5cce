"""Global robustness metrics of AVSBench-Robust (eqs. 2-4).

``G = 2 * pos * (1 - neg) / (pos + (1 - neg))``: the harmonic mean of the score on
positive audio and one minus the score on negative audio, where the negative score is
measured against the original object masks (how much of the visible object is still
segmented although it makes no sound). G-FPR is the mean FPR over negative samples.

Units are explicit: :func:`g_metric` takes and returns fractions in [0, 1];
:func:`g_metric_percent` takes and returns percent in [0, 100] (the paper's tables).
"""

from __future__ import annotations

from streamavs.errors import InputError


def g_metric(pos: float, neg: float) -> float:
    """Global metric from fractions in [0, 1]; returns a fraction in [0, 1].

    `pos`: mIoU_P or F_P on positive audio; `neg`: mIoU_N or F_N on negative audio
    (against the original object masks). Returns 0 when both ``pos`` and ``1 - neg``
    are 0.
    """
    for name, v in (("pos", pos), ("neg", neg)):
        if not 0.0 <= float(v) <= 1.0:
            hint = " It looks like percent: use g_metric_percent, or divide by 100." if 1.0 < float(v) <= 100.0 else ""
            raise InputError(f"g_metric expects fractions in [0, 1]; got {name}={v}.{hint}")
    keep = 1.0 - float(neg)
    denom = float(pos) + keep
    return 0.0 if denom == 0.0 else 2.0 * float(pos) * keep / denom


def g_metric_percent(pos_pct: float, neg_pct: float) -> float:
    """Global metric from percent in [0, 100]; returns percent in [0, 100].

    >>> round(g_metric_percent(78.15, 0.16), 2)
    87.67
    """
    for name, v in (("pos_pct", pos_pct), ("neg_pct", neg_pct)):
        if not 0.0 <= float(v) <= 100.0:
            raise InputError(f"g_metric_percent expects percent in [0, 100]; got {name}={v}.")
    return 100.0 * g_metric(float(pos_pct) / 100.0, float(neg_pct) / 100.0)
