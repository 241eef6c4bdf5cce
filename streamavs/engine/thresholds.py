"""An engine's probability thresholds (manifest key ``thresholds``): mask pixels and the sounding gate."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from streamavs.errors import InputError

__all__ = ["Thresholds", "check_threshold_value"]


def check_threshold_value(value: Any, name: str) -> float:
    """`value` as a probability threshold strictly between 0 and 1, or InputError naming `name`
    (a manifest key or a CLI flag): 0 would mark every pixel, 1 none."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise InputError(f"{name} must be a probability strictly between 0 and 1, got {value!r}; "
                         f"the default is {Thresholds.mask}")
    return float(value)


@dataclass(frozen=True)
class Thresholds:
    """Probability thresholds: mask pixels (mask_prob >= mask) and the sounding gate. The mask
    threshold is the engine's operating point (`streamavs export --mask-threshold`), chosen on
    validation clips."""

    mask: float = 0.5
    gate: float = 0.5

    def __post_init__(self) -> None:
        check_threshold_value(self.mask, "thresholds.mask")
        check_threshold_value(self.gate, "thresholds.gate")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Thresholds":
        """Missing thresholds take the defaults above."""
        return cls(**{f.name: float(data[f.name]) for f in dataclasses.fields(cls) if f.name in data})
