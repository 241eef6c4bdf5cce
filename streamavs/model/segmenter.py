"""AVSSegmenter: visual encoder + audio encoder + neck + fusion + decoder + mask head + similarity head.

One frame and its 1 s of audio in, one mask and one "is this sounding here" score out:

    frame (B, 3, H, W) RGB [0, 1] --normalise--> visual encoder --> F1..F4 (strides 4..32)
    log_mel (B, 1, 96, 64) -------------------> audio encoder  --> a (B, D_a)
    F_i --neck--> fusion(F_i, a) --> Panoptic-FPN decoder --> fused (B, C_f, H/4, W/4)
    fused --mask_head (1x1 conv)--> x4 bilinear --> mask_logits (B, 1, H, W)
    similarity = cos(W a, avgpool(F4))                                  (robust-AVS eq. 6)
    sounding_logit = sim_scale * similarity + sim_bias                  (eq. 7 uses sigmoid of it)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from streamavs.audio import LogMelParams
from streamavs.errors import InputError
from streamavs.model.config import ModelConfig
from streamavs.model.decoder import PanopticFPNDecoder, build_neck
from streamavs.model.fusion import build_fusion
from streamavs.model.resize import to_frame

__all__ = ["AVSOutput", "AVSSegmenter", "SimilarityHead"]

LOG_MEL_SHAPE = (1, *LogMelParams().example_shape)  # (1, 96, 64): one log-mel example per frame, no batch


class AVSOutput(NamedTuple):
    """Outputs of :meth:`AVSSegmenter.forward`, all float32.

    mask_logits: (B, 1, H, W) per-pixel logits at the input resolution (sigmoid -> probability).
    similarity: (B,) cosine of the projected audio and pooled visual features, in [-1, 1].
    sounding_logit: (B,) ``scale * similarity + bias``; sigmoid -> probability that the audio
        belongs to something visible.
    fused: (B, C_f, H/4, W/4) the decoder's last map, before the mask head (temporal stage input).
    audio: (B, D_a) the audio embedding (a temporal stage with ``audio_dim`` reads how far it moved).
    """

    mask_logits: torch.Tensor
    similarity: torch.Tensor
    sounding_logit: torch.Tensor
    fused: torch.Tensor
    audio: torch.Tensor | None = None


class SimilarityHead(nn.Module):
    """Eq. 6: audio embedding projected to the last stage's width, cosine with the pooled F4.

    forward(audio (B, D_a), last_stage (B, C4, h, w)) -> (similarity (B,), sounding_logit (B,))
    """

    def __init__(self, audio_dim: int, visual_channels: int, config: ModelConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(audio_dim, visual_channels)
        log_scale = torch.tensor(math.log(config.sim_scale))
        bias = torch.tensor(float(config.sim_bias))
        if config.sim_learnable:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        if config.sim_bias_learnable:
            self.bias = nn.Parameter(bias)
        else:
            self.register_buffer("bias", bias)

    def forward(self, audio: torch.Tensor, last_stage: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.proj(audio)  # (B, C4)
        v = last_stage.mean(dim=(2, 3))  # (B, C4)
        similarity = F.cosine_similarity(a, v, dim=1, eps=1e-8)  # (B,)
        return similarity, self.log_scale.exp() * similarity + self.bias


def _build_visual(config: ModelConfig, load_pretrained: bool) -> nn.Module:
    if config.backbone == "efficientnet_lite0":
        from streamavs.model.efficientnet_lite import EfficientNetLite0Features

        return EfficientNetLite0Features(pretrained=config.backbone_pretrained and load_pretrained)
    from streamavs.model.pvt import PVTv2Features

    return PVTv2Features(config.backbone, config.backbone_checkpoint if load_pretrained else None)


def _build_audio(config: ModelConfig, load_pretrained: bool) -> nn.Module:
    if config.audio_encoder == "vggish":
        from streamavs.model.vggish import VGGish, load_vggish_weights

        model = VGGish()
        if config.audio_checkpoint is not None and load_pretrained:
            load_vggish_weights(model, config.audio_checkpoint)
        return model
    from streamavs.model.audio_cnn import AudioCNN

    return AudioCNN(config.audio_channels, config.audio_dim)


class AVSSegmenter(nn.Module):
    """The per-frame audio-visual segmenter described by a :class:`ModelConfig`.

    `load_pretrained=False` skips the pretrained/checkpoint weights named by the config (used
    when a full state dict is about to be loaded, e.g. by ``checkpoint.load_model``).
    Attributes for the temporal stage: ``fused_channels`` (C_f) and ``mask_head``.
    """

    def __init__(self, config: ModelConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.tensor(config.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(config.std, dtype=torch.float32).view(1, 3, 1, 1))
        self.visual = _build_visual(config, load_pretrained)
        self.audio = _build_audio(config, load_pretrained)
        channels = tuple(self.visual.channels)
        c = config.neck_channels
        self.necks = nn.ModuleList(build_neck(config.neck, cin, c) for cin in channels)
        self.fusions = nn.ModuleList(
            build_fusion(config.fusion, c, config.audio_dim, config.fusion_channels)
            if (config.fusion != "none" and i in config.fusion_stages)
            else nn.Identity()
            for i in range(4)
        )
        self.decoder = PanopticFPNDecoder(c, config.decoder_channels, config.decoder_upsample_convs)
        self.fused_channels = config.decoder_channels
        self.mask_head = nn.Conv2d(config.decoder_channels, 1, 1)
        self.similarity_head = SimilarityHead(config.audio_dim, channels[-1], config)

    def _check_inputs(self, frame: torch.Tensor, log_mel: torch.Tensor) -> None:
        if frame.dim() != 4 or frame.shape[1] != 3 or frame.shape[2] % 32 or frame.shape[3] % 32:
            raise InputError(
                f"frame must be (B, 3, H, W) RGB in [0, 1] with H and W multiples of 32 "
                f"(this model: {self.config.image_size}x{self.config.image_size}), got {tuple(frame.shape)}; "
                "resize frames to the model's image_size"
            )
        if log_mel.dim() != 4 or tuple(log_mel.shape[1:]) != LOG_MEL_SHAPE or log_mel.shape[0] != frame.shape[0]:
            raise InputError(
                f"log_mel must be (B, {', '.join(map(str, LOG_MEL_SHAPE))}) with the frame's batch size {frame.shape[0]}, got "
                f"{tuple(log_mel.shape)}; compute it with streamavs.audio.LogMel"
            )

    def forward(self, frame: torch.Tensor, log_mel: torch.Tensor) -> AVSOutput:
        """frame (B, 3, H, W) float32 RGB in [0, 1]; log_mel (B, 1, 96, 64) float32 -> AVSOutput."""
        if not torch.jit.is_tracing():  # shapes are fixed constants inside an exported graph
            self._check_inputs(frame, log_mel)
        x = (frame - self.mean) / self.std
        feats = self.visual(x)  # 4 maps, strides 4/8/16/32
        audio = self.audio(log_mel)  # (B, D_a)
        fused_stages = []
        for feat, neck, fusion in zip(feats, self.necks, self.fusions):
            y = neck(feat)  # (B, C_neck, h_i, w_i)
            fused_stages.append(y if isinstance(fusion, nn.Identity) else fusion(y, audio))
        fused = self.decoder(fused_stages)  # (B, C_f, H/4, W/4)
        mask_logits = to_frame(self.mask_head(fused), frame.shape[-2:])  # (B, 1, H, W)
        similarity, sounding_logit = self.similarity_head(audio, feats[-1])
        return AVSOutput(mask_logits, similarity, sounding_logit, fused, audio)
