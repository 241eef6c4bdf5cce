"""PyTorch eager backend: the reference every exported engine is checked against.

Runs a :class:`~streamavs.model.streaming.StreamingSegmenter`, loaded from a ``.pt`` checkpoint
(``load_streaming``) or given in memory. Its manifest is derived from the model itself by
:func:`~streamavs.engine.describe.streaming_manifest`, as export's are, so every backend
describes a model the same way.
Needs the ``train`` extra (torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from streamavs.audio import LogMelParams
from streamavs.engine.base import Engine
from streamavs.engine.describe import streaming_manifest
from streamavs.engine.manifest import Manifest, check_model_file, file_sha256
from streamavs.engine.thread_count import check_threads
from streamavs.errors import EngineError, require

__all__ = ["TorchEngine"]


class TorchEngine(Engine):
    """Eager PyTorch on the CPU (or `device`), numpy in/out, under ``torch.inference_mode``.

    threads: if given, calls ``torch.set_num_threads`` (process-wide: torch has no per-model setting);
        a whole number from 1 to 4 per core (:func:`~streamavs.engine.thread_count.check_threads`).
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
        threads = check_threads(threads)  # before anything: set_num_threads would change every model in the process
        torch = require("torch", "train", "the PyTorch engine backend")
        super().__init__(manifest, model_path, audio_params=audio_params, frame_size=frame_size)
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
            torch.set_num_threads(threads)
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
