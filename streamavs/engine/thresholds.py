"""An engine's probability thresholds (manifest key ``thresholds``): mask pixels, the sounding gate
and the mask hysteresis (:mod:`streamavs.engine.hysteresis` applies it), with their validators."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from streamavs.errors import InputError

__all__ = ["Thresholds", "DEFAULT_RESET", "check_threshold_value", "check_band", "check_reset"]

DEFAULT_RESET = 0.2  # sounding-probability change between frames that cuts the frame at the plain threshold


def check_threshold_value(value: Any, name: str) -> float:
    """`value` as a probability threshold strictly between 0 and 1, or InputError naming `name`
    (a manifest key or a CLI flag): 0 would mark every pixel, 1 none."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise InputError(f"{name} must be a probability strictly between 0 and 1, got {value!r}; "
                         f"the default is {Thresholds.mask}")
    return float(value)


def check_band(value: Any, name: str = "thresholds.hysteresis") -> float:
    """`value` as a hysteresis band in [0, 0.5) (probability units), or InputError naming `name`.
    A band that reaches 0 or 1 from the mask threshold is allowed: pixels then leave (or enter)
    the mask only at a reset."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 0.5:
        raise InputError(f"{name} must be a probability band in [0, 0.5) (0 turns hysteresis off), got {value!r}")
    return float(value)


def check_reset(value: Any, name: str = "thresholds.hysteresis_reset") -> float:
    """`value` as a sounding-probability change in (0, 1], or InputError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
        raise InputError(f"{name} must be a change of sounding probability in (0, 1], got {value!r}; "
                         f"the default is {DEFAULT_RESET}")
    return float(value)


@dataclass(frozen=True)
class Thresholds:
    """Probability thresholds: mask pixels (mask_prob >= mask) and the sounding gate. The mask
    threshold and the hysteresis band are the engine's operating point (`streamavs export
    --mask-threshold --hysteresis`), chosen on validation clips. hysteresis: the band (0: off) and
    hysteresis_reset: the sounding change that lets a frame through, applied by the runtime to
    each stream's published probabilities (:class:`~streamavs.engine.hysteresis.MaskHysteresis`)."""

    mask: float = 0.5
    gate: float = 0.5
    hysteresis: float = 0.0
    hysteresis_reset: float = DEFAULT_RESET

    def __post_init__(self) -> None:
        check_threshold_value(self.mask, "thresholds.mask")
        check_threshold_value(self.gate, "thresholds.gate")
        check_band(self.hysteresis, "thresholds.hysteresis")
        check_reset(self.hysteresis_reset, "thresholds.hysteresis_reset")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Thresholds":
        """Missing thresholds take the defaults above; an unknown key (a misspelt one would otherwise
        leave its threshold at the default without a word) is refused."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InputError(f"unknown thresholds {unknown} in the manifest; the keys are {known}: correct the key, "
                             "or re-export the engine with streamavs export --mask-threshold/--hysteresis")
        return cls(**{name: float(data[name]) for name in known if name in data})
