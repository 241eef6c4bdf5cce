"""The model registry: ``@register_model`` names a config builder, ``create_model`` is the way in.

timm-style: each registered function returns the :class:`ModelConfig` of one named
architecture; :func:`create_model` applies keyword overrides and builds the network.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable

from streamavs.errors import ConfigError
from streamavs.model.config import ModelConfig

if TYPE_CHECKING:
    from streamavs.model.segmenter import AVSSegmenter

__all__ = ["register_model", "available_models", "model_config", "create_model", "DEFAULT_MODEL"]

DEFAULT_MODEL = "avs_lite"
_REGISTRY: dict[str, Callable[[], ModelConfig]] = {}


def register_model(fn: Callable[[], ModelConfig]) -> Callable[[], ModelConfig]:
    """Register `fn` (returns a ModelConfig) under its function name."""
    if fn.__name__ in _REGISTRY:
        raise ConfigError(f"model {fn.__name__!r} is registered twice; rename one of the builders")
    _REGISTRY[fn.__name__] = fn
    return fn


def available_models() -> list[str]:
    """Sorted names accepted by :func:`create_model`."""
    return sorted(_REGISTRY)


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The registered config `name` with `overrides` applied (field name -> value)."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; registered models: {available_models()}")
    cfg = _REGISTRY[name]()
    valid = [f.name for f in dataclasses.fields(ModelConfig)]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ConfigError(f"unknown ModelConfig overrides {unknown} for {name!r}; valid fields: {valid}")
    return dataclasses.replace(cfg, **overrides)


def create_model(name: str = DEFAULT_MODEL, **overrides: Any) -> "AVSSegmenter":
    """Build the registered model `name` (e.g. ``create_model("avs_lite", image_size=96)``)."""
    from streamavs.model.segmenter import AVSSegmenter

    return AVSSegmenter(model_config(name, **overrides))


@register_model
def avs_lite() -> ModelConfig:
    """Real-time CPU model: EfficientNet-Lite0 (ImageNet) + small audio CNN + sigmoid
    cross-attention at strides 16/32 + light FPN decoder (32 channels)."""
    return ModelConfig(name="avs_lite")


@register_model
def avs_tpavi_b5() -> ModelConfig:
    """The robust-AVS / AVSBench configuration: PVT-v2-b5 + VGGish + ASPP(256) + TPAVI at
    every stage + Panoptic-FPN decoder, 224x224. Weights are random unless
    `backbone_checkpoint` / `audio_checkpoint` name local files."""
    return ModelConfig(
        name="avs_tpavi_b5",
        backbone="pvt_v2_b5",
        backbone_pretrained=False,
        audio_encoder="vggish",
        neck="aspp",
        neck_channels=256,
        fusion="tpavi",
        fusion_stages=(0, 1, 2, 3),
        fusion_channels=128,
        decoder_channels=128,
        decoder_upsample_convs=True,
    )
