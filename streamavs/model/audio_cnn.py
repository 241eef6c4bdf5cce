"""A small audio CNN for the real-time model: the same VGGish log-mel input, ~0.1 M parameters.

VGGish is 72 M parameters and ~21 ms per example on a 2-core CPU, as much as the whole
real-time budget; this encoder is four strided conv-BN-ReLU layers, mean + max pooling over
time and frequency, and one linear layer.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AudioCNN"]


class AudioCNN(nn.Module):
    """log-mel (N, 1, 96, 64) float32 (log of mel magnitude, roughly [-4.6, 5]) -> (N, out_dim)."""

    def __init__(self, channels: tuple[int, ...] = (16, 32, 64, 128), out_dim: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.BatchNorm2d(1)]  # learnable input standardisation
        cin = 1
        for cout in channels:
            layers += [
                nn.Conv2d(cin, cout, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(2 * cin, out_dim)
        self.out_dim = out_dim

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        x = self.features(log_mel)  # (N, C, 96/16, 64/16) = (N, C, 6, 4)
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)  # (N, 2C)
        return self.proj(pooled)  # (N, out_dim)
