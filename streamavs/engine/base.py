"""The Engine interface, engine discovery and :func:`load_engine`.

Every backend (ONNX Runtime, torch-tensorrt, PyTorch eager) runs the same streaming step,
numpy in and numpy out, one frame per call:

    engine.run(frame (H, W, 3) uint8 RGB, log_mel (96, 64) float32, cache) -> EngineOutput

The pipeline owns the state: it starts from ``engine.initial_cache()`` and feeds each
``EngineOutput.cache`` back on the next call. Backend modules are imported only when an
engine of their kind is loaded, so a missing backend costs nothing until it is asked for.

Where engines are found (:func:`engine_dirs`): the shipped ``streamavs.engines`` package folder,
then ``./engines`` in the current directory; any path can also be given directly.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable

import numpy as np

from streamavs.audio import LogMelParams
from streamavs.engine.manifest import MODEL_SUFFIXES, Manifest, check_runtime, read_manifest
from streamavs.errors import EngineError, InputError

__all__ = ["EngineOutput", "Engine", "BACKENDS", "BACKEND_CHOICES", "engine_dirs", "find_engines", "resolve_engine", "load_engine"]

# load_engine(backend=...) -> (module, class) and the manifest backends (file formats) it can run.
BACKENDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "onnxruntime": ("streamavs.engine.onnxruntime", "OnnxRuntimeEngine", ("onnx",)),
    "tensorrt": ("streamavs.engine.tensorrt", "TensorRTEngine", ("tensorrt",)),
    "torch": ("streamavs.engine.torch", "TorchEngine", ("torch",)),
}
BACKEND_CHOICES = ("auto", *BACKENDS)  # what load_engine(backend=...) and `streamavs run --backend` take
_ALIASES = {"onnx": "onnxruntime", "ort": "onnxruntime", "trt": "tensorrt", "pytorch": "torch", "eager": "torch"}
_DEFAULT_FOR_FORMAT = {"onnx": "onnxruntime", "tensorrt": "tensorrt", "torch": "torch"}


@dataclass(frozen=True)
class EngineOutput:
    """One streaming step's result.

    mask_prob: (H, W) float32 in [0, 1], the probability that a pixel belongs to a sounding object.
    uncertainty: (H, W) float32 in [0, 1], normalised Dirichlet uncertainty (zeros without a temporal stage).
    sounding: similarity-head probability in [0, 1] that the audio comes from something visible.
    cache: the feature cache to pass to the next call (shape ``engine.manifest.cache_shape``, float32).
    """

    mask_prob: np.ndarray
    uncertainty: np.ndarray
    sounding: float
    cache: np.ndarray


class Engine(abc.ABC):
    """A loaded engine: validated inputs in, :class:`EngineOutput` out. A context manager.

    audio_params, frame_size: the runtime's front end (log-mel parameters, the (height, width)
    it will feed when fixed), checked against the manifest (:func:`check_runtime`) before a
    backend loads anything; None means the defaults / frames resized to the manifest's size.
    """

    backend: ClassVar[str] = ""

    def __init__(
        self,
        manifest: Manifest,
        model_path: Path | None,
        *,
        audio_params: LogMelParams | None = None,
        frame_size: tuple[int, int] | None = None,
    ) -> None:
        check_runtime(manifest, audio_params=audio_params, frame_size=frame_size)
        self.manifest = manifest
        self.model_path = model_path
        self._closed = False

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def frame_size(self) -> tuple[int, int]:
        """(height, width) in pixels that :meth:`run` expects."""
        return self.manifest.frame.size

    def initial_cache(self) -> np.ndarray:
        """The stream-start cache: zeros (every slot invalid), float32, shape manifest.cache_shape."""
        return np.zeros(self.manifest.cache_shape, dtype=np.float32)

    def run(self, frame: np.ndarray, log_mel: np.ndarray, cache: np.ndarray) -> EngineOutput:
        """One streaming step on one frame and the log-mel example of the audio ending at it."""
        if self._closed:
            raise EngineError(f"engine {self.name!r} is closed; load it again to keep running")
        self._check(frame, log_mel, cache)
        prob, unc, sounding, new_cache = self._run(
            np.ascontiguousarray(frame)[None],  # (1, H, W, 3)
            np.ascontiguousarray(log_mel)[None, None],  # (1, 1, 96, 64)
            np.ascontiguousarray(cache),
        )
        return EngineOutput(
            mask_prob=prob.reshape(self.frame_size),  # (1, 1, H, W) -> (H, W)
            uncertainty=unc.reshape(self.frame_size),
            sounding=float(np.asarray(sounding).reshape(-1)[0]),
            cache=new_cache,
        )

    @abc.abstractmethod
    def _run(self, frame: np.ndarray, log_mel: np.ndarray, cache: np.ndarray) -> tuple[np.ndarray, ...]:
        """Batched step: (1, H, W, 3) uint8, (1, 1, 96, 64) float32, cache -> the four outputs as numpy."""

    def _release(self) -> None:
        """Free backend resources (sessions, GPU memory); called once by :meth:`close`."""

    def close(self) -> None:
        """Release the backend; calling it again does nothing."""
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, frame={self.frame_size}, precision={self.manifest.precision!r})"

    def _check(self, frame: np.ndarray, log_mel: np.ndarray, cache: np.ndarray) -> None:
        h, w = self.frame_size
        if not isinstance(frame, np.ndarray) or frame.shape != (h, w, 3) or frame.dtype != np.uint8:
            raise InputError(
                f"engine {self.name!r} expects a frame of shape ({h}, {w}, 3) uint8 RGB, got {_describe(frame)}; "
                f"resize the frame to {h}x{w} and convert it to uint8 RGB"
            )
        mel = self.manifest.inputs[1].shape[2:]
        if not isinstance(log_mel, np.ndarray) or log_mel.shape != mel or log_mel.dtype != np.float32:
            raise InputError(
                f"engine {self.name!r} expects a log_mel example of shape {mel} float32, got {_describe(log_mel)}; "
                "compute it with streamavs.audio.LogMel.example_ending_at"
            )
        shape = self.manifest.cache_shape
        if not isinstance(cache, np.ndarray) or cache.shape != shape or cache.dtype != np.float32:
            raise InputError(
                f"engine {self.name!r} expects a cache of shape {shape} float32, got {_describe(cache)}; "
                "start from engine.initial_cache() and pass back EngineOutput.cache"
            )


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"shape {x.shape} {x.dtype}"
    return f"a {type(x).__name__}"


# -- discovery ------------------------------------------------------------------------------
def engine_dirs() -> list[Path]:
    """Folders searched for engines by name: the shipped package folder, then ./engines."""
    import streamavs.engines  # the shipped engines (a package of data files, cheap to import)

    dirs = [Path(streamavs.engines.__file__).resolve().parent, Path.cwd() / "engines"]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def find_engines(paths: Iterable[str | Path] = ()) -> list[Path]:
    """Manifest files of the engines in `paths` (folders or manifests) and in :func:`engine_dirs`.

    A JSON file counts when it holds an object with ``format_version`` and ``model_file``.
    """
    found: list[Path] = []
    for d in [*map(Path, paths), *engine_dirs()]:
        candidates = [d] if d.is_file() else sorted(d.glob("*.json")) if d.is_dir() else []
        for p in candidates:
            data = _json_object(p)
            if data is not None and "format_version" in data and "model_file" in data:
                if p.resolve() not in [f.resolve() for f in found]:
                    found.append(p)
    return found


# Shipped in streamavs/engines/ (engines/README.md): the real-object engine (trained on the real-media
# benchmark) and the procedural benchmark's engine; `streamavs run` uses DEFAULT_ENGINE.
REAL_ENGINE = "streamavs-real-lite"
REAL_INT8_ENGINE = f"{REAL_ENGINE}-int8"  # the same engine quantized (streamavs export --int8)
SYNTHETIC_ENGINE = "streamavs-synthetic-lite"
# The real-object engine (real-media test split G-mIoU 64.3 vs 0.8 for the synthetic one), in INT8:
# 1.64x faster model-only with one thread (1.33x with two) at -0.5 points of positive mIoU
# (bench/README.md, "INT8 engine"): the fastest engine that keeps the accuracy.
DEFAULT_ENGINE = REAL_INT8_ENGINE


def default_engine() -> Path:
    """The manifest `streamavs run` uses when no --engine is given: the shipped default engine,
    else the first engine found."""
    from streamavs.errors import EngineError

    found = find_engines()
    for manifest in found:
        if manifest.stem == DEFAULT_ENGINE:
            return manifest
    if not found:
        raise EngineError(
            "no engine given and none found in "
            f"{[str(d) for d in engine_dirs()] or 'the shipped engines folder or ./engines'}; pass --engine PATH "
            "(a .json manifest, .onnx, .ep or .pt checkpoint), or build one with: streamavs export CHECKPOINT"
        )
    return found[0]


def resolve_engine(name_or_path: str | Path) -> Path:
    """The manifest (or .pt checkpoint) meant by a name or path.

    Accepts a manifest ``x.json``, a model file whose manifest lies beside it (``x.onnx``,
    ``x.ep``), a PyTorch checkpoint ``x.pt`` (run by the torch backend, no manifest needed), a path
    without its ``.json``, or an engine name (``NAME`` or ``NAME.json``) found in :func:`engine_dirs`.
    A path with a folder part names a file and is never looked up by name: a missing one is an
    error, not the shipped engine of the same name. A name found in two folders with different
    manifests is an error that lists both.

    An engine's name is its manifest's file name (stem), the first column of `streamavs engines`,
    not the manifest's ``name`` field: a folder cannot hold two files of one name, while any number
    of manifests may carry one ``name`` (a copy, a renamed export), so only the file name picks one
    engine without a second lookup rule. A manifest ``name`` given instead is refused with the file
    name to pass.
    """
    path = Path(name_or_path)
    if path.is_file():
        if path.suffix in (".json", ".pt"):
            return path
        manifest = path.with_suffix(".json")
        if manifest.is_file():
            return manifest
        raise EngineError(f"{path} has no manifest {manifest.name} beside it; export engines with `streamavs export`")
    if path.is_dir():
        inside = [p.stem for p in find_engines([path]) if p.parent.resolve() == path.resolve()]
        raise EngineError(f"{path} is a folder; name an engine in it: {inside}" if inside else
                          f"{path} is a folder with no engine manifests in it; pass an engine's .json")
    if len(path.parts) > 1 or "/" in str(name_or_path):  # a path: never a lookup by name
        if not path.suffix and path.with_suffix(".json").is_file():
            return path.with_suffix(".json")
        raise EngineError(f"no engine file {str(name_or_path)!r} (nor {path.with_suffix('.json').name} beside it); "
                          "check the path, or give a shipped engine by its bare name (streamavs engines lists them)")
    name = path.stem if path.suffix in (".json", *MODEL_SUFFIXES.values()) else path.name
    found: dict[Path, Path] = {}
    for d in engine_dirs():
        if (d / f"{name}.json").is_file():
            found.setdefault((d / f"{name}.json").resolve(), d / f"{name}.json")
    if len({p.read_bytes() for p in found.values()}) > 1:  # copies of one manifest are the same engine
        raise EngineError(f"engine name {name!r} names different engines in {[str(p) for p in found.values()]}; "
                          "pass the path of the one to run")
    if found:
        return next(iter(found.values()))
    named = [p for p in find_engines() if p.stem != name and _manifest_name(p) == name]
    if named:
        raise EngineError(
            f"no engine file named {name!r}: it is the manifest name of {', '.join(str(p) for p in named)}; --engine "
            f"takes an engine's file name (the first column of `streamavs engines`): pass "
            f"{' or '.join(repr(p.stem) for p in named)}"
        )
    known = [p.stem for p in find_engines()]
    raise EngineError(
        f"no engine {str(name_or_path)!r}: not a file, and not among the engines found ({known or 'none'}) in "
        f"{[str(d) for d in engine_dirs()] or 'the shipped folder or ./engines'}; pass a path to a .json/.onnx/.ep/.pt file"
    )


def _manifest_name(path: Path) -> str | None:
    """The ``name`` field of the manifest at `path` (None when it cannot be read)."""
    data = _json_object(path)
    return data.get("name") if data is not None else None


def _json_object(path: Path) -> dict | None:
    """The JSON object in the file at `path`, or None when it is unreadable, not JSON or not an object."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _backend_class(backend: str, fmt: str) -> type[Engine]:
    import importlib

    key = _ALIASES.get(backend, backend)
    if key == "auto":
        key = _DEFAULT_FOR_FORMAT.get(fmt, "")
    if key not in BACKENDS:
        raise EngineError(f"unknown backend {backend!r}; choose one of {list(BACKEND_CHOICES)}")
    module, cls, formats = BACKENDS[key]
    if fmt not in formats:
        how = {"torch": "give it a checkpoint instead (--engine runs/NAME/temporal.pt)",
               "tensorrt": "export one first: streamavs export CHECKPOINT --backend tensorrt"}.get(
                   key, "export one first: streamavs export CHECKPOINT --backend onnx")
        raise EngineError(
            f"backend {key!r} cannot run a {fmt!r} engine (it runs {list(formats)}): drop --backend (auto picks "
            f"the backend of the engine given), or, to run {key!r}, {how}"
        )
    return getattr(importlib.import_module(module), cls)


def load_engine(path: str | Path, backend: str = "auto", **options: Any) -> Engine:
    """Load the engine named by `path` (see :func:`resolve_engine`) with its manifest checked.

    backend: "auto" (the one that matches the model file), "onnxruntime", "tensorrt" or "torch".
    options go to the backend, e.g. ONNX Runtime ``providers=["cuda", "cpu"]``, ``threads=2``;
    every backend takes ``audio_params=`` and ``frame_size=`` to check against the runtime.
    """
    resolved = resolve_engine(path)
    if resolved.suffix == ".pt":
        return _backend_class(backend, "torch").from_checkpoint(resolved, **options)  # type: ignore[attr-defined]
    manifest = read_manifest(resolved)
    if manifest.backend not in MODEL_SUFFIXES:
        raise EngineError(
            f"engine {manifest.name!r} has backend {manifest.backend!r}; this streamavs runs {list(MODEL_SUFFIXES)}"
        )
    cls = _backend_class(backend, manifest.backend)
    return cls(manifest, resolved.parent / manifest.model_file, **options)
