"""Checkpoints that carry their ModelConfig, so a model is rebuilt from the file alone.

Layout (a dict saved with ``torch.save``)::

    {"format_version": 1, "model_config": ModelConfig.to_dict(), "state_dict": {...}, **extra}
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from streamavs.errors import ConfigError, InputError
from streamavs.files import atomic_write
from streamavs.model.config import ModelConfig
from streamavs.model.segmenter import AVSSegmenter

__all__ = ["FORMAT_VERSION", "save_checkpoint", "load_checkpoint", "load_model"]

FORMAT_VERSION = 1
_RESERVED = ("format_version", "model_config", "state_dict")


def save_checkpoint(path: str | Path, model: AVSSegmenter, extra: dict[str, Any] | None = None) -> Path:
    """Write `model` (config + weights) and `extra` (e.g. step, optimizer state, metrics) to `path`.

    `extra` may hold tensors, numbers, strings, lists and dicts only (the file is read back
    with ``torch.load(weights_only=True)``).

    Atomic (:func:`streamavs.files.atomic_write`): a crash never leaves a truncated checkpoint behind.
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
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write(path, buffer.getvalue())


_EXPECTED = "expected a .pt checkpoint written by `streamavs train` (exported engines are .json/.onnx files)"


def _reason(exc: BaseException, path: Path | None = None) -> str:
    """A short cause for a failed torch.load or load_state_dict, without PyTorch's advice (never
    weights_only=False here). With `path`, the file's first bytes tell truncated from foreign files."""
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return f"it holds a Python object of type {found.group(1)}, which is not allowed in a checkpoint"
    try:
        with open(path, "rb") as f:  # type: ignore[arg-type]
            head: bytes | None = f.read(4)
    except (OSError, TypeError):  # unreadable (the error says why), or no path given
        head = None
    if head is not None:
        if head == b"PK\x03\x04" and not zipfile.is_zipfile(path):  # torch.save's zip without its end record
            return "the file ends early: it is truncated"
        if head[:1] != b"\x80" and head != b"PK\x03\x04":  # neither torch.save's zip nor a legacy pickle
            return "it is not a file written by torch.save"
    if isinstance(exc, EOFError):
        return "the file ends early: it is truncated"
    first = text.strip().splitlines()[0] if text.strip() else ""
    first = first.split(". ")[0].rstrip(".")
    first = first if len(first) <= 160 else first[:157] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and validate a checkpoint dict written by :func:`save_checkpoint` (CPU tensors).

    Read with ``weights_only=True``: a checkpoint holds only tensors, dicts, lists, tuples, numbers
    and strings, so no pickled code ever runs. Every failure raises InputError naming the file.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"checkpoint {path} is a folder; {_EXPECTED}, e.g. {path / 'best.pt'}")
    if not path.is_file():
        raise InputError(f"checkpoint {path} does not exist; {_EXPECTED}")
    if path.stat().st_size == 0:
        raise InputError(f"checkpoint {path} is empty (0 bytes); {_EXPECTED}: copy or write it again")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)  # no arbitrary pickles
    except Exception as exc:  # noqa: BLE001 - any failure to read a user's file is a bad file
        raise InputError(f"checkpoint {path} cannot be read ({_reason(exc, path)}); {_EXPECTED}") from exc
    if not isinstance(data, dict) or not all(k in data for k in _RESERVED):
        keys = sorted(map(str, data))[:6] if isinstance(data, dict) else None
        what = f"a dict with keys {keys}" if keys is not None else f"a {type(data).__name__}"
        raise InputError(
            f"checkpoint {path} is not a StreamAVS checkpoint: it holds {what}, not the keys {list(_RESERVED)}; "
            f"{_EXPECTED}"
        )
    if data["format_version"] != FORMAT_VERSION:
        raise InputError(
            f"checkpoint {path} has format_version {data['format_version']}, this StreamAVS reads "
            f"{FORMAT_VERSION}; use the StreamAVS version that wrote it"
        )
    return data


def load_model(path: str | Path) -> tuple[AVSSegmenter, dict[str, Any]]:
    """Rebuild the model from the stored config, load its weights; returns (model in eval mode, extra)."""
    data = load_checkpoint(path)
    try:
        config = ModelConfig.from_dict(dict(data["model_config"]))
    except (ConfigError, TypeError, ValueError, KeyError) as exc:
        raise InputError(f"checkpoint {path} has an unusable model_config ({exc}); {_EXPECTED}") from exc
    model = AVSSegmenter(config, load_pretrained=False)  # every weight comes from the file
    try:
        model.load_state_dict(data["state_dict"], strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise InputError(
            f"checkpoint {path}: its weights do not fit the model its model_config describes "
            f"({_reason(exc)}); the file was modified or mixed up: {_EXPECTED}"
        ) from exc
    model.eval()
    extra = {k: v for k, v in data.items() if k not in _RESERVED}
    return model, extra
