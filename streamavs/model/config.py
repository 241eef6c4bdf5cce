"""ModelConfig: the one frozen dataclass that describes a segmenter and travels with its weights.

A checkpoint stores ``ModelConfig.to_dict()`` next to the state dict, and ``load_model``
rebuilds the network from it (nanoGPT's ``model_args``). The config also carries the input
contract (image size, normalisation), so preprocessing is derived from it, never retyped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from streamavs.errors import ConfigError

__all__ = ["ModelConfig", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_BACKBONES = ("efficientnet_lite0", "pvt_v2_b5")
_AUDIO_ENCODERS = ("vggish", "cnn")
_NECKS = ("aspp", "conv1x1")
_FUSIONS = ("tpavi", "sigmoid_xattn", "none")
_TUPLE_FIELDS = ("mean", "std", "fusion_stages")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and input contract of an :class:`~streamavs.model.segmenter.AVSSegmenter`.

    Inputs: frames are RGB float32 in [0, 1], shape (B, 3, image_size, image_size); the model
    normalises them internally with `mean`/`std`. Audio is the VGGish log-mel example
    (B, 1, 96, 64) float32 from :mod:`streamavs.audio`.

    Similarity head (robust-AVS eq. 6): ``similarity = cos(W a, avgpool(F4))`` and
    ``sounding_logit = sim_scale * similarity + sim_bias``. The paper's form is scale 1, bias 0,
    fixed (``sigmoid(cos)`` in [0.27, 0.73]); `sim_learnable`/`sim_bias_learnable` make them
    trainable parameters (the scale is stored as its logarithm so it stays positive).
    """

    name: str = "avs_lite"
    image_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # Visual encoder.
    backbone: str = "efficientnet_lite0"
    backbone_pretrained: bool = True  # efficientnet_lite0: the ImageNet weights of the package
    backbone_checkpoint: str | None = None  # a local file with timm-layout weights (pvt_v2_b5)
    # Audio encoder.
    audio_encoder: str = "cnn"
    audio_checkpoint: str | None = None  # vggish: path of vggish-10086976.pth
    audio_dim: int = 128
    audio_channels: tuple[int, ...] = (16, 32, 64, 128)  # cnn encoder widths
    # Neck, fusion, decoder.
    neck: str = "conv1x1"
    neck_channels: int = 48  # every stage is mapped to this width before fusion
    fusion: str = "sigmoid_xattn"
    fusion_stages: tuple[int, ...] = (2, 3)  # 0-based visual stages (strides 4, 8, 16, 32)
    fusion_channels: int = 32  # width of the attention's query/key space
    decoder_channels: int = 32  # width of the fused map the mask head and temporal stage read
    decoder_upsample_convs: bool = False  # True: Panoptic-FPN conv+2x stages; False: one conv + resize
    # Similarity head.
    sim_scale: float = 1.0
    sim_learnable: bool = False
    sim_bias: float = 0.0
    sim_bias_learnable: bool = False

    def __post_init__(self) -> None:
        for name in _TUPLE_FIELDS + ("audio_channels",):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        problems = []
        for name, allowed in (
            ("backbone", _BACKBONES),
            ("audio_encoder", _AUDIO_ENCODERS),
            ("neck", _NECKS),
            ("fusion", _FUSIONS),
        ):
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        for name in ("image_size", "audio_dim", "neck_channels", "fusion_channels", "decoder_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.image_size, int) and self.image_size % 32:
            problems.append(f"image_size must be a multiple of 32 (the coarsest stride), got {self.image_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            problems.append(f"mean and std need 3 values with std > 0, got mean={self.mean}, std={self.std}")
        if any(s not in (0, 1, 2, 3) for s in self.fusion_stages):
            problems.append(f"fusion_stages must be a subset of (0, 1, 2, 3), got {self.fusion_stages}")
        if self.audio_encoder == "vggish" and self.audio_dim != 128:
            problems.append(f"audio_encoder 'vggish' gives 128-d embeddings; set audio_dim=128, got {self.audio_dim}")
        if not self.sim_scale > 0:
            problems.append(f"sim_scale must be > 0, got {self.sim_scale!r}")
        if problems:
            raise ConfigError(f"invalid ModelConfig {self.name!r}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field (tuples become lists)."""
        out = dataclasses.asdict(self)
        for name in _TUPLE_FIELDS + ("audio_channels",):
            out[name] = list(out[name])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Rebuild from :meth:`to_dict` output. Unknown keys raise ConfigError naming the valid ones;
        missing keys take their defaults."""
        if not isinstance(data, dict):
            raise ConfigError(f"ModelConfig.from_dict expects a dict, got {type(data).__name__}")
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ConfigError(
                f"unknown ModelConfig keys {unknown}; valid keys are {valid} (the checkpoint or "
                "config may come from another StreamAVS version)"
            )
        return cls(**data)
