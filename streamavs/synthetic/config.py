"""SceneConfig: the knobs of the synthetic benchmark, and the seed ranges of its splits."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamavs.errors import ConfigError, InputError
from streamavs.synthetic.classes import CLASSES

__all__ = ["SceneConfig", "SETTINGS", "SPLITS", "INDICES_PER_SPLIT", "split_seed"]

SETTINGS: tuple[str, ...] = ("single", "multi")
SPLITS: tuple[str, ...] = ("train", "val", "test")
INDICES_PER_SPLIT = 1_000_000_000  # seeds of split k are k * INDICES_PER_SPLIT + index, index < INDICES_PER_SPLIT


@dataclass(frozen=True)
class SceneConfig:
    """How synthetic clips are made.

    image_size: frame height = width in pixels. seconds: clip length T (one frame per second).
    sample_rate: audio rate in Hz (the model front end wants 16000).
    setting: "single" = one sounding object, plus 1..max_distractors silent objects of other
    classes in a `distractor_share` of clips; "multi" = multi_sources (min, max) sounding
    objects of different classes plus 0..max_distractors silent ones.
    state_change_prob: per source and second boundary, probability that the source starts or
    stops sounding (0 keeps every source sounding throughout).
    stereo: pan each source by its object's horizontal centre (else mono duplicated to 2 channels).
    ambient_dbfs: RMS level (dBFS, < 0) of a pink-noise floor added to the clip audio; None = off.
    radius_range: circumscribed object radius as a fraction of image_size.
    max_speed: largest object speed as a fraction of image_size per second.
    fade_ms: ramp length where a source starts or stops sounding.
    """

    image_size: int = 224
    seconds: int = 5
    sample_rate: int = 16000
    setting: str = "single"
    distractor_share: float = 0.5
    max_distractors: int = 2
    state_change_prob: float = 0.0
    stereo: bool = True
    ambient_dbfs: float | None = None
    multi_sources: tuple[int, int] = (2, 3)
    radius_range: tuple[float, float] = (0.15, 0.28)  # objects cover ~10% of the frame, as in AVSBench S4
    max_speed: float = 0.03
    fade_ms: float = 10.0

    def __post_init__(self) -> None:
        problems = []

        def is_int(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        def is_num(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        if not is_int(self.image_size) or self.image_size < 32:
            problems.append(f"image_size must be an integer >= 32 pixels, got {self.image_size!r}")
        if not is_int(self.seconds) or not 1 <= self.seconds <= 60:
            problems.append(f"seconds must be an integer in 1..60, got {self.seconds!r}")
        if not is_int(self.sample_rate) or self.sample_rate < 8000:
            problems.append(f"sample_rate must be an integer >= 8000 Hz (16000 for the model), got {self.sample_rate!r}")
        if self.setting not in SETTINGS:
            problems.append(f"setting must be one of {', '.join(SETTINGS)}, got {self.setting!r}")
        for name in ("distractor_share", "state_change_prob"):
            value = getattr(self, name)
            if not is_num(value) or not 0.0 <= value <= 1.0:
                problems.append(f"{name} must be a probability in [0, 1], got {value!r}")
        if not isinstance(self.stereo, bool):
            problems.append(f"stereo must be True or False, got {self.stereo!r}")
        if self.ambient_dbfs is not None and (not is_num(self.ambient_dbfs) or not -120 <= self.ambient_dbfs < 0):
            problems.append(f"ambient_dbfs must be None (off) or a level in [-120, 0) dBFS such as -50, got {self.ambient_dbfs!r}")
        lo_hi = self.multi_sources
        if not (isinstance(lo_hi, tuple) and len(lo_hi) == 2 and all(is_int(v) for v in lo_hi) and 2 <= lo_hi[0] <= lo_hi[1]):
            problems.append(f"multi_sources must be a (min, max) tuple of integers with 2 <= min <= max, got {lo_hi!r}")
        elif not is_int(self.max_distractors) or not 0 <= self.max_distractors <= len(CLASSES) - lo_hi[1]:
            problems.append(
                f"max_distractors must be an integer in 0..{len(CLASSES) - lo_hi[1]} (every object in a scene has "
                f"its own class; there are {len(CLASSES)} classes), got {self.max_distractors!r}"
            )
        rr = self.radius_range
        if not (isinstance(rr, tuple) and len(rr) == 2 and all(is_num(v) for v in rr) and 0.02 <= rr[0] <= rr[1] <= 0.3):
            problems.append(f"radius_range must be a (min, max) tuple with 0.02 <= min <= max <= 0.3, got {rr!r}")
        if not is_num(self.max_speed) or not 0.0 <= self.max_speed <= 0.2:
            problems.append(f"max_speed must be in [0, 0.2] image sizes per second, got {self.max_speed!r}")
        if not is_num(self.fade_ms) or not 0.0 <= self.fade_ms <= 200.0:
            problems.append(f"fade_ms must be in [0, 200] ms, got {self.fade_ms!r}")
        if problems:
            raise ConfigError("invalid SceneConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SceneConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ConfigError naming the valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown SceneConfig fields {unknown}; valid fields: {', '.join(sorted(names))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def split_seed(split: str, index: int) -> int:
    """Seed of clip `index` of `split`; the splits' seed ranges never overlap.

    train -> index, val -> 1e9 + index, test -> 2e9 + index, for 0 <= index < 1e9.
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < INDICES_PER_SPLIT:
        raise InputError(f"clip index must be an integer in 0..{INDICES_PER_SPLIT - 1}, got {index!r}")
    return SPLITS.index(split) * INDICES_PER_SPLIT + int(index)
