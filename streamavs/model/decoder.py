"""Necks (ASPP or 1x1 projection per stage) and the Panoptic-FPN-style mask decoder.

All maps are (B, C, H, W). Stage i has stride 4 * 2^i (4, 8, 16, 32); input sizes are
multiples of 32, so every 2x resize is exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ASPP", "conv_bn_relu", "build_neck", "PanopticFPNDecoder"]


def conv_bn_relu(cin: int, cout: int, kernel_size: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid as AVSBench uses it (``Classifier_Module``): the SUM of parallel
    3x3 convs with dilations 3/6/12/18, mapping every stage to one common width (256 there).

    forward(x (B, C_in, H, W)) -> (B, C_out, H, W)
    """

    def __init__(self, cin: int, cout: int, dilations: tuple[int, ...] = (3, 6, 12, 18)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(cin, cout, 3, padding=d, dilation=d) for d in dilations)
        for conv in self.branches:
            nn.init.normal_(conv.weight, 0.0, 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for conv in self.branches[1:]:
            out = out + conv(x)
        return out


def build_neck(kind: str, cin: int, cout: int) -> nn.Module:
    """ModelConfig.neck: "aspp" (AVSBench) or "conv1x1" (1x1 conv + BN, real-time)."""
    if kind == "aspp":
        return ASPP(cin, cout)
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))


class PanopticFPNDecoder(nn.Module):
    """Top-down FPN over the four fused stages, then a Panoptic-FPN semantic head that brings
    every level to stride 4 and sums them.

    With `upsample_convs` (Panoptic FPN, Kirillov et al. 2019) a level at stride 4 * 2^k goes
    through k blocks of [3x3 conv-BN-ReLU, 2x bilinear]; otherwise (real-time) one 3x3 conv at
    the level's own resolution, one bilinear resize to stride 4, and one 3x3 conv after the sum.

    forward(list of 4 maps (B, C_in, H/s, W/s)) -> fused (B, C_out, H/4, W/4)
    """

    def __init__(self, in_channels: int, out_channels: int, upsample_convs: bool = True) -> None:
        super().__init__()
        self.upsample_convs = upsample_convs
        self.heads = nn.ModuleList()
        for level in range(4):
            if upsample_convs:
                blocks: list[nn.Module] = [conv_bn_relu(in_channels, out_channels)]
                for k in range(level):
                    if k > 0:
                        blocks.append(conv_bn_relu(out_channels, out_channels))
                    blocks.append(nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False))
                self.heads.append(nn.Sequential(*blocks))
            else:
                self.heads.append(conv_bn_relu(in_channels, out_channels))
        self.out = nn.Identity() if upsample_convs else conv_bn_relu(out_channels, out_channels)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        # Top-down pathway: p_i = f_i + up2(p_{i+1}).
        pyramid = [feats[3]]
        for f in reversed(feats[:3]):
            up = F.interpolate(pyramid[0], scale_factor=2.0, mode="bilinear", align_corners=False)
            pyramid.insert(0, f + up)
        fused = None
        for level, (head, p) in enumerate(zip(self.heads, pyramid)):
            y = head(p)
            if not self.upsample_convs and level > 0:
                y = F.interpolate(y, scale_factor=float(2**level), mode="bilinear", align_corners=False)
            fused = y if fused is None else fused + y  # (B, C_out, H/4, W/4)
        return self.out(fused)
