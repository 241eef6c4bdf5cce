"""VGGish audio encoder (Hershey et al. 2017), in the layout of the standard PyTorch port.

Network on one log-mel example (N, 1, 96, 64):
conv3x3(1->64) ReLU, max2 | conv(64->128) ReLU, max2 | conv(128->256) ReLU, conv(256->256) ReLU,
max2 | conv(256->512) ReLU, conv(512->512) ReLU, max2 -> (N, 512, 6, 4), transposed to
(N, 6, 4, 512) before flattening (the TensorFlow weight order), then
Linear 12288->4096 ReLU, 4096->4096 ReLU, 4096->128 ReLU. No PCA / quantisation: the
embedding is the 128-d post-ReLU output, as AVSBench uses it.

``vggish-10086976.pth`` (keys ``features.{0,3,6,8,11,13}.{weight,bias}`` and
``embeddings.{0,2,4}.{weight,bias}``) cannot be downloaded here; :func:`load_vggish_weights`
reads it from a user-supplied path and checks every key and shape.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from streamavs.errors import ConfigError

__all__ = ["VGGish", "load_vggish_weights", "VGGISH_SHAPES"]

_CONVS = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    index, cin = 0, 1
    for item in _CONVS:
        if item == "M":
            index += 1
            continue
        shapes[f"features.{index}.weight"] = (item, cin, 3, 3)
        shapes[f"features.{index}.bias"] = (item,)
        cin = item
        index += 2  # conv, ReLU
    for index, (fan_in, fan_out) in zip((0, 2, 4), ((512 * 6 * 4, 4096), (4096, 4096), (4096, 128))):
        shapes[f"embeddings.{index}.weight"] = (fan_out, fan_in)
        shapes[f"embeddings.{index}.bias"] = (fan_out,)
    return shapes


VGGISH_SHAPES: dict[str, tuple[int, ...]] = _expected_shapes()  # the 18 tensors of the standard file


class VGGish(nn.Module):
    """VGGish: log-mel (N, 1, 96, 64) float32 -> embedding (N, 128) float32, >= 0 (post-ReLU)."""

    out_dim = 128

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for item in _CONVS:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(cin, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                cin = item
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 6 * 4, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 128),
            nn.ReLU(inplace=True),
        )

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        x = self.features(log_mel)  # (N, 512, 6, 4)
        x = x.permute(0, 2, 3, 1).contiguous()  # (N, 6, 4, 512): TF (NHWC) flatten order
        x = x.flatten(1)  # (N, 12288)
        return self.embeddings(x)  # (N, 128)


def load_vggish_weights(model: VGGish, path: str | Path) -> None:
    """Load ``vggish-10086976.pth`` (or any file with exactly its 18 keys and shapes) into `model`.

    Raises ConfigError naming the first missing, unexpected or mis-shaped key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"VGGish checkpoint {str(path)!r} does not exist; pass the path of vggish-10086976.pth "
            "(the standard PyTorch port of VGGish) or leave audio_checkpoint unset to train from scratch"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"VGGish checkpoint {str(path)!r} holds a {type(state).__name__}, expected a state dict")
    for key, shape in VGGISH_SHAPES.items():
        if key not in state:
            raise ConfigError(
                f"VGGish checkpoint {str(path)!r} lacks key {key!r} (expected shape {shape}); expected "
                f"the layout of vggish-10086976.pth: {list(VGGISH_SHAPES)}"
            )
        if tuple(state[key].shape) != shape:
            raise ConfigError(
                f"VGGish checkpoint {str(path)!r}: key {key!r} has shape {tuple(state[key].shape)}, "
                f"expected {shape} (is this a VGGish checkpoint with PCA or another layout?)"
            )
    unexpected = sorted(set(state) - set(VGGISH_SHAPES))
    if unexpected:
        raise ConfigError(
            f"VGGish checkpoint {str(path)!r} has unexpected keys {unexpected[:5]}; expected exactly "
            f"{list(VGGISH_SHAPES)} (strip PCA/other tensors before loading)"
        )
    model.load_state_dict(state, strict=True)
