"""Which engine the latency benchmark runs for each (model, backend) pair, built on demand.

A *model spec* names what to benchmark:

* ``default``: the default engine (the first manifest found by engine discovery, as
  ``streamavs run`` picks it). Its PyTorch checkpoint is used for the torch backend when it lies
  beside the manifest (the name the manifest's export record gives). Without any engine, the
  default architecture ``avs_lite`` with random weights and a temporal stage stands in (speed
  does not depend on the weights), and the row says so.
* a registered model name (``avs_tpavi_b5``, ``avs_lite``): that architecture with random
  weights (seed 0), no temporal stage, written once as a checkpoint into the cache folder.
* a path: a ``.pt`` checkpoint, or an engine (``.json`` manifest, ``.onnx``, ``.ep``).

Per backend, :func:`open_engine` loads the matching engine, exporting the checkpoint into the
cache folder when no engine of that kind exists yet (``export_engine`` verifies the export
against PyTorch before writing it). A backend that cannot run here returns a stated reason.

Cache folder: ``$STREAMAVS_CACHE/bench`` or ``~/.cache/streamavs/bench``; exports are keyed by
the checkpoint's sha256, so a changed checkpoint is exported again.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamavs.engine.base import BACKENDS as ENGINE_BACKENDS
from streamavs.engine.manifest import default_engine_name
from streamavs.errors import EngineError, InputError, MissingDependency, StreamAVSError

__all__ = ["BACKENDS", "ModelArtifacts", "default_cache_dir", "check_model_spec", "resolve_model", "open_engine",
           "backend_unavailable"]

BACKENDS: tuple[str, ...] = tuple(ENGINE_BACKENDS)  # a row per load_engine backend, in the registry's order
EXPORT_CHECK_FRAMES = 5  # parity frames of on-the-fly exports (the full check is `streamavs export`)


@dataclass(frozen=True)
class ModelArtifacts:
    """What one model spec resolved to: a display name, an engine manifest and/or a checkpoint.

    note: how it was obtained (e.g. "random weights"), shown in the report row.
    """

    spec: str
    name: str
    manifest: Path | None
    checkpoint: Path | None
    note: str


def default_cache_dir() -> Path:
    """``$STREAMAVS_CACHE/bench`` if set, else ``~/.cache/streamavs/bench``."""
    root = os.environ.get("STREAMAVS_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "streamavs") / "bench"


def _random_checkpoint(arch: str, cache_dir: Path, temporal: bool) -> Path:
    """A checkpoint of registered architecture `arch` with random weights (seed 0), cached."""
    path = cache_dir / f"{arch}{'-temporal' if temporal else ''}-random.pt"
    if path.is_file():
        return path
    import torch

    from streamavs.model.registry import create_model
    from streamavs.model.streaming import StreamingSegmenter, save_streaming_checkpoint
    from streamavs.model.temporal import TemporalConfig, TemporalStage

    torch.manual_seed(0)
    # Pretrained ImageNet weights would not change the speed; random ones need no file.
    segmenter = create_model(arch, backbone_pretrained=False)
    stage = TemporalStage(TemporalConfig(in_channels=segmenter.config.decoder_channels)) if temporal else None
    save_streaming_checkpoint(path, StreamingSegmenter(segmenter, stage).eval(), {"note": "random weights (benchmark)"})
    return path


def checkpoint_beside(manifest_path: Path) -> Path | None:
    """The checkpoint an engine was exported from, when it lies beside the manifest."""
    from streamavs.engine.manifest import read_manifest

    name = read_manifest(manifest_path).export.get("checkpoint")
    if isinstance(name, str) and name:
        candidate = manifest_path.parent / Path(name).name
        if candidate.is_file():
            return candidate
    return None


def _torch_installed() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except ImportError:  # an import hook that refuses torch
        return False


def check_model_spec(spec: str) -> None:
    """Raise InputError unless `spec` is 'default', an existing path or a registered architecture (cheap)."""
    if spec == "default" or Path(spec).exists():
        return
    try:
        from streamavs.model.registry import available_models
    except ImportError:  # no torch: registered names cannot be built
        known: Any = "(none: registered architectures need the train extra)"
    else:
        known = available_models()
        if spec in known:
            if not _torch_installed():  # checked now, not after the other rows ran
                raise MissingDependency(
                    f"--models {spec} builds that architecture with PyTorch, which is not installed; install "
                    "it with: pip install 'streamavs[train]', or benchmark the shipped engine alone: --models default"
                )
            return
    raise InputError(
        f"unknown model {spec!r} for --models: expected 'default', a registered architecture {known}, or a path "
        "to a .pt checkpoint or an engine (.json/.onnx/.ep)"
    )


def resolve_model(spec: str, cache_dir: Path) -> ModelArtifacts:
    """Resolve a model spec (see the module docstring). Raises InputError for an unknown spec."""
    from streamavs.engine.base import default_engine, find_engines, resolve_engine

    check_model_spec(spec)
    if spec == "default":
        if find_engines():
            manifest = default_engine()
            return ModelArtifacts(spec, manifest.stem, manifest, checkpoint_beside(manifest), "default engine")
        ckpt = _random_checkpoint("avs_lite", cache_dir, temporal=True)
        return ModelArtifacts(spec, "avs_lite", None, ckpt, "no default engine found: avs_lite + temporal, random weights")
    path = Path(spec)
    if path.exists():
        if path.suffix == ".pt":  # runs/X/temporal.pt is "X": every run's checkpoint has the same file name
            return ModelArtifacts(spec, default_engine_name(path), None, path, "checkpoint")
        manifest = resolve_engine(path)
        return ModelArtifacts(spec, manifest.stem, manifest, checkpoint_beside(manifest), "engine")
    return ModelArtifacts(spec, spec, None, _random_checkpoint(spec, cache_dir, temporal=False), "random weights")


def backend_unavailable(backend: str) -> str | None:
    """Why `backend` cannot run on this machine, or None when it can."""
    find = importlib.util.find_spec
    if backend == "onnxruntime":
        return None if find("onnxruntime") else "onnxruntime is not installed (pip install streamavs)"
    if backend == "torch":
        return None if find("torch") else "PyTorch is not installed (pip install 'streamavs[train]')"
    if backend == "tensorrt":
        if not find("torch"):
            return "PyTorch is not installed (pip install 'streamavs[train]')"
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device (TensorRT runs on NVIDIA GPUs only)"
        if not find("torch_tensorrt"):
            return "torch-tensorrt is not installed (pip install 'streamavs[tensorrt]')"
        return None
    raise InputError(f"unknown backend {backend!r}; choose from {list(BACKENDS)}")


def _cached_export(checkpoint: Path, kind: str, cache_dir: Path) -> Path:
    """The manifest of `checkpoint` exported as `kind` ("onnx" | "tensorrt") in the cache folder."""
    from streamavs.engine.manifest import file_sha256, read_manifest

    sha = file_sha256(checkpoint)
    name = f"{checkpoint.stem}-{sha[:10]}"
    manifest = cache_dir / kind / f"{name}.json"
    if manifest.is_file() and read_manifest(manifest).export.get("checkpoint_sha256") == sha:
        return manifest
    from streamavs.training.export import export_engine

    return export_engine(checkpoint, kind, cache_dir / kind, name=name, n_check=EXPORT_CHECK_FRAMES).manifest_path


def _gpu_options(backend: str) -> dict[str, Any]:
    """Run on the GPU where one is usable: PyTorch on CUDA, ONNX Runtime with its CUDA provider."""
    if backend == "torch":
        import torch

        return {"device": "cuda"} if torch.cuda.is_available() else {}
    if backend == "onnxruntime":
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            return {"providers": ["cuda", "cpu"]}
    return {}


def open_engine(
    model: ModelArtifacts, backend: str, cache_dir: Path, threads: int | None = None
) -> tuple[Any | None, str]:
    """Load `model` for `backend`; returns (engine, how it was obtained) or (None, why it was skipped).

    Exports the checkpoint into `cache_dir` when no engine of the backend's kind exists.
    """
    from streamavs.audio import LogMelParams
    from streamavs.engine.base import load_engine
    from streamavs.engine.manifest import read_manifest

    reason = backend_unavailable(backend)
    if reason:
        return None, reason
    options: dict[str, Any] = {"audio_params": LogMelParams()}
    if threads is not None and backend in ("onnxruntime", "torch"):
        options["threads"] = threads
    device = _gpu_options(backend)
    options.update(device)
    fmt = read_manifest(model.manifest).backend if model.manifest else None
    try:
        if backend == "torch":
            if model.checkpoint is None:
                return None, (
                    f"no PyTorch checkpoint for engine {model.name!r}: put the .pt it was exported from beside "
                    "its manifest, or pass the checkpoint path in --models"
                )
            where = device.get("device", "cpu")
            return load_engine(model.checkpoint, backend="torch", **options), f"eager on {where} ({model.checkpoint.name})"
        kind = "onnx" if backend == "onnxruntime" else "tensorrt"
        if fmt == kind:
            return load_engine(model.manifest, backend=backend, **options), f"engine {model.manifest.name}"
        if model.checkpoint is None:
            return None, f"engine {model.name!r} is a {fmt} engine and no checkpoint is at hand to export a {kind} one"
        if not importlib.util.find_spec("torch"):
            return None, f"exporting to {kind} needs PyTorch (pip install 'streamavs[train]')"
        manifest = _cached_export(model.checkpoint, kind, cache_dir)
        return load_engine(manifest, backend=backend, **options), f"exported to the cache ({manifest.name})"
    except StreamAVSError as exc:
        if isinstance(exc, EngineError) and backend == "tensorrt":
            return None, f"TensorRT export/load failed: {exc}"
        raise
