"""Training losses: segmentation (BCE + optional two-sided soft Dice) and the similarity BCE.

Robust-AVS eq. 8: ``L = lambda * L_BCE(sigma(s), y) + L_seg``, with s the similarity-head
output (eq. 6) and y = 1 for positive audio, 0 for silence / noise / off-screen sound, whose
ground-truth masks are empty.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from streamavs.errors import ConfigError, InputError

__all__ = ["LossConfig", "mask_loss", "soft_dice_loss", "similarity_loss", "total_loss"]


@dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms.

    lambda_sim: weight of the similarity BCE (eq. 7/8; the paper uses 1.0, 0 disables it).
    dice_weight: weight of the two-sided soft Dice term added to the per-pixel BCE (0 = BCE only).
    mask_weight: weight of the whole segmentation loss.
    """

    lambda_sim: float = 1.0
    dice_weight: float = 0.0
    mask_weight: float = 1.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"LossConfig.{f.name} must be a number >= 0, got {value!r}")


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Two-sided soft Dice loss, defined and informative on EMPTY masks; returns a scalar.

    Why not plain Dice: the published code's loss ``1 - 2 sum(p y) / (sum p^2 + sum y^2)`` is
    exactly 1 whenever y is all zero (the numerator is 0 for every p), so its gradient vanishes
    on negative samples (silence, noise, off-screen audio) and nothing pushes their masks
    towards empty. Here the Dice of the foreground is averaged with the Dice of the background
    (1 - p against 1 - y): on an empty target the background term is
    ``2 sum(1 - p) / (sum(1 - p) + HW)``, which is 1 only when p = 0 everywhere, so predicted
    foreground is penalised. `eps` smooths both ratios; each sample is scored separately.

    logits, target: (B, 1, H, W); target in {0, 1} (float). Result in [0, 1].
    """
    p = torch.sigmoid(logits.float()).flatten(1)  # (B, HW)
    y = target.float().flatten(1)  # (B, HW)
    fg = (2 * (p * y).sum(1) + eps) / (p.sum(1) + y.sum(1) + eps)  # (B,)
    bg = (2 * ((1 - p) * (1 - y)).sum(1) + eps) / ((1 - p).sum(1) + (1 - y).sum(1) + eps)  # (B,)
    return (1 - 0.5 * (fg + bg)).mean()


def mask_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 0.0) -> torch.Tensor:
    """Per-pixel BCE-with-logits (mean) + `dice_weight` * :func:`soft_dice_loss`; a scalar.

    logits: (B, 1, H, W) float mask logits; target: (B, 1, H, W) float in {0, 1} (empty for
    negative audio). BCE alone already has a nonzero gradient on empty targets.
    """
    if logits.shape != target.shape:
        raise InputError(
            f"mask logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same "
            "shape (B, 1, H, W); resize the ground truth to the model's image_size"
        )
    loss = F.binary_cross_entropy_with_logits(logits.float(), target.float())
    if dice_weight > 0:
        loss = loss + dice_weight * soft_dice_loss(logits, target)
    return loss


def similarity_loss(sounding_logit: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Eq. 7: BCE between sigma(sounding_logit) and y in {0, 1}, mean over the batch.

    sounding_logit: (B,) = scale * cos + bias (paper: scale 1, bias 0). With scale 1 the
    probability sigma(cos) stays in [0.27, 0.73], so even perfect cosines (+1 for positives,
    -1 for negatives) leave a floor of ``-log sigma(1) = 0.313``; a larger (fixed or learnable)
    scale lowers it (scale 10: 4.5e-5).
    """
    if sounding_logit.shape != label.shape:
        raise InputError(
            f"sounding_logit {tuple(sounding_logit.shape)} and label {tuple(label.shape)} must both be (B,)"
        )
    return F.binary_cross_entropy_with_logits(sounding_logit.float(), label.float())


def total_loss(
    output: Any, batch: dict, cfg: LossConfig = LossConfig()
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 8 on one batch: ``mask_weight * mask_loss + lambda_sim * similarity_loss``.

    output: an AVSOutput (mask_logits (B, 1, H, W), sounding_logit (B,)).
    batch: dict with "mask" (B, 1, H, W) float {0, 1} (empty for negatives) and "label" (B,)
    float {0, 1} (1 = positive audio), as ``training.data.collate`` builds it.
    Returns (loss, parts) where parts holds detached "mask", "sim" and "total" scalars.
    """
    for key in ("mask", "label"):
        if key not in batch:
            raise InputError(f"total_loss needs batch[{key!r}]; got keys {sorted(batch)} (use the training collate)")
    seg = mask_loss(output.mask_logits, batch["mask"], cfg.dice_weight)
    loss = cfg.mask_weight * seg
    parts = {"mask": seg.detach()}
    if cfg.lambda_sim > 0:
        sim = similarity_loss(output.sounding_logit, batch["label"])
        loss = loss + cfg.lambda_sim * sim
        parts["sim"] = sim.detach()
    parts["total"] = loss.detach()
    return loss, parts
