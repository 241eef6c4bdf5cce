"""Audio-visual fusion: visual positions attend to / are modulated by the audio embedding.

Two residual modules, both applied per visual stage on (B, C, H, W) maps with a (B, D_a)
audio embedding, both free of data-dependent control flow (ONNX opset 17 friendly):

* :class:`TPAVI` - AVSBench's temporal pixel-wise audio-visual interaction (a non-local block
  in "dot" mode whose keys come from the audio embedding tiled over the map), computed in
  closed form for one frame.
* :class:`SigmoidCrossAttention` - CAVP-style visual-query cross-attention with a sigmoid in
  place of the softmax, ``u_v + Attn(u_v, u_a, u_a)`` (docs/reference.md §7); cheap enough
  for the real-time model.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["TPAVI", "SigmoidCrossAttention", "build_fusion"]


class TPAVI(nn.Module):
    """AVSBench TPAVI for a single frame, exactly, in O(HW) instead of O((HW)^2).

    AVSBench: ``A = align(a)`` tiled to (B, C, H, W); ``theta, phi, g`` are 1x1 convs;
    ``f = theta(x)^T phi(A) / N`` with N = H*W; ``y = f g(x)``; ``z = x + BN(W_z y)``.
    Because phi(A) is the same vector ``p = phi(align(a))`` at every position,
    ``f_ij = <theta_i, p> / N`` for all j, so ``y_i = <theta_i, p> * mean_j g_j``: a
    per-position audio-visual affinity scaling the global mean of g. This module computes
    that directly (phi as a Linear on the aligned audio, the same parameters as a 1x1 conv).
    As in the non-local block, W_z's BatchNorm starts at zero, so the block starts as identity.

    forward(x (B, C, H, W), audio (B, D_a)) -> (B, C, H, W)
    """

    def __init__(self, channels: int, audio_dim: int, inter_channels: int) -> None:
        super().__init__()
        self.align = nn.Linear(audio_dim, channels)
        self.theta = nn.Conv2d(channels, inter_channels, 1)
        self.phi = nn.Linear(channels, inter_channels)
        self.g = nn.Conv2d(channels, inter_channels, 1)
        self.w_z = nn.Sequential(nn.Conv2d(inter_channels, channels, 1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.w_z[1].weight)
        nn.init.zeros_(self.w_z[1].bias)

    def forward(self, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        p = self.phi(self.align(audio))  # (B, Ci)
        theta = self.theta(x)  # (B, Ci, H, W)
        affinity = (theta * p[:, :, None, None]).sum(dim=1, keepdim=True)  # (B, 1, H, W)
        g_mean = self.g(x).mean(dim=(2, 3), keepdim=True)  # (B, Ci, 1, 1)
        y = affinity * g_mean  # (B, Ci, H, W)
        return x + self.w_z(y)


class SigmoidCrossAttention(nn.Module):
    """Visual queries attend to the single audio token with a sigmoid gate (CAVP-style).

    ``gate_i = sigmoid(<q(x_i), k(a)> / sqrt(d))`` in (0, 1) says how strongly position i
    matches the sound; ``z_i = x_i + gate_i * v(a)``. With one audio token a softmax would be
    identically 1; the sigmoid lets every position answer independently, including "no".

    forward(x (B, C, H, W), audio (B, D_a)) -> (B, C, H, W)
    """

    def __init__(self, channels: int, audio_dim: int, inter_channels: int) -> None:
        super().__init__()
        self.query = nn.Sequential(nn.Conv2d(channels, inter_channels, 1, bias=False), nn.BatchNorm2d(inter_channels))
        self.key = nn.Linear(audio_dim, inter_channels)
        self.value = nn.Linear(audio_dim, channels)
        self.scale = 1.0 / math.sqrt(inter_channels)

    def forward(self, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        q = self.query(x)  # (B, d, H, W)
        k = self.key(audio)[:, :, None, None]  # (B, d, 1, 1)
        gate = torch.sigmoid((q * k).sum(dim=1, keepdim=True) * self.scale)  # (B, 1, H, W)
        v = self.value(audio)[:, :, None, None]  # (B, C, 1, 1)
        return x + gate * v


def build_fusion(kind: str, channels: int, audio_dim: int, inter_channels: int) -> nn.Module:
    """The fusion module named by ModelConfig.fusion ("tpavi", "sigmoid_xattn")."""
    if kind == "tpavi":
        return TPAVI(channels, audio_dim, inter_channels)
    if kind == "sigmoid_xattn":
        return SigmoidCrossAttention(channels, audio_dim, inter_channels)
    raise ValueError(f"no fusion module {kind!r}")  # ModelConfig validates the name first
