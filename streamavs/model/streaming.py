"""The streaming engine as one pure torch function: the module that export compiles.

``(frame, log_mel, feature_cache) -> (mask_prob, uncertainty, sounding, new_feature_cache)``

- frame: (1, H, W, 3) uint8 RGB, already resized to the engine's frame size (the camera's
  layout; the conversion to float and the normalisation happen inside, so every backend and
  the trainer see identical preprocessing).
- log_mel: (1, 1, 96, 64) float32, the VGGish example of the audio that ends at the frame.
- feature_cache: (1, T-1, dim + raw channels, h, w) float32, all zeros at stream start (every slot invalid;
  see streamavs.model.temporal). Engines without a temporal stage take and return a
  (1, 1, 1, 1, 1) placeholder so that every engine has the same signature.
- mask_prob, uncertainty: (1, 1, H, W) float32 in [0, 1]; sounding: (1,) float32, the
  similarity head's probability sigma(sounding_logit).

The pipeline owns the state: it feeds ``new_feature_cache`` back on the next call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from streamavs.model.resize import to_frame
from streamavs.model.temporal import TemporalConfig, TemporalStage

PLACEHOLDER_CACHE = (1, 1, 1, 1, 1)
INPUT_NAMES = ("frame", "log_mel", "feature_cache")
OUTPUT_NAMES = ("mask_prob", "uncertainty", "sounding", "new_feature_cache")


class StreamingSegmenter(nn.Module):
    def __init__(self, segmenter: nn.Module, temporal: TemporalStage | None = None):
        super().__init__()
        self.segmenter = segmenter
        self.temporal = temporal

    @property
    def image_size(self) -> int:
        return self.segmenter.config.image_size

    def cache_shape(self) -> tuple[int, ...]:
        """Shape of feature_cache, batch included."""
        if self.temporal is None:
            return PLACEHOLDER_CACHE
        fused = self.image_size // 4
        return (1, *self.temporal.config.cache_shape(fused, fused))

    def initial_cache(self) -> torch.Tensor:
        return torch.zeros(self.cache_shape())

    def forward(self, frame: torch.Tensor, log_mel: torch.Tensor, feature_cache: torch.Tensor):
        x = frame.permute(0, 3, 1, 2).float() / 255.0  # (1, 3, H, W) in [0, 1]
        return self.forward_float(x, log_mel, feature_cache)

    def forward_float(self, x: torch.Tensor, log_mel: torch.Tensor, feature_cache: torch.Tensor):
        """The same function on an image already in [0, 1], (1, 3, H, W) in the model's dtype
        (the TensorRT wrapper casts before calling it)."""
        out = self.segmenter(x, log_mel)
        sounding = torch.sigmoid(out.sounding_logit)  # (1,)
        if self.temporal is None:
            prob = torch.sigmoid(out.mask_logits)
            return prob, torch.zeros_like(prob), sounding, feature_cache
        frame_logits = self.segmenter.mask_head(out.fused)  # (1, 1, h, w): the frame-only logit before upsampling
        t_out, new_cache = self.temporal.step(out.fused, frame_logits, out.sounding_logit, feature_cache, out.audio)
        size = (x.shape[2], x.shape[3])
        prob = torch.sigmoid(to_frame(t_out.mask_logits, size))
        unc = to_frame(t_out.uncertainty, size)
        return prob, unc, sounding, new_cache


def save_streaming_checkpoint(path: str | Path, model: StreamingSegmenter, extra: dict[str, Any]) -> None:
    """A segmenter checkpoint (streamavs.model.checkpoint) plus the temporal stage, if any."""
    from streamavs.model.checkpoint import save_checkpoint

    extra = dict(extra)
    if model.temporal is not None:
        extra["temporal_config"] = model.temporal.config.to_dict()
        extra["temporal_state_dict"] = model.temporal.state_dict()
    save_checkpoint(path, model.segmenter, extra)


def load_streaming(path: str | Path, *, use_temporal: bool = True) -> tuple[StreamingSegmenter, dict[str, Any]]:
    """Rebuild the streaming module from a checkpoint (with its temporal stage when it has one)."""
    from streamavs.model.checkpoint import load_model

    segmenter, extra = load_model(path)
    temporal = None
    if use_temporal and "temporal_config" in extra:
        temporal = TemporalStage(TemporalConfig.from_dict(extra["temporal_config"]))
        temporal.load_state_dict(extra["temporal_state_dict"])
    return StreamingSegmenter(segmenter, temporal).eval(), extra
