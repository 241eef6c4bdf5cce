"""The engine manifest: the JSON contract written beside every compiled model file.

An engine is ``<name>.<ext>`` (``.onnx`` for ONNX Runtime, ``.ep`` for a torch-tensorrt
ExportedProgram) plus ``<name>.json``, the manifest. The manifest states everything the runtime
must agree with before it feeds the model a single frame: tensor names/shapes/dtypes, the frame
size and where normalisation happens, every audio front-end parameter, the temporal cache
shape, thresholds, how the engine was trained and exported, library versions, and the sha256
of the model file.

Loading an engine checks the manifest against the runtime (:func:`check_runtime`) and against
its own model file (:func:`check_model_file`); each disagreement raises ManifestMismatch with a
one-line message naming the difference and the fix.

Pure numpy/json: no torch, no onnxruntime.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamavs.audio import LogMelParams
from streamavs.engine.thresholds import Thresholds
from streamavs.errors import EngineError, InputError, ManifestMismatch
from streamavs.files import atomic_write, file_sha256

__all__ = [
    "FORMAT_VERSION", "FRAME_LAYOUT", "FRAME_NORMALISATION", "AUDIO_EXAMPLE", "MODEL_SUFFIXES", "PRECISIONS",
    "TensorSpec", "FrameSpec", "AudioSpec", "TemporalSpec", "Thresholds", "Manifest",
    "read_manifest", "write_manifest", "check_model_file", "check_model_bytes", "check_model_inputs", "check_runtime",
    "file_sha256", "default_engine_name", "today",
]

FORMAT_VERSION = 1  # the newest manifest format this streamavs reads and writes
FRAME_LAYOUT = "NHWC uint8 RGB"
FRAME_NORMALISATION = "inside the engine: /255 then ImageNet mean/std"
AUDIO_EXAMPLE = "example = last 15600 samples of the window"
MODEL_SUFFIXES = {"onnx": ".onnx", "tensorrt": ".ep", "torch": ".pt"}  # manifest backend -> model file suffix
# Numeric precision of an engine's weights and arithmetic; int8: ONNX static quantization (QDQ), ONNX Runtime only.
PRECISIONS = {"fp32": ("onnx", "tensorrt", "torch"), "fp16": ("tensorrt",), "int8": ("onnx",)}


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: name, shape (batch included) and numpy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TensorSpec":
        return cls(str(data["name"]), tuple(int(s) for s in data["shape"]), str(data["dtype"]))


@dataclass(frozen=True)
class FrameSpec:
    """The frame the engine takes: (height, width) in pixels, layout, and where normalisation happens.

    mean, std: the per-channel RGB normalisation the engine applies after /255, copied at export
    from the model's config; a manifest must state them (the runtime keeps no default of its own).
    """

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layout: str = FRAME_LAYOUT
    normalisation: str = FRAME_NORMALISATION

    def to_dict(self) -> dict[str, Any]:
        return {"size": list(self.size), "layout": self.layout, "normalisation": self.normalisation,
                "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "manifest") -> "FrameSpec":
        missing = [key for key in ("mean", "std") if key not in data]
        if missing:
            raise EngineError(
                f"{source}: frame states no {' and '.join(missing)} (the normalisation the engine was trained "
                "with); re-export the engine"
            )
        return cls(
            size=(int(data["size"][0]), int(data["size"][1])),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            layout=str(data.get("layout", FRAME_LAYOUT)),
            normalisation=str(data.get("normalisation", FRAME_NORMALISATION)),
        )


@dataclass(frozen=True)
class AudioSpec:
    """The audio front end the engine was trained with; window_s is the audio per frame in seconds."""

    params: LogMelParams = field(default_factory=LogMelParams)
    window_s: float = 1.0
    example: str = AUDIO_EXAMPLE

    def to_dict(self) -> dict[str, Any]:
        return {**self.params.to_dict(), "window_s": self.window_s, "example": self.example}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AudioSpec":
        rest = {k: v for k, v in data.items() if k not in ("window_s", "example")}
        return cls(LogMelParams.from_dict(rest), float(data.get("window_s", cls.window_s)), str(data.get("example", cls.example)))


@dataclass(frozen=True)
class TemporalSpec:
    """The causal temporal stage: window T (frames) and the feature-cache shape, batch included."""

    window: int
    cache_shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"window": self.window, "cache_shape": list(self.cache_shape)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TemporalSpec":
        return cls(int(data["window"]), tuple(int(s) for s in data["cache_shape"]))


@dataclass(frozen=True)
class Manifest:
    """Everything the runtime needs to know about one engine (see the module docstring).

    inputs are (frame, log_mel, feature_cache) and outputs (mask_prob, uncertainty, sounding,
    new_feature_cache), in that order. `model`, `training`, `versions` and `export` are
    informational records (model name + ModelConfig dict; training data + metrics table;
    library versions; exporter, opset and the parity diffs measured at export).
    """

    name: str
    backend: str  # model file format: "onnx", "tensorrt" or "torch"
    precision: str  # "fp32", "fp16" (tensorrt) or "int8" (onnx); see PRECISIONS
    model_file: str  # file name, relative to the manifest's folder
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    frame: FrameSpec
    audio: AudioSpec = field(default_factory=AudioSpec)
    temporal: TemporalSpec | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    audio_hop: bool = False  # True only for split engines that may refresh the audio embedding less often
    model: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def cache_shape(self) -> tuple[int, ...]:
        """Shape of the feature_cache input, batch included (the placeholder when there is no temporal stage)."""
        return self.inputs[2].shape

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "name": self.name,
            "backend": self.backend,
            "precision": self.precision,
            "model_file": self.model_file,
            "sha256": self.sha256,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "frame": self.frame.to_dict(),
            "audio": self.audio.to_dict(),
            "temporal": None if self.temporal is None else self.temporal.to_dict(),
            "thresholds": self.thresholds.to_dict(),
            "audio_hop": self.audio_hop,
            "model": self.model,
            "training": self.training,
            "versions": self.versions,
            "export": self.export,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "manifest") -> "Manifest":
        """Parse a manifest dict; checks format_version first so a newer format says to upgrade."""
        if not isinstance(data, dict):
            raise EngineError(f"{source} must hold a JSON object, got {type(data).__name__}; re-export the engine")
        _check_format_version(data, source)
        try:
            manifest = cls(
                name=str(data["name"]),
                backend=str(data["backend"]),
                precision=str(data.get("precision", "fp32")),
                model_file=str(data["model_file"]),
                sha256=str(data["sha256"]),
                inputs=tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
                outputs=tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
                frame=FrameSpec.from_dict(data["frame"], source),
                audio=AudioSpec.from_dict(data["audio"]),
                temporal=None if data.get("temporal") is None else TemporalSpec.from_dict(data["temporal"]),
                thresholds=Thresholds.from_dict(data.get("thresholds") or {}),
                audio_hop=bool(data.get("audio_hop", False)),
                model=dict(data.get("model") or {}),
                training=dict(data.get("training") or {}),
                versions=dict(data.get("versions") or {}),
                export=dict(data.get("export") or {}),
                created=str(data.get("created", "")),
                format_version=int(data["format_version"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            if isinstance(exc, InputError):  # LogMelParams.from_dict: already says what differs
                raise ManifestMismatch(f"{source}: {exc}") from exc
            raise EngineError(
                f"{source} is not a valid engine manifest ({type(exc).__name__}: {exc}); re-export the engine"
            ) from exc
        if Path(manifest.model_file).name != manifest.model_file or manifest.model_file in ("", ".", ".."):
            raise EngineError(f"{source}: model_file {manifest.model_file!r} must be a file name in the manifest's own "
                              "folder (an engine is its manifest and model file side by side); move the file there")
        backends = PRECISIONS.get(manifest.precision)
        if backends is None:
            raise ManifestMismatch(
                f"engine {manifest.name!r} ({source}) has precision {manifest.precision!r}; this streamavs runs "
                f"{' | '.join(PRECISIONS)}: re-export the engine or upgrade streamavs"
            )
        if manifest.backend in MODEL_SUFFIXES and manifest.backend not in backends:
            raise ManifestMismatch(
                f"engine {manifest.name!r} ({source}) says precision {manifest.precision} for backend {manifest.backend}, "
                f"which only {' / '.join(backends)} engines have; re-export the engine"
            )
        if len(manifest.inputs) != 3 or len(manifest.outputs) != 4:
            raise EngineError(
                f"{source} lists {len(manifest.inputs)} inputs and {len(manifest.outputs)} outputs; expected 3 "
                "(frame, log_mel, feature_cache) and 4 (mask_prob, uncertainty, sounding, new_feature_cache)"
            )
        return manifest


def _check_format_version(data: dict[str, Any], source: str) -> None:
    version = data.get("format_version")
    name = data.get("name", "?")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ManifestMismatch(
            f"engine {name!r} ({source}) has format_version {version!r}; expected an integer 1..{FORMAT_VERSION}: re-export the engine"
        )
    if version > FORMAT_VERSION:
        from streamavs import __version__

        raise ManifestMismatch(
            f"engine {name!r} uses manifest format_version {version} but this streamavs ({__version__}) reads "
            f"format_version <= {FORMAT_VERSION}; upgrade streamavs (pip install -U streamavs) to load it"
        )


_RUN_FILE_STEMS = ("best", "last", "temporal")  # what `streamavs train` names every run's checkpoints


def default_engine_name(checkpoint: str | Path) -> str:
    """The name of an engine (or benchmark row) made from `checkpoint`: its file stem, or its run
    folder's name for the file names every run shares (runs/real_temporal_full/temporal.pt ->
    real_temporal_full), so two runs exported into one folder do not replace each other's engine."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.name if checkpoint.stem in _RUN_FILE_STEMS and checkpoint.parent.name else checkpoint.stem


def today() -> str:
    """Creation stamp for manifests: UTC date and time, ISO 8601."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def read_manifest(path: str | Path) -> Manifest:
    """Read and parse `<name>.json`. A missing or unreadable file raises EngineError."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise EngineError(f"engine manifest {path} does not exist; export the engine or pass the right path") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineError(f"engine manifest {path} cannot be read as JSON ({exc}); re-export the engine") from exc
    return Manifest.from_dict(data, source=str(path.name))


def write_manifest(manifest: Manifest, path: str | Path) -> Path:
    """Write the manifest as indented JSON, atomically (:func:`streamavs.files.atomic_write`)."""
    text = json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n"
    return atomic_write(path, text.encode("utf-8"))


def check_model_file(manifest: Manifest, model_path: str | Path) -> bytes:
    """The model file exists and its sha256 is the manifest's (else it was corrupted or modified).

    Returns the bytes read, so a backend that loads from memory runs exactly the bytes checked.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise EngineError(
            f"engine {manifest.name!r}: model file {model_path} named by its manifest does not exist; "
            "keep the model file beside its manifest or re-export the engine"
        )
    data = model_path.read_bytes()
    check_model_bytes(manifest, data, model_path.name)
    return data


def check_model_bytes(manifest: Manifest, data: bytes, model_file: str) -> None:
    """The sha256 of `data`, the bytes of `model_file` already read, is the manifest's."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != manifest.sha256:
        raise ManifestMismatch(
            f"engine {manifest.name!r}: model file {model_file} has sha256 {actual[:16]}... but its manifest "
            f"says {manifest.sha256[:16]}...; the file is corrupted or was modified: restore it or re-export the engine"
        )


def check_runtime(
    manifest: Manifest,
    *,
    audio_params: LogMelParams | None = None,
    window_s: float = 1.0,
    frame_size: tuple[int, int] | None = None,
) -> None:
    """The runtime's front end agrees with the manifest.

    audio_params: the runtime's log-mel parameters (default: LogMelParams()); every field must match.
    window_s: the audio window the runtime pairs with each frame, in seconds.
    frame_size: (height, width) the runtime will feed, when it is fixed (e.g. by a --size option);
        None means the runtime resizes frames to the manifest's size.
    """
    name = manifest.name
    runtime = (audio_params or LogMelParams()).to_dict()
    engine = manifest.audio.params.to_dict()
    for key, want in engine.items():
        if runtime[key] != want:
            raise ManifestMismatch(
                f"engine {name!r} expects audio {key} {want} but this runtime's front end uses {runtime[key]}; "
                "use the engine's audio parameters or re-export the engine with this front end"
            )
    if abs(manifest.audio.window_s - window_s) > 1e-9:
        raise ManifestMismatch(
            f"engine {name!r} expects an audio window of {manifest.audio.window_s} s but this runtime pairs "
            f"{window_s} s with each frame; use the engine's window"
        )
    if frame_size is not None and tuple(frame_size) != manifest.frame.size:
        raise ManifestMismatch(
            f"engine {name!r} expects frame size {_hw(manifest.frame.size)} but this runtime feeds "
            f"{_hw(frame_size)}; resize frames to {_hw(manifest.frame.size)} or use an engine exported at {_hw(frame_size)}"
        )


def check_model_inputs(manifest: Manifest, actual: dict[str, tuple[int, ...]], model_file: str) -> None:
    """The model file's own input shapes (read from the loaded model) agree with the manifest."""
    name = manifest.name
    frame_spec, _, cache_spec = manifest.inputs
    got_frame = actual.get(frame_spec.name)
    if got_frame is not None and tuple(got_frame) != frame_spec.shape:
        raise ManifestMismatch(
            f"engine {name!r}: manifest says frame input {list(frame_spec.shape)} (frame size "
            f"{_hw(manifest.frame.size)}) but model file {model_file} takes {list(got_frame)}; re-export the engine"
        )
    if tuple(frame_spec.shape[1:3]) != manifest.frame.size:
        raise ManifestMismatch(
            f"engine {name!r}: manifest frame size {_hw(manifest.frame.size)} disagrees with its frame input "
            f"{list(frame_spec.shape)}; re-export the engine"
        )
    got_cache = actual.get(cache_spec.name)
    if got_cache is not None and tuple(got_cache) != cache_spec.shape:
        raise ManifestMismatch(
            f"engine {name!r}: manifest says cache shape {list(cache_spec.shape)} but model file {model_file} "
            f"takes {cache_spec.name} {list(got_cache)}; re-export the engine"
        )
    if manifest.temporal is not None and manifest.temporal.cache_shape != cache_spec.shape:
        raise ManifestMismatch(
            f"engine {name!r}: manifest temporal cache_shape {list(manifest.temporal.cache_shape)} disagrees with "
            f"its {cache_spec.name} input {list(cache_spec.shape)}; re-export the engine"
        )


def _hw(size) -> str:
    return f"{size[0]}x{size[1]}"
