"""PVT-v2 visual encoder (timm ``pvt_v2_*``, features_only), the backbone of AVSBench and robust-AVS.

ImageNet weights cannot be downloaded here, so the encoder is randomly initialised unless a
local checkpoint is given. The checkpoint may be in timm's layout or in the original PVT-v2
release layout (``pvt_v2_b5.pth``, the file AVSBench uses): timm's own checkpoint filter
converts the latter. A classification head in the file is accepted and dropped.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from streamavs.errors import ConfigError, require

__all__ = ["PVTv2Features", "PVT_CHANNELS"]

PVT_CHANNELS = {"pvt_v2_b0": (32, 64, 160, 256), "pvt_v2_b5": (64, 128, 320, 512)}


class PVTv2Features(nn.Module):
    """Four PVT-v2 stages at strides 4/8/16/32 (b5: channels 64/128/320/512).

    forward(x): x (B, 3, H, W) normalised float32 -> list of 4 maps (B, C_i, H/s_i, W/s_i).
    """

    strides = (4, 8, 16, 32)

    def __init__(self, variant: str = "pvt_v2_b5", checkpoint: str | Path | None = None) -> None:
        super().__init__()
        if variant not in PVT_CHANNELS:
            raise ConfigError(f"unknown PVT-v2 variant {variant!r}; supported: {sorted(PVT_CHANNELS)}")
        timm = require("timm", "train", "the PVT-v2 encoder")
        self.channels = PVT_CHANNELS[variant]
        kwargs = {}
        if checkpoint is not None:
            path = Path(checkpoint)
            if not path.is_file():
                raise ConfigError(
                    f"PVT-v2 checkpoint {str(path)!r} does not exist; pass the path of a local "
                    f"{variant} weights file (timm or original PVT-v2 layout) or leave "
                    "backbone_checkpoint unset for random initialisation"
                )
            # timm loads the file into the full model (through pvt_v2's checkpoint filter)
            # before it is converted to a feature extractor.
            kwargs = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path), "num_classes": 1000}}
        try:
            self.body = timm.create_model(variant, features_only=True, out_indices=(0, 1, 2, 3), **kwargs)
        except (RuntimeError, KeyError) as exc:
            raise ConfigError(
                f"cannot load PVT-v2 checkpoint {str(checkpoint)!r} into timm {variant}: {exc}"
                f"; expected a state dict of {variant} in timm or original PVT-v2 layout"
            ) from exc

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))
