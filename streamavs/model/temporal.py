"""Causal temporal attention + Dirichlet uncertainty (RAVS Sec. 3.3, adapted to live streams).

The stage sits on top of a segmenter's fused decoder feature map. For every pixel of that map
(1/4 of the input resolution) the current frame attends over itself and the previous T-1
frames of the same pixel; a mask head and an uncertainty head read the attended feature.

Streaming form
--------------
The stage is a pure function ``(fused, cache) -> (outputs, new_cache)``. The cache holds the
projected features of the previous ``T-1`` frames, oldest first, each with one extra
*valid* channel (1 for a real frame, 0 for padding). At stream start the cache is all zeros,
so every slot is invalid and masked out of the attention: the first frame attends only to
itself, exactly as in the batch form where frame t attends to frames ``max(0, t-T+1) .. t``
(a causal band mask). So running frame by frame with the cache equals running the whole clip
at once (tested to 1e-5).

Uncertainty (RAVS eq. 10)
-------------------------
The uncertainty head gives Dirichlet parameters over {silent, sounding} per pixel,
``alpha = softplus(logits) + 1`` (evidence + 1, so alpha >= 1). The Dirichlet variance
``delta_c = alpha_c * (S - alpha_c) / (S^2 * (S + 1))`` is the same for both classes when
C = 2 and is at most 1/12 (at alpha = (1, 1), no evidence); ``u = 12 * delta`` is the
uncertainty normalised to (0, 1].

Why not RAVS eq. 11 as printed: ``Y = sigma(m) / (delta + eps)`` is unbounded (it grows to
1e6 where the model is certain), so it is not a probability and no fixed threshold works on
it. We use the bounded reduction ``p = sigma(m) * (1 - u)``: full confidence where the
Dirichlet is certain, confidence pulled toward 0 (empty mask) where it is not. Lowering
confidence toward *empty* is the safe direction for this product: an object that may just have
gone silent should not stay segmented.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from streamavs.errors import ConfigError

_MASKED = -1.0e4  # additive attention bias for invalid cache slots (finite: exports cleanly)


@dataclass(frozen=True)
class TemporalConfig:
    """Shape of the temporal stage. Saved with every checkpoint that has the stage."""

    in_channels: int  # channels of the segmenter's fused feature map
    window: int = 5  # T: the current frame plus T-1 cached ones
    dim: int = 32  # attention width per pixel
    heads: int = 4
    uncertainty: bool = True  # False: temporal attention only (the ablation)

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ConfigError(f"temporal window must be >= 1 frame, got {self.window}")
        if self.dim % self.heads:
            raise ConfigError(f"temporal dim {self.dim} must be divisible by heads {self.heads}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TemporalConfig":
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(
                f"unknown temporal config keys {sorted(unknown)}; valid: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**data)

    def cache_shape(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Per-stream cache shape (T-1, dim+1, h, w) for a fused map of h x w."""
        return (self.window - 1, self.dim + 1, height, width)


class TemporalOutput(NamedTuple):
    mask_logits: torch.Tensor  # (B, 1, h, w) at the fused map's resolution
    mask_prob: torch.Tensor  # (B, 1, h, w) confidence-reduced probability in [0, 1]
    uncertainty: torch.Tensor  # (B, 1, h, w) normalised Dirichlet variance in (0, 1]; zeros if disabled
    alpha: torch.Tensor | None  # (B, 2, h, w) Dirichlet parameters {silent, sounding}, or None


def dirichlet_uncertainty(alpha: torch.Tensor) -> torch.Tensor:
    """Normalised eq. 10 for C = 2: 12 * alpha_0 * alpha_1 / (S^2 (S + 1)), in (0, 1] for alpha >= 1.

    alpha: (B, 2, h, w) -> (B, 1, h, w).
    """
    s = alpha.sum(dim=1, keepdim=True)  # (B, 1, h, w)
    prod = alpha[:, :1] * alpha[:, 1:]
    return 12.0 * prod / (s * s * (s + 1.0))


class TemporalStage(nn.Module):
    """Causal per-pixel attention over T frames, a mask head and a Dirichlet uncertainty head."""

    def __init__(self, config: TemporalConfig):
        super().__init__()
        self.config = config
        d = config.dim
        self.proj = nn.Sequential(nn.Conv2d(config.in_channels, d, 1), nn.GroupNorm(4, d), nn.ReLU())
        self.query = nn.Conv2d(d, d, 1)
        self.key = nn.Conv2d(d, d, 1)
        self.value = nn.Conv2d(d, d, 1)
        self.out = nn.Conv2d(d, d, 1)
        self.refine = nn.Sequential(nn.Conv2d(2 * d, d, 3, padding=1), nn.ReLU())
        self.mask_head = nn.Conv2d(d, 1, 1)
        self.alpha_head = nn.Conv2d(d, 2, 1) if config.uncertainty else None

    # -- the two entry points -------------------------------------------------------------
    def step(self, fused: torch.Tensor, cache: torch.Tensor) -> tuple[TemporalOutput, torch.Tensor]:
        """One streaming step. fused: (B, C, h, w); cache: (B, T-1, d+1, h, w), zeros at start.

        Returns the outputs for this frame and the new cache (oldest slot dropped, this frame
        appended as valid).
        """
        b, _, h, w = fused.shape
        feat = self.proj(fused)  # (B, d, h, w)
        entry = torch.cat([feat, feat.new_ones(b, 1, h, w)], dim=1).unsqueeze(1)  # (B, 1, d+1, h, w)
        window = torch.cat([cache, entry], dim=1)  # (B, T, d+1, h, w)
        out = self._attend(window[:, :, :-1], window[:, :, -1:])
        return out, window[:, 1:]

    def forward_clip(self, fused: torch.Tensor) -> TemporalOutput:
        """Batch form over a whole clip with a causal band mask. fused: (B, L, C, h, w).

        Returns outputs stacked over time: tensors of shape (B, L, ...)."""
        b, length, c, h, w = fused.shape
        feat = self.proj(fused.reshape(b * length, c, h, w)).reshape(b, length, -1, h, w)  # (B, L, d, h, w)
        t = self.config.window
        pad = feat.new_zeros(b, t - 1, feat.shape[2], h, w)
        valid = torch.cat([feat.new_zeros(b, t - 1, 1, h, w), feat.new_ones(b, length, 1, h, w)], dim=1)
        padded = torch.cat([pad, feat], dim=1)  # (B, T-1+L, d, h, w)
        outs = []
        for i in range(length):  # window of frame i: padded[i : i+T]
            outs.append(self._attend(padded[:, i : i + t], valid[:, i : i + t]))
        stack = lambda xs: torch.stack(xs, dim=1) if xs[0] is not None else None  # noqa: E731
        return TemporalOutput(*(stack([o[k] for o in outs]) for k in range(4)))

    # -- shared core ----------------------------------------------------------------------
    def _attend(self, feats: torch.Tensor, valid: torch.Tensor) -> TemporalOutput:
        """feats: (B, T, d, h, w) oldest first, the current frame last; valid: (B, T, 1, h, w)."""
        b, t, d, h, w = feats.shape
        heads, hd = self.config.heads, d // self.config.heads
        flat = feats.reshape(b * t, d, h, w)
        current = feats[:, -1]  # (B, d, h, w)
        q = self.query(current).reshape(b, heads, hd, 1, h * w)  # (B, nh, hd, 1, P)
        k = self.key(flat).reshape(b, t, heads, hd, h * w).transpose(1, 2)  # (B, nh, T, hd, P)
        v = self.value(flat).reshape(b, t, heads, hd, h * w).transpose(1, 2)  # (B, nh, T, hd, P)
        scores = (q.transpose(2, 3) * k).sum(dim=3) / hd**0.5  # (B, nh, T, P)
        bias = (1.0 - valid.reshape(b, 1, t, h * w)) * _MASKED  # (B, 1, T, P)
        attn = torch.softmax(scores + bias, dim=2)  # (B, nh, T, P)
        mixed = (attn.unsqueeze(3) * v).sum(dim=2)  # (B, nh, hd, P)
        mixed = self.out(mixed.reshape(b, d, h, w))
        x = self.refine(torch.cat([current, mixed], dim=1))  # (B, d, h, w)
        logits = self.mask_head(x)
        prob = torch.sigmoid(logits)
        if self.alpha_head is None:
            return TemporalOutput(logits, prob, torch.zeros_like(prob), None)
        alpha = F.softplus(self.alpha_head(x)) + 1.0  # (B, 2, h, w)
        u = dirichlet_uncertainty(alpha)
        return TemporalOutput(logits, prob * (1.0 - u), u, alpha)
