"""PyTorch eager backend: the reference every exported engine is checked against.

Runs a :class:`~streamavs.model.streaming.StreamingSegmenter`, loaded from a ``.pt`` checkpoint
(``load_streaming``) or given in memory. Its manifest is derived from the model itself by
:func:`streaming_manifest`, which export also uses, so every backend describes a model the same way.
Needs the ``train`` extra (torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from streamavs.audio import LogMelParams
from streamavs.engine.base import Engine
from streamavs.engine.manifest import (
    AudioSpec, FrameSpec, Manifest, TemporalSpec, TensorSpec, check_model_file, check_runtime, file_sha256, today,
)
from streamavs.errors import EngineError, require

__all__ = ["TorchEngine", "streaming_manifest", "library_versions", "jsonable"]


def jsonable(x: Any) -> Any:
    """A JSON-able copy of checkpoint metadata: tensors/arrays become numbers or lists."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "tolist"):  # torch.Tensor, np.ndarray, numpy scalars
        return jsonable(x.tolist())
    if isinstance(x, float) and x != x:
        return None  # NaN is not JSON
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return str(x)


def library_versions(**extra: Any) -> dict[str, Any]:
    """Versions of streamavs, torch, onnx and onnxruntime where installed (None otherwise)."""
    import importlib

    from streamavs import __version__

    out: dict[str, Any] = {"streamavs": __version__}
    for mod in ("torch", "onnx", "onnxruntime", "torch_tensorrt"):
        try:
            out[mod] = importlib.import_module(mod).__version__
        except Exception:  # noqa: BLE001 - absent or broken optional package: just unrecorded
            out[mod] = None
    out.update(extra)
    return out


def streaming_manifest(
    model,
    extra: dict[str, Any],
    *,
    name: str,
    backend: str,
    model_file: str,
    sha256: str,
    precision: str = "fp32",
    export: dict[str, Any] | None = None,
    opset: int | None = None,
) -> Manifest:
    """The manifest that describes `model` (a StreamingSegmenter) and its checkpoint `extra`."""
    from streamavs.model.streaming import INPUT_NAMES, OUTPUT_NAMES

    cfg = model.segmenter.config
    size = model.image_size
    cache = tuple(int(s) for s in model.cache_shape())
    audio = LogMelParams()
    inputs = (
        TensorSpec(INPUT_NAMES[0], (1, size, size, 3), "uint8"),
        TensorSpec(INPUT_NAMES[1], (1, 1, *audio.example_shape), "float32"),  # (1, 1, 96, 64)
        TensorSpec(INPUT_NAMES[2], cache, "float32"),
    )
    outputs = (
        TensorSpec(OUTPUT_NAMES[0], (1, 1, size, size), "float32"),
        TensorSpec(OUTPUT_NAMES[1], (1, 1, size, size), "float32"),
        TensorSpec(OUTPUT_NAMES[2], (1,), "float32"),
        TensorSpec(OUTPUT_NAMES[3], cache, "float32"),
    )
    temporal = None if model.temporal is None else TemporalSpec(model.temporal.config.window, cache)
    train_cfg = extra.get("train_config") if isinstance(extra.get("train_config"), dict) else {}
    training = {
        "data": jsonable(train_cfg.get("data", "not recorded in the checkpoint")),
        "metrics": jsonable(extra.get("metrics", {})),
        "run": jsonable({k: v for k, v in (extra.get("run_state") or {}).items() if k in ("epoch", "global_step", "best_gmiou")}),
    }
    model_record = {"name": cfg.name, "config": cfg.to_dict()}
    if temporal is not None:
        model_record["temporal_config"] = model.temporal.config.to_dict()
    return Manifest(
        name=name,
        backend=backend,
        precision=precision,
        model_file=model_file,
        sha256=sha256,
        inputs=inputs,
        outputs=outputs,
        frame=FrameSpec(size=(size, size), mean=tuple(cfg.mean), std=tuple(cfg.std)),
        audio=AudioSpec(audio),
        temporal=temporal,
        model=model_record,
        training=training,
        versions=library_versions(opset=opset),
        export=dict(export or {}),
        created=today(),
    )


class TorchEngine(Engine):
    """Eager PyTorch on the CPU (or `device`), numpy in/out, under ``torch.inference_mode``.

    threads: if given, calls ``torch.set_num_threads`` (process-wide: torch has no per-model setting).
    """

    backend = "torch"

    def __init__(
        self,
        manifest: Manifest,
        model_path: Path | None,
        *,
        model=None,
        device: str = "cpu",
        threads: int | None = None,
        audio_params: LogMelParams | None = None,
        frame_size: tuple[int, int] | None = None,
    ) -> None:
        torch = require("torch", "train", "the PyTorch engine backend")
        super().__init__(manifest, model_path)
        check_runtime(manifest, audio_params=audio_params, frame_size=frame_size)
        if model is None:
            if model_path is None:
                raise EngineError("TorchEngine needs a checkpoint path or an in-memory model")
            check_model_file(manifest, model_path)
            from streamavs.model.streaming import load_streaming

            model, _ = load_streaming(model_path)
        actual = tuple(int(s) for s in model.cache_shape())
        if actual != manifest.cache_shape:
            from streamavs.errors import ManifestMismatch

            raise ManifestMismatch(
                f"engine {manifest.name!r}: manifest says cache shape {list(manifest.cache_shape)} but the model "
                f"takes {list(actual)}; re-export the engine"
            )
        if threads is not None:
            torch.set_num_threads(int(threads))
        self._torch = torch
        self._device = torch.device(device)
        self.model = model.eval().to(self._device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, name: str | None = None, **options: Any) -> "TorchEngine":
        """Load a ``.pt`` checkpoint (written by save_streaming_checkpoint) as an engine."""
        require("torch", "train", "the PyTorch engine backend")
        from streamavs.model.streaming import load_streaming

        path = Path(path)
        model, extra = load_streaming(path)
        manifest = streaming_manifest(
            model, extra, name=name or path.stem, backend="torch", model_file=path.name, sha256=file_sha256(path)
        )
        return cls(manifest, path, model=model, **options)

    @classmethod
    def from_module(cls, model, extra: dict[str, Any] | None = None, *, name: str = "eager", **options: Any) -> "TorchEngine":
        """Wrap an in-memory StreamingSegmenter (the export's reference)."""
        manifest = streaming_manifest(model, extra or {}, name=name, backend="torch", model_file="", sha256="")
        return cls(manifest, None, model=model, **options)

    def _run(self, frame: np.ndarray, log_mel: np.ndarray, cache: np.ndarray) -> tuple[np.ndarray, ...]:
        torch = self._torch
        with torch.inference_mode():
            outs = self.model(
                torch.from_numpy(frame).to(self._device),
                torch.from_numpy(log_mel).to(self._device),
                torch.from_numpy(cache).to(self._device),
            )
        return tuple(o.float().cpu().numpy() for o in outs)

    def _release(self) -> None:
        self.model = None
