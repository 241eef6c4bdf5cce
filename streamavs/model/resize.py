"""How maps at the fused resolution (1/4 of the frame) reach the frame's size: one rule for
the segmenter's mask, the temporal stage's logits and uncertainty, and the temporal trainer."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_frame(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, H, W) = `size`: bilinear, ``align_corners=False``."""
    return F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False)
