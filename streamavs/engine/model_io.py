"""An engine's model file against its manifest, input by input and output by output, at load.

The runtime feeds what the manifest describes (frame, log-mel example, feature cache) and reads
back what it describes (mask and uncertainty at the frame size, sounding, the next cache). A model
file that takes or gives anything else would fail on the first frame with a backend's own error,
or, worse, give the runtime arrays it misreads; :func:`check_model_io` refuses it when the engine
loads, naming the tensor, what the manifest says, what the model file has, and the fix.
:func:`check_model_precision` does the same for the manifest's precision (an INT8 manifest over
an FP32 model file, or the reverse, would run at the wrong speed and accuracy without a word).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from streamavs.engine.manifest import Manifest, check_model_inputs
from streamavs.errors import ManifestMismatch

__all__ = ["check_model_io", "check_model_precision", "onnx_dtype"]

_ONNX_DTYPES = {"float": "float32", "double": "float64"}  # ONNX element type names that differ from numpy's


def onnx_dtype(type_name: str) -> str:
    """ONNX Runtime's ``tensor(float)`` -> numpy's ``float32`` (``tensor(uint8)`` -> ``uint8``)."""
    inner = type_name.removeprefix("tensor(").removesuffix(")")
    return _ONNX_DTYPES.get(inner, inner)


def check_model_io(manifest: Manifest, inputs: Mapping[str, tuple[Sequence, str]],
                   outputs: Mapping[str, tuple[Sequence, str]], model_file: str) -> None:
    """`inputs` / `outputs`: the model file's own tensors, name -> (shape, numpy dtype name); a
    dimension that is not an int (a dynamic one) is not compared. Raises ManifestMismatch. Includes
    :func:`~streamavs.engine.manifest.check_model_inputs` (frame and cache inputs, with their own messages)."""
    name = manifest.name
    missing = [t.name for t in manifest.inputs if t.name not in inputs]
    if missing:
        raise ManifestMismatch(
            f"engine {name!r}: model file {model_file} has inputs {sorted(inputs)} but the manifest names "
            f"{[t.name for t in manifest.inputs]}; re-export the engine"
        )
    check_model_inputs(manifest, {n: tuple(shape) for n, (shape, _) in inputs.items()}, model_file)
    frame_h, frame_w = manifest.frame.size
    params = manifest.audio.params
    _, log_mel, cache_in = manifest.inputs
    mask, uncertainty, _, cache_out = manifest.outputs
    expected = {log_mel.name: (1, 1, params.example_frames, params.n_mels), mask.name: (1, 1, frame_h, frame_w),
                uncertainty.name: (1, 1, frame_h, frame_w), cache_out.name: cache_in.shape}
    for spec in (*manifest.inputs, *manifest.outputs):  # the manifest against what the runtime feeds and reads
        if spec.name in expected and spec.shape != expected[spec.name]:
            raise ManifestMismatch(
                f"engine {name!r}: manifest says {spec.name} {list(spec.shape)} but the runtime "
                f"{'feeds' if spec in manifest.inputs else 'reads'} {list(expected[spec.name])} (frame "
                f"{frame_h}x{frame_w}, {params.n_mels} mels x {params.example_frames} frames); re-export the engine"
            )
    for kind, specs, actual in (("input", manifest.inputs, inputs), ("output", manifest.outputs, outputs)):
        for spec in specs:
            if spec.name not in actual:
                raise ManifestMismatch(
                    f"engine {name!r}: model file {model_file} has no {kind} {spec.name!r} (it has "
                    f"{sorted(actual)}); re-export the engine"
                )
            shape, dtype = actual[spec.name]
            same_shape = len(shape) == len(spec.shape) and all(
                not isinstance(d, int) or d == s for d, s in zip(shape, spec.shape))
            if not same_shape or dtype != spec.dtype:
                raise ManifestMismatch(
                    f"engine {name!r}: manifest says {kind} {spec.name} {list(spec.shape)} {spec.dtype} but model file "
                    f"{model_file} has {list(shape)} {dtype}; re-export the engine"
                )


def check_model_precision(manifest: Manifest, quantization_ops: Sequence[str], model_file: str) -> None:
    """The manifest's precision agrees with the model file: int8 when the graph holds quantization
    operators (`quantization_ops`, read from the file: QuantizeLinear, DequantizeLinear, ...), fp32
    when it holds none. Raises ManifestMismatch.

    Only the quantization is checked: it is what `streamavs export --int8` adds to a graph, and it
    is visible in the operator types alone. An ONNX engine is never fp16 (manifest.PRECISIONS), and
    a float graph's weight types are not read.
    """
    name, precision = manifest.name, manifest.precision
    fix = "the manifest was written for another model file: restore the engine's files or re-export it"
    if precision == "int8" and not quantization_ops:
        raise ManifestMismatch(
            f"engine {name!r}: manifest says precision int8 but model file {model_file} holds no quantization "
            f"operators (QuantizeLinear, DequantizeLinear, ...): it is a float (fp32) model; {fix}"
        )
    if precision != "int8" and quantization_ops:
        raise ManifestMismatch(
            f"engine {name!r}: manifest says precision {precision} but model file {model_file} is quantized (it holds "
            f"{', '.join(quantization_ops)} operators: an int8 model); {fix}"
        )
