"""ONNX Runtime backend: the default CPU engine; CUDA and TensorRT execution providers when present.

Session settings (:class:`SessionSettings`, why):
- intra-op threads default to ``max(1, cores - 1)``, leaving a core for the capture threads;
  inter-op threads 1 and sequential execution (the graph is one chain, batch 1).
- ``session.intra_op.allow_spinning = 0``: idle worker threads sleep instead of spinning, so the
  engine does not steal the CPU from capture, audio and publishing between frames.
- graph optimisation ORT_ENABLE_ALL (constant folding, fusions, layout transforms; for an INT8
  engine the QDQ fusions into QLinearConv and friends), memory arena and memory pattern on.
These are measured, not assumed (``python -m streamavs.bench.session_sweep``,
bench/results/session-sweep-2026-11-30.json, FP32 and INT8 real-object engines, 1 and 2 threads):
basic or extended optimisation is 1.2-4x slower (no NCHWc layout for the float convolutions),
parallel execution ~2x slower, arena and memory pattern off within +-4% (noise).
The model bytes are read once: hashed against the manifest, then handed to the session, so the
file that was checked is the file that runs. A file the session refuses is explained by what ONNX
Runtime reports (:func:`load_error`); a loaded one is checked against its manifest's tensors and
precision (:mod:`~streamavs.engine.model_io`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from streamavs.audio import LogMelParams
from streamavs.engine.base import Engine
from streamavs.engine.manifest import Manifest, check_model_file
from streamavs.engine.model_io import check_model_io, check_model_precision, onnx_dtype
from streamavs.engine.onnx_graph import read_onnx_summary
from streamavs.engine.thread_count import check_threads, default_threads
from streamavs.errors import EngineError, MissingDependency

__all__ = ["OnnxRuntimeEngine", "PROVIDER_ALIASES", "SessionSettings", "GRAPH_OPTIMIZATION", "default_threads",
           "load_error", "session_options"]

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}


# SessionSettings.graph_optimization -> onnxruntime.GraphOptimizationLevel member
GRAPH_OPTIMIZATION = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                      "all": "ORT_ENABLE_ALL"}


@dataclass(frozen=True)
class SessionSettings:
    """How an ONNX Runtime session runs an engine (the defaults are the backend's, see the module docstring).

    threads: intra-op threads, None -> :func:`default_threads`. inter_op_threads: threads running
    independent nodes at once (only with execution_mode "parallel"). graph_optimization: a key of
    GRAPH_OPTIMIZATION. memory_arena: the CPU allocator keeps freed blocks for reuse.
    memory_pattern: plan every intermediate buffer once from the first run. spinning: idle
    intra-op threads busy-wait for the next piece of work instead of sleeping.
    """

    threads: int | None = None
    inter_op_threads: int = 1
    execution_mode: str = "sequential"  # or "parallel"
    graph_optimization: str = "all"
    memory_arena: bool = True
    memory_pattern: bool = True
    spinning: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def session_options(settings: SessionSettings | None = None):
    """An ``onnxruntime.SessionOptions`` for `settings` (default: the backend's defaults)."""
    ort = _import_ort()
    s = settings or SessionSettings()
    if s.graph_optimization not in GRAPH_OPTIMIZATION:
        raise EngineError(f"graph_optimization must be one of {list(GRAPH_OPTIMIZATION)}, got {s.graph_optimization!r}")
    if s.execution_mode not in ("sequential", "parallel"):
        raise EngineError(f"execution_mode must be 'sequential' or 'parallel', got {s.execution_mode!r}")
    threads = check_threads(s.threads)
    inter_op_threads = check_threads(s.inter_op_threads, "inter_op_threads")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads if threads is not None else default_threads()
    so.inter_op_num_threads = inter_op_threads or 1  # None: one, as SessionSettings' default
    so.execution_mode = ort.ExecutionMode.ORT_PARALLEL if s.execution_mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION[s.graph_optimization])
    so.enable_cpu_mem_arena = bool(s.memory_arena)
    so.enable_mem_pattern = bool(s.memory_pattern)
    spin = "1" if s.spinning else "0"  # both pools: an inter-op pool spins by default
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    so.log_severity_level = 3  # errors only: provider fallbacks are reported by us
    return so


def _import_ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependency(
            f"the ONNX Runtime backend needs the Python package 'onnxruntime' ({exc}); it is a core dependency "
            "of streamavs: pip install onnxruntime (or onnxruntime-gpu for the CUDA/TensorRT providers)"
        ) from exc
    return onnxruntime


class OnnxRuntimeEngine(Engine):
    """An ``.onnx`` engine run by ONNX Runtime.

    providers: execution providers in priority order, by ONNX Runtime name or alias ("cpu",
        "cuda", "tensorrt"); default CPU only. A provider that this onnxruntime build lacks raises
        EngineError naming the ones it has.
    threads: intra-op threads (default :func:`default_threads`); inter_op_threads: default 1.
    settings: every session setting at once (:class:`SessionSettings`); `threads` and
        `inter_op_threads`, when given, override its fields.
    audio_params, frame_size: the runtime's front end, checked against the manifest.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        manifest: Manifest,
        model_path: Path,
        *,
        providers: Sequence[str | tuple[str, dict[str, Any]]] | None = None,
        threads: int | None = None,
        inter_op_threads: int | None = None,
        settings: SessionSettings | None = None,
        audio_params: LogMelParams | None = None,
        frame_size: tuple[int, int] | None = None,
    ) -> None:
        ort = _import_ort()
        super().__init__(manifest, Path(model_path), audio_params=audio_params, frame_size=frame_size)
        data = check_model_file(manifest, self.model_path)  # the bytes checked are the bytes that run

        settings = settings or SessionSettings()
        if threads is not None:  # checked here, never truncated by int(): 2.5 is refused, not run as 2
            settings = dataclasses.replace(settings, threads=check_threads(threads))
        if inter_op_threads is not None:
            inter_op_threads = check_threads(inter_op_threads, "inter_op_threads")
            settings = dataclasses.replace(settings, inter_op_threads=inter_op_threads)
        self.settings = settings
        so = session_options(settings)
        self.providers = self._resolve_providers(ort, providers)
        try:
            self._session = ort.InferenceSession(data, sess_options=so, providers=self.providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise load_error(manifest, self.model_path.name, data, exc, ort.__version__, self.providers) from exc
        check_model_io(manifest, {i.name: (i.shape, onnx_dtype(i.type)) for i in self._session.get_inputs()},
                       {o.name: (o.shape, onnx_dtype(o.type)) for o in self._session.get_outputs()}, self.model_path.name)
        try:
            quantization_ops = read_onnx_summary(data).quantization_ops
        except ValueError as exc:  # ONNX Runtime parsed it; this reader did not: say so rather than guess
            raise EngineError(f"engine {manifest.name!r}: model file {self.model_path.name} loaded, but its graph could "
                              f"not be read to check its precision ({exc}); re-export the engine") from exc
        check_model_precision(manifest, quantization_ops, self.model_path.name)
        self._input_names = [t.name for t in manifest.inputs]
        self._output_names = [t.name for t in manifest.outputs]

    @staticmethod
    def _resolve_providers(ort, providers) -> list:
        if providers is None:
            return ["CPUExecutionProvider"]
        available = ort.get_available_providers()
        out = []
        for p in providers:
            name, opts = (p if isinstance(p, tuple) else (p, None))
            name = PROVIDER_ALIASES.get(str(name).lower(), name)
            if name not in available:
                raise EngineError(
                    f"ONNX Runtime execution provider {name!r} is not available in this onnxruntime build "
                    f"(available: {available}); install onnxruntime-gpu for CUDA/TensorRT, or use providers=['cpu']"
                )
            out.append((name, opts) if opts else name)
        if not out:
            raise EngineError("providers is empty; pass at least one, e.g. providers=['cpu']")
        return out

    @property
    def active_providers(self) -> list[str]:
        """The providers the session actually uses, in priority order."""
        return list(self._session.get_providers())

    def _run(self, frame: np.ndarray, log_mel: np.ndarray, cache: np.ndarray) -> tuple[np.ndarray, ...]:
        feeds = dict(zip(self._input_names, (frame, log_mel, cache)))
        try:
            return tuple(self._session.run(self._output_names, feeds))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise EngineError(f"ONNX Runtime failed to run engine {self.manifest.name!r} on a frame: {exc}; the "
                              "model file does not take what its manifest describes: re-export the engine") from exc

    def _release(self) -> None:
        self._session = None


def load_error(manifest: Manifest, model_file: str, data: bytes, exc: Exception, version: str,
               providers: Sequence[Any] = ()) -> EngineError:
    """Why ONNX Runtime `version` refused `data`, the bytes of `model_file` that matched the manifest's sha256.

    ONNX Runtime reports a file it cannot parse as INVALID_PROTOBUF, and an empty one as "No graph
    was found in the protobuf": the file is damaged, and no onnxruntime version runs it. A model it
    parses but refuses (an IR version or opset newer than it knows, an operator it lacks: what
    :data:`_MODEL_FAULT` matches) is a model for another onnxruntime version, or a bad export; any
    other failure (a provider that did not start, its options, memory) is reported with the
    `providers` asked for.
    """
    name, reported = manifest.name, _ort_message(exc)
    if type(exc).__name__ == "InvalidProtobuf" or "No graph was found" in reported:
        return EngineError(
            f"engine {name!r}: model file {model_file} is not a readable ONNX model (ONNX Runtime: {reported}); "
            "its sha256 matches its manifest, so the file was damaged before the manifest was written, or both "
            "were replaced: re-export the engine from its checkpoint, or restore both files from where the engine "
            "came from"
        )
    if not _MODEL_FAULT.search(reported):  # a provider that did not start, options, memory: not the file
        return EngineError(f"engine {name!r}: ONNX Runtime {version} could not create a session for model file "
                           f"{model_file} with providers {providers}: {reported}; check the providers and their "
                           "options, or run on the CPU (providers=['cpu'])")
    try:
        holds = read_onnx_summary(data).describe()
    except ValueError:  # ONNX Runtime read more of it than this reader does: say what it said
        holds = "an ONNX model"
    exported = manifest.versions.get("onnxruntime")
    if exported == version:  # another onnxruntime is no fix: the export is
        fix = (f"the engine records this onnxruntime version ({version}), so the export wrote a model it cannot run: "
               "re-export the engine")
    elif exported:
        fix = (f"the engine was exported with onnxruntime {exported}: run it with that version (pip install "
               f"onnxruntime=={exported}) or re-export the engine with this one ({version})")
    else:
        fix = f"its manifest records no onnxruntime version: re-export the engine with this one ({version})"
    return EngineError(f"engine {name!r}: ONNX Runtime {version} parses model file {model_file} ({holds}) but "
                       f"cannot load it: {reported}; {fix}")


# ONNX Runtime's words for a model it parsed but cannot run: its IR version, an opset, an operator or kernel
# it lacks, a graph it finds invalid.
_MODEL_FAULT = re.compile(r"IR version|opset|Could not find an implementation|NOT_IMPLEMENTED|INVALID_GRAPH|"
                          r"No Op registered|not a registered function", re.IGNORECASE)
# "[ONNXRuntimeError] : 1 : FAIL : /onnxruntime_src/.../model.cc:256 onnxruntime::Model::Model(...) Unsupported ..."
_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : ")
_ORT_SOURCE = re.compile(r"(?<=: )/\S+:\d+ [^()]*\(.*?\) ")  # the C++ source location and function signature


def _ort_message(exc: Exception) -> str:
    """ONNX Runtime's error on one line without its C++ source location, e.g. "FAIL : Unsupported model IR
    version: 99, max supported IR version: 10"."""
    text = " ".join(str(exc).split())
    return _ORT_SOURCE.sub("", _ORT_PREFIX.sub("", text), count=1)
