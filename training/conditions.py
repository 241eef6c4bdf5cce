"""The four audio conditions for training: re-exported from :mod:`streamavs.datasets.conditions`.

The balanced robust test set and the training negative sampler are numpy only and live in the
runtime package, so that engine evaluation needs no torch; the trainer imports them from here
or from there alike.
"""

from __future__ import annotations

from streamavs.datasets.conditions import (
    CONDITIONS, NEGATIVE_CONDITIONS, NegativeMix, NegativeTraining, RobustTestSet, assign_conditions, make_negative,
    splice_seconds,
)  # fmt: skip

__all__ = ["CONDITIONS", "NEGATIVE_CONDITIONS", "NegativeMix", "assign_conditions", "make_negative",
           "splice_seconds", "RobustTestSet", "NegativeTraining"]
