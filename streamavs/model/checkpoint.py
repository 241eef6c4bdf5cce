"""Checkpoints that carry their ModelConfig, so a model is rebuilt from the file alone.

Layout (a dict saved with ``torch.save``)::

    {"format_version": 1, "model_config": ModelConfig.to_dict(), "state_dict": {...}, **extra}
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from streamavs.errors import ConfigError
from streamavs.model.config import ModelConfig
from streamavs.model.segmenter import AVSSegmenter

__all__ = ["FORMAT_VERSION", "save_checkpoint", "load_checkpoint", "load_model"]

FORMAT_VERSION = 1
_RESERVED = ("format_version", "model_config", "state_dict")


def save_checkpoint(path: str | Path, model: AVSSegmenter, extra: dict[str, Any] | None = None) -> Path:
    """Write `model` (config + weights) and `extra` (e.g. step, optimizer state, metrics) to `path`.

    `extra` may hold tensors, numbers, strings, lists and dicts only (the file is read back
    with ``torch.load(weights_only=True)``).

    Atomic: written to a temporary file in the same folder, then ``os.replace``d, so a crash
    never leaves a truncated checkpoint behind.
    """
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(_RESERVED))
    if clash:
        raise ConfigError(f"checkpoint extra keys {clash} are reserved; rename them (reserved: {list(_RESERVED)})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format_version": FORMAT_VERSION,
        "model_config": model.config.to_dict(),
        "state_dict": model.state_dict(),
        **extra,
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint dict written by :func:`save_checkpoint` (CPU tensors)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} does not exist; pass a file written by save_checkpoint")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)  # no arbitrary pickles
    except pickle.UnpicklingError as exc:
        raise ConfigError(
            f"checkpoint {str(path)!r} cannot be read safely ({exc}); 'extra' may hold only tensors, "
            "numbers, strings, lists and dicts (store dataclasses via dataclasses.asdict)"
        ) from exc
    if not isinstance(data, dict) or not all(k in data for k in _RESERVED):
        raise ConfigError(
            f"{str(path)!r} is not a StreamAVS checkpoint: expected a dict with keys {list(_RESERVED)}"
        )
    if data["format_version"] != FORMAT_VERSION:
        raise ConfigError(
            f"checkpoint {str(path)!r} has format_version {data['format_version']}, this StreamAVS reads "
            f"{FORMAT_VERSION}; use the StreamAVS version that wrote it"
        )
    return data


def load_model(path: str | Path) -> tuple[AVSSegmenter, dict[str, Any]]:
    """Rebuild the model from the stored config, load its weights; returns (model in eval mode, extra)."""
    data = load_checkpoint(path)
    config = ModelConfig.from_dict(data["model_config"])
    model = AVSSegmenter(config, load_pretrained=False)  # every weight comes from the file
    model.load_state_dict(data["state_dict"], strict=True)
    model.eval()
    extra = {k: v for k, v in data.items() if k not in _RESERVED}
    return model, extra
