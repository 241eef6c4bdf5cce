"""torch-tensorrt backend: the streaming module compiled with the dynamo IR, saved as an ExportedProgram.

Build (export side, :func:`compile_tensorrt` + :func:`save_tensorrt`)::

    trt_gm = torch_tensorrt.compile(module, ir="dynamo", arg_inputs=[...], use_explicit_typing=True)
    torch_tensorrt.save(trt_gm, "x.ep", output_format="exported_program", arg_inputs=[...])

Run (:class:`TensorRTEngine`): ``import torch_tensorrt`` (registers the TensorRT engine op) then
``torch.export.load("x.ep").module()`` on a CUDA device. Needs torch-tensorrt >= 2.5 (the
``arg_inputs`` keyword) and an NVIDIA GPU; a missing package raises MissingDependency naming the
``tensorrt`` extra.

FP16: the module's weights are cast to half and the network computes in half ("explicit
typing", the form TensorRT 10+/11 prefer over the deprecated enabled_precisions flag on an FP32
graph); the engine's inputs and outputs keep their FP32/uint8 dtypes, so the Engine contract and
the manifest tensors do not change with precision.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from streamavs.audio import LogMelParams
from streamavs.engine.base import Engine
from streamavs.engine.manifest import Manifest, check_model_file, check_model_inputs
from streamavs.engine.thread_count import check_threads
from streamavs.errors import EngineError, require

__all__ = ["TensorRTEngine", "CastingStreaming", "compile_tensorrt", "save_tensorrt"]


def _require_trt(purpose: str):
    torch = require("torch", "train", purpose)
    trt = require("torch_tensorrt", "tensorrt", purpose)
    if not torch.cuda.is_available():
        raise EngineError(
            f"{purpose} needs an NVIDIA GPU with CUDA, and torch sees none; use an ONNX engine "
            "(`streamavs export CHECKPOINT --backend onnx`) with the onnxruntime backend instead"
        )
    return torch, trt


def CastingStreaming(streaming, dtype):  # noqa: N802 - a class factory: torch is imported lazily
    """A StreamingSegmenter that computes in `dtype` with unchanged I/O dtypes.

    Mirrors ``StreamingSegmenter.forward`` (keep the two in sync; tests check that the float32
    form matches it exactly): frame (1, H, W, 3) uint8, log_mel and cache float32 in;
    float32 outputs out.
    """
    import copy

    import torch
    from torch import nn

    class _Casting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = copy.deepcopy(streaming).to(dtype)  # the caller's model stays float32
            self.dtype = dtype

        def forward(self, frame: torch.Tensor, log_mel: torch.Tensor, feature_cache: torch.Tensor):
            x = frame.permute(0, 3, 1, 2).to(self.dtype) / 255.0  # (1, 3, H, W) in [0, 1]
            outs = self.inner.forward_float(x, log_mel.to(self.dtype), feature_cache.to(self.dtype))
            return tuple(t.float() for t in outs)

    return _Casting().eval()


def compile_tensorrt(streaming, example_inputs: Sequence[Any], *, fp16: bool = False, device: str = "cuda:0"):
    """Compile a StreamingSegmenter with torch-tensorrt (dynamo IR); returns (compiled module, CUDA inputs)."""
    torch, trt = _require_trt("TensorRT export")
    module = CastingStreaming(streaming, torch.float16 if fp16 else torch.float32).to(device)
    inputs = [t.to(device) for t in example_inputs]
    params = inspect.signature(trt.dynamo.compile).parameters
    options: dict[str, Any] = {"min_block_size": 1}
    if "use_explicit_typing" in params:  # the precision follows the (already cast) weights
        options["use_explicit_typing"] = True
    elif fp16:  # older torch-tensorrt: weak typing with the FP16 builder flag
        options["enabled_precisions"] = {torch.float16, torch.float32}
    with torch.no_grad():  # not inference_mode: torch.export rejects inference tensors as parameters
        compiled = trt.compile(module, ir="dynamo", arg_inputs=inputs, **options)
    return compiled, inputs


def save_tensorrt(compiled, path: str | Path, inputs: Sequence[Any]) -> Path:
    """Save a compiled module as an ExportedProgram file (reload with torch.export.load)."""
    _, trt = _require_trt("TensorRT export")
    trt.save(compiled, str(path), output_format="exported_program", arg_inputs=list(inputs))
    return Path(path)


class TensorRTEngine(Engine):
    """A ``.ep`` engine (torch-tensorrt ExportedProgram) run on a CUDA device.

    threads is accepted for a uniform load_engine(...) call, checked as every backend checks it, and
    ignored (the GPU does the work).
    """

    backend = "tensorrt"

    def __init__(
        self,
        manifest: Manifest,
        model_path: Path,
        *,
        device: str = "cuda:0",
        threads: int | None = None,
        audio_params: LogMelParams | None = None,
        frame_size: tuple[int, int] | None = None,
    ) -> None:
        check_threads(threads)
        torch, _ = _require_trt("the TensorRT engine backend")
        super().__init__(manifest, Path(model_path), audio_params=audio_params, frame_size=frame_size)
        check_model_file(manifest, self.model_path)
        try:
            program = torch.export.load(str(self.model_path))
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad archive
            raise EngineError(
                f"cannot load TensorRT engine {manifest.name!r} from {self.model_path.name}: {exc}; TensorRT engines "
                "only run with the GPU model and TensorRT version that built them: re-export on this machine"
            ) from exc
        check_model_inputs(manifest, _placeholder_shapes(program), self.model_path.name)
        self._torch = torch
        self._device = torch.device(device)
        self._module = program.module().to(self._device)

    def _run(self, frame: np.ndarray, log_mel: np.ndarray, cache: np.ndarray) -> tuple[np.ndarray, ...]:
        torch = self._torch
        with torch.inference_mode():
            args = [torch.from_numpy(a).to(self._device, non_blocking=True) for a in (frame, log_mel, cache)]
            outs = self._module(*args)
            torch.cuda.synchronize(self._device)
        return tuple(o.float().cpu().numpy() for o in outs)

    def _release(self) -> None:
        self._module = None
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()


def _placeholder_shapes(program) -> dict[str, tuple[int, ...]]:
    """User input name -> static shape, read from the ExportedProgram's placeholder metadata."""
    users = set(program.graph_signature.user_inputs)
    out: dict[str, tuple[int, ...]] = {}
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in users:
            val = node.meta.get("val")
            if val is not None and hasattr(val, "shape"):
                out[node.name] = tuple(int(s) for s in val.shape)
    return out
