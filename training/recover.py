"""Recover a streaming checkpoint from an exported FP32 ONNX engine, checked by parity.

Why: an engine ships, its training checkpoint does not (``runs/`` is not committed), so a later
session cannot run the engine's own segmenter without its stage (the frame-only arm of the
temporal ablation) or train a new stage on that segmenter. The FP32 engine holds every weight:

- The dynamo exporter keeps parameter names as initializer names (``segmenter.necks.0.0.weight``).
- It folds each BatchNorm into the convolution before it: the conv weight is scaled and a
  ``<conv>.weight_bias`` initializer is added. Folding is inverted exactly for inference: the
  conv takes the folded weight (its own bias, if any, 0) and the BatchNorm becomes ``x + bias``
  (weight 1, running mean 0, running variance ``1 - eps``). The BatchNorm statistics are
  therefore not the original ones: fine-tune the segmenter in train mode from a recovered
  checkpoint and BatchNorm behaves differently; the frozen segmenter of temporal training and
  every eval-mode use are exact.
- A GroupNorm's affine becomes a ``Mul`` by a (C, 1, 1) constant followed by an ``Add``.
- A learnable similarity scale is folded to ``exp(log_scale)``, a scalar initializer named ``exp``.
- A tensor that cannot change an output may be missing (an all-zero bias folds away): it keeps
  its initial value and is listed in the checkpoint (``recovered_from.not_in_graph``). A folded
  BatchNorm whose bias was all zeros leaves no ``<conv>.weight_bias``: its bias is set to zero,
  which is exact, and the names are listed under ``recovered_from.folded_bias_zero``.

Nothing is written unless the recovered model, run by PyTorch eager, matches the engine run by
ONNX Runtime on the export's default parity sequence (``PARITY_FRAMES`` frames, cache carried)
within ``tolerance``.
INT8 engines hold quantised weights and are refused: recover from the FP32 engine.

CLI::

    python -m streamavs.training.recover engines/streamavs-real-lite.json --out runs/shipped-real/recovered.pt
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from streamavs.errors import EngineError, InputError, StreamAVSError, require

__all__ = ["FOLDED_BIAS", "identity_batchnorm", "recover_state", "recover_checkpoint"]

FOLDED_BIAS = ".weight_bias"
"""Suffix of the initializer a folded BatchNorm leaves on its conv: ``<conv>.weight_bias`` (dynamo)."""
_FOLDED_SIM_SCALE = "exp"  # exp(similarity_head.log_scale), constant-folded


def identity_batchnorm(folded_bias: np.ndarray, eps: float) -> dict[str, np.ndarray]:
    """The BatchNorm state that, after a conv holding the folded weight, reproduces a folded
    conv + BN in eval mode: ``(x - 0) / sqrt((1 - eps) + eps) * 1 + b = x + b``."""
    return {"weight": np.ones_like(folded_bias), "bias": folded_bias,
            "running_mean": np.zeros_like(folded_bias), "running_var": np.full_like(folded_bias, 1.0 - eps)}


def _graph_affines(graph, arrays: dict[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(scale, shift) of each Mul-then-Add by (C, 1, 1) initializers, in graph order (a GroupNorm's affine)."""
    per_channel = lambda name: name in arrays and arrays[name].ndim == 3 and arrays[name].shape[1:] == (1, 1)  # noqa: E731
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    pairs = []
    for node in graph.node:
        scale = [n for n in node.input if per_channel(n)]
        if node.op_type != "Mul" or len(scale) != 1:
            continue
        for nxt in consumers.get(node.output[0], []):
            shift = [n for n in nxt.input if per_channel(n)]
            if nxt.op_type == "Add" and len(shift) == 1:
                pairs.append((arrays[scale[0]], arrays[shift[0]]))
    return pairs


def recover_state(model, onnx_path: Path) -> tuple[dict, list[str], list[str]]:
    """(state dict for `model`, a StreamingSegmenter, from the initializers of the FP32 engine at
    `onnx_path`; the checkpoint keys that are not in the graph; the folded biases the exporter
    dropped as all zero, set to zero). The keys not in the graph keep `model`'s values: the
    exporter drops what cannot change an output (an all-zero bias folds away, a dead head goes),
    and the parity check of :func:`recover_checkpoint` tells whether that mattered."""
    torch = require("torch", "train", "checkpoint recovery")
    onnx = require("onnx", "train", "checkpoint recovery")
    from onnx import numpy_helper

    proto = onnx.load(str(onnx_path))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    found: set[str] = set()

    def put(key: str, value) -> None:
        target, value = state[key], np.array(value)
        if value.size != target.numel():
            raise EngineError(f"{onnx_path}: {key} needs {tuple(target.shape)} ({target.numel()} values); the graph "
                              f"gives {value.shape}: the engine does not hold this model (check its manifest's model config)")
        state[key] = torch.tensor(value, dtype=target.dtype).reshape(target.shape)
        found.add(key)

    for key in state:
        if key in inits:
            put(key, inits[key])
    last_conv: str | None = None
    norms: list[str] = []
    zero_biases: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            last_conv = name
        elif isinstance(module, torch.nn.BatchNorm2d) and f"{name}.weight" not in found:
            if last_conv is None:
                raise EngineError(f"BatchNorm {name} follows no convolution: its folded form cannot be told apart")
            bias = inits.get(f"{last_conv}{FOLDED_BIAS}")
            if bias is None:  # an all-zero folded bias is dropped by the exporter
                bias = np.zeros(module.num_features, dtype=np.float32)
                zero_biases.append(f"{last_conv}{FOLDED_BIAS}")
            for key, value in identity_batchnorm(bias, module.eps).items():
                put(f"{name}.{key}", value)
            if f"{last_conv}.bias" in state:
                put(f"{last_conv}.bias", np.zeros_like(bias))
        elif isinstance(module, torch.nn.GroupNorm) and module.affine:
            norms.append(name)
    affines = _graph_affines(proto.graph, inits)
    if len(affines) != len(norms):
        raise EngineError(f"{len(norms)} GroupNorm layers but {len(affines)} per-channel affines in {onnx_path}")
    for name, (scale, shift) in zip(norms, affines):
        put(f"{name}.weight", scale)
        put(f"{name}.bias", shift)
    for key in state:
        if key.endswith("similarity_head.log_scale") and key not in found and _FOLDED_SIM_SCALE in inits:
            put(key, np.log(inits[_FOLDED_SIM_SCALE]))
    missing = [k for k in state if k not in found and not k.endswith("num_batches_tracked")
               and not k.endswith("similarity_head.bias")]  # a fixed buffer unless learnable (then it is an initializer)
    return state, missing, zero_biases


def recover_checkpoint(manifest_path: str | Path, out: str | Path, *,
                       tolerance: float = 1e-3) -> tuple[Path, dict, list[str]]:
    """Write `out`, a streaming checkpoint equal (by parity) to the FP32 engine of `manifest_path`.

    Returns (out, parity max abs diffs, checkpoint keys not in the graph (kept at their initial
    values)). Raises InputError for a non-FP32 or non-ONNX engine or a tolerance that is not a
    finite number >= 0, EngineError if a layer cannot be matched or parity fails (nothing written then).
    """
    from streamavs.engine import load_engine, read_manifest
    from streamavs.engine.torch import TorchEngine
    from streamavs.model.config import ModelConfig
    from streamavs.model.segmenter import AVSSegmenter
    from streamavs.model.streaming import StreamingSegmenter, save_streaming_checkpoint
    from streamavs.model.temporal import TemporalConfig, TemporalStage
    from streamavs.training.export import PARITY_FRAMES, check_parity, parity_inputs

    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < math.inf:
        raise InputError(f"tolerance must be a finite number >= 0 (max abs difference), got {tolerance!r}")
    manifest = read_manifest(manifest_path)
    model_info = manifest.model
    if manifest.backend != "onnx" or manifest.precision != "fp32":
        raise InputError(f"{manifest_path}: backend {manifest.backend!r}, precision {manifest.precision!r}; checkpoints can only be "
                         f"recovered from an FP32 ONNX engine (lower precisions lose weight bits): pass the FP32 manifest")
    if not model_info or "config" not in model_info:
        raise InputError(f"{manifest_path}: the manifest has no model config; re-export the engine with this StreamAVS")
    segmenter = AVSSegmenter(ModelConfig.from_dict(model_info["config"]), load_pretrained=False)
    temporal_cfg = model_info.get("temporal_config")
    temporal = TemporalStage(TemporalConfig.from_dict(temporal_cfg)) if temporal_cfg else None
    model = StreamingSegmenter(segmenter, temporal).eval()
    inputs, source = parity_inputs(model.image_size, PARITY_FRAMES)
    with load_engine(manifest_path, backend="onnxruntime") as engine:  # also checks the model file's hash
        state, not_in_graph, zero_biases = recover_state(model, engine.model_path)
        model.load_state_dict(state)
        with TorchEngine.from_module(model, {}, name=f"{manifest.name} (recovered)") as candidate:
            diffs = check_parity(engine, candidate, inputs)
    if not max(diffs.values()) <= tolerance:  # NaN fails too
        raise EngineError(f"recovered model differs from {manifest_path} by {diffs} (tolerance {tolerance}); "
                          f"nothing written")
    out = Path(out)
    save_streaming_checkpoint(out, model, {
        "provenance": f"recovered from engine {manifest.name} (sha256 {manifest.sha256[:12]}) by streamavs.training.recover",
        "train_config": {"data": manifest.training.get("data")},  # what its segmenter learned from, as recorded
        "metrics": manifest.training.get("metrics", {}),
        "recovered_from": {"engine": manifest.name, "sha256": manifest.sha256,
                           "export": manifest.export,
                           "parity": {"inputs": source, "max_abs_diff": diffs, "tolerance": tolerance},
                           "not_in_graph": not_in_graph,  # kept at their initial values
                           "folded_bias_zero": zero_biases,  # dropped by the exporter as all zero: exact
                           "batchnorm": "folded into the convolutions: exact in eval mode only"},
    })
    return out, diffs, not_in_graph


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamavs.training.recover", description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", help="an FP32 ONNX engine's manifest (.json)")
    parser.add_argument("--out", required=True, help="the checkpoint to write (.pt)")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="max abs difference allowed (default 1e-3)")
    args = parser.parse_args(argv)
    try:
        out, diffs, not_in_graph = recover_checkpoint(args.manifest, args.out, tolerance=args.tolerance)
    except StreamAVSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {out}; parity against the engine: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    if not_in_graph:
        print(f"not in the engine's graph, kept at their initial values: {', '.join(not_in_graph)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
