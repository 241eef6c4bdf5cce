"""INT8 static quantization of an FP32 ONNX engine with ONNX Runtime (QDQ format).

``quantize_engine(fp32_manifest, out_path, config)``:

1. Calibration inputs: the FP32 engine itself runs over whole clips of the calibration data
   (real-media or synthetic training/validation clips, with some seconds of negative audio)
   in stream order, one frame per second with its log-mel, carrying its feature cache; every
   step's inputs (frame, log-mel, the cache as it arrived) are kept. So the temporal stage is
   calibrated on the caches it sees when streaming, not on zeros.
2. ``quant_pre_process``: ONNX shape inference and ONNX Runtime's basic graph optimisation
   (constant folding, Conv + BatchNorm fusion), so that quantization sees the graph that runs.
3. ``quantize_static`` in QDQ form: weights int8 (per output channel by default), activations
   uint8 with ranges from the calibration inputs. Nodes of the stages in
   ``QuantizeConfig.exclude_stages`` (``streamavs.training.graph_stages``), the first
   convolution (3 input channels: an int8 kernel gains nothing on it, and the frame's
   normalisation then stays a fast float op in NCHW), and operator types in
   ``exclude_ops`` stay float.

ONNX Runtime fuses each DequantizeLinear -> op -> QuantizeLinear group into an integer kernel
(QLinearConv, QGemm, QLinearAdd, ...) when it loads the model; on a CPU with AVX-512 VNNI or
AVX-VNNI those run u8 x s8 dot products natively (``cpu_int8_support``).

The defaults were chosen by measurement on the real-object engine (2-core AMD EPYC with
AVX-512 VNNI, ONNX Runtime 1.32, 1 thread, sum of per-node median kernel times; FP32 8.6-9.3
ms): QDQ per-channel u8/s8 5.5 ms; QOperator 6.2; per-tensor weights 5.8; reduce_range 5.8;
u8 weights 60 (a slow path); the temporal stage all float 7.0; everything quantized, temporal
arithmetic included, is faster but wrong (the masked attention bias and the uncertainty do not
survive 8 bits: masks vanish, uncertainty becomes inf). bench/README.md, "INT8 engine".

Needs the ``onnx`` package (the ``train`` extra), not torch; onnxruntime.quantization ships with
onnxruntime and the calibration clips come from :mod:`streamavs.datasets` (numpy only).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from streamavs.errors import InputError, require

__all__ = ["QuantizeConfig", "CALIBRATION_SPECS", "calibration_inputs", "quantize_model", "compare_engines",
           "cpu_int8_support", "excluded_nodes"]

# Calibration data specs: kind-split. Never a test split: the accuracy gate runs on the test split.
CALIBRATION_SPECS = ("real-train", "real-val", "synthetic-train", "synthetic-val")
_CALIBRATION = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}
_TYPES = {"u8": "QUInt8", "s8": "QInt8"}
# What a conv_only stage quantizes: convolutions and the activations ONNX Runtime folds into them.
_CONV_AND_ACTIVATIONS = ("Conv", "Relu", "Clip")


@dataclass(frozen=True)
class QuantizeConfig:
    """How an engine is quantized (recorded in its manifest's ``export.quantization``).

    calibration: a CALIBRATION_SPECS name; calibration_clips: whole clips (x5 frames) run in
    stream order; negative_share: share of calibration seconds given negative audio (silence,
    off-screen, noise), as the engine meets them live. method: activation ranges from the
    min/max ("minmax"), a percentile ("percentile", see `percentile`) or the entropy of a
    histogram ("entropy"). quant_format: "qdq" (QuantizeLinear/DequantizeLinear around float
    ops; ONNX Runtime fuses them) or "qoperator" (QLinearConv etc. written directly).
    activation_type / weight_type: "u8" or "s8". per_channel: one weight scale per output
    channel. reduce_range: 7-bit weights (only for CPUs without VNNI, where u8 x s8 products
    can saturate). What stays float: every node of `exclude_stages`, every node but the
    convolutions of `conv_only_stages` (the temporal stage's attention arithmetic, softmax,
    sigmoid, softplus and Dirichlet uncertainty: a masked-score bias of -1e4 or a division by
    a small sum does not survive 8 bits), the first convolution, and `exclude_ops`.
    pre_process: ``quant_pre_process`` first.
    """

    calibration: str = "real-train"
    calibration_clips: int = 48
    negative_share: float = 0.25
    seed: int = 0
    method: str = "minmax"
    percentile: float = 99.999
    quant_format: str = "qdq"
    activation_type: str = "u8"
    weight_type: str = "s8"
    per_channel: bool = True
    reduce_range: bool = False
    exclude_stages: tuple[str, ...] = ("preprocess", "audio")
    conv_only_stages: tuple[str, ...] = ("temporal",)
    exclude_first_conv: bool = True
    exclude_ops: tuple[str, ...] = ()
    pre_process: bool = True

    def __post_init__(self) -> None:
        from streamavs.training.graph_stages import STAGES

        if self.calibration not in CALIBRATION_SPECS:
            raise InputError(f"calibration data must be one of {CALIBRATION_SPECS}, got {self.calibration!r}")
        if isinstance(self.calibration_clips, bool) or not isinstance(self.calibration_clips, int) or self.calibration_clips < 1:
            raise InputError(f"calibration_clips must be a positive number of clips, got {self.calibration_clips!r}")
        if not 0.0 <= self.negative_share <= 1.0:
            raise InputError(f"negative_share must be in [0, 1], got {self.negative_share!r}")
        if self.method not in _CALIBRATION:
            raise InputError(f"calibration method must be one of {list(_CALIBRATION)}, got {self.method!r}")
        if self.quant_format not in ("qdq", "qoperator"):
            raise InputError(f"quant_format must be 'qdq' or 'qoperator', got {self.quant_format!r}")
        for key in ("activation_type", "weight_type"):
            if getattr(self, key) not in _TYPES:
                raise InputError(f"{key} must be one of {list(_TYPES)}, got {getattr(self, key)!r}")
        unknown = [s for s in (*self.exclude_stages, *self.conv_only_stages) if s not in STAGES]
        if unknown:
            raise InputError(f"exclude_stages / conv_only_stages {unknown} are not stages; choose among {list(STAGES)}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def cpu_int8_support() -> dict[str, Any]:
    """The CPU's int8 dot-product instructions (from /proc/cpuinfo flags) and what they imply."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    present = {f: f in flags for f in ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")}
    vnni = present["avx512_vnni"] or present["avx_vnni"] or present["amx_int8"]
    return {
        "flags": present,
        "vnni": vnni,
        "implication": (
            "VNNI: u8 x s8 dot products in one instruction with 32-bit accumulation; no saturation, so full-range "
            "s8 weights (no reduce_range) and u8 activations are the fast and exact choice"
            if vnni else
            "no VNNI: u8 x s8 products go through 16-bit pairwise sums that can saturate; use reduce_range "
            "(7-bit weights) and expect a smaller int8 gain"
        ),
    }


def calibration_inputs(fp32_manifest: str | Path, config: QuantizeConfig) -> tuple[list[dict[str, np.ndarray]], str]:
    """Feeds for calibration: the FP32 engine streamed over `config.calibration_clips` whole clips.

    Returns ([{"frame": (1, H, W, 3) uint8, "log_mel": (1, 1, 96, 64) float32, "feature_cache":
    cache as it arrived}, ...] in stream order, a description of the data).
    """
    from streamavs.datasets.conditions import NegativeMix
    from streamavs.engine.base import load_engine
    from streamavs.synthetic import SceneConfig

    kind, split = config.calibration.split("-")
    with load_engine(fp32_manifest, threads=1) as engine:
        size = engine.frame_size[0]
        names = [t.name for t in engine.manifest.inputs]
        scenes = SceneConfig(image_size=size, state_change_prob=0.3)
        mix = NegativeMix(share=config.negative_share)
        if kind == "real":
            from streamavs.datasets.real import real_clips

            clips = real_clips(split, config.calibration_clips, scenes, mix=mix, seed=config.seed)
        else:
            from streamavs.datasets.synthetic import SyntheticClips

            clips = SyntheticClips(split, config.calibration_clips, scenes, mix=mix, seed=config.seed)
        feeds: list[dict[str, np.ndarray]] = []
        for index in range(len(clips)):
            clip = clips[index]
            cache = engine.initial_cache()  # each clip is a stream start
            for frame, log_mel in zip(np.asarray(clip["frame"]), np.asarray(clip["log_mel"])):
                feeds.append({names[0]: frame[None], names[1]: log_mel[None, None].astype(np.float32),
                              names[2]: cache})
                cache = engine.run(frame, log_mel, cache).cache
    describe = (f"{config.calibration_clips} {kind}-media {split} clips x {clips.seconds} frames in stream order "
                f"(the FP32 engine's own caches), {config.negative_share:.0%} negative seconds, seed {config.seed}")
    return feeds, describe


def excluded_nodes(model, config: QuantizeConfig) -> list[str]:
    """Names of the nodes of `model` (an onnx.ModelProto) that stay float under `config`."""
    from streamavs.training.graph_stages import node_stages

    stages = node_stages(model.graph)
    out = [n.name for n in model.graph.node
           if stages.get(n.name) in config.exclude_stages or n.op_type in config.exclude_ops
           or stages.get(n.name) in config.conv_only_stages and n.op_type not in _CONV_AND_ACTIVATIONS]
    if config.exclude_first_conv:
        first = next((n for n in model.graph.node if n.op_type == "Conv"), None)
        if first is not None and first.name not in out:
            out.append(first.name)
    return out


class _Feeds:
    """onnxruntime.quantization.CalibrationDataReader over a list of feed dicts."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._feeds = list(feeds)
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._feeds):
            return None
        self._next += 1
        return self._feeds[self._next - 1]

    def rewind(self) -> None:
        self._next = 0


def quantize_model(fp32_model: str | Path, out_path: str | Path, feeds: Sequence[dict[str, np.ndarray]],
                   config: QuantizeConfig) -> dict[str, Any]:
    """Write the INT8 model of `fp32_model` to `out_path`; returns what was done (for the manifest)."""
    onnx = require("onnx", "train", "INT8 quantization")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not feeds:
        raise InputError("calibration needs at least one input; give calibration_clips >= 1")
    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        source = Path(tmp) / "pre.onnx"
        if config.pre_process:  # symbolic shape inference is skipped: every shape is static already
            quant_pre_process(str(fp32_model), str(source), skip_symbolic_shape=True)
        else:
            shutil.copyfile(fp32_model, source)
        model = onnx.load(str(source))
        exclude = excluded_nodes(model, config)
        # MinMax keeps only per-tensor min/max per input (ReduceMin/ReduceMax outputs): no memory limit needed.
        # ForceQuantizeNoInputCheck: data-movement ops (Reshape, Transpose, Resize, ...) give their output their
        # input's scale, so ONNX Runtime can drop the DequantizeLinear/QuantizeLinear around them (not around a
        # bilinear Resize: ONNX Runtime keeps those in float; a uint8 Resize measured 0.45 ms slower here).
        extra = {"ActivationSymmetric": False, "WeightSymmetric": True, "ForceQuantizeNoInputCheck": True}
        if config.method == "percentile":
            extra["CalibPercentile"] = config.percentile
        quantize_static(
            str(source), str(out_path), _Feeds(feeds),
            quant_format=QuantFormat.QDQ if config.quant_format == "qdq" else QuantFormat.QOperator,
            per_channel=config.per_channel, reduce_range=config.reduce_range,
            activation_type=getattr(QuantType, _TYPES[config.activation_type]),
            weight_type=getattr(QuantType, _TYPES[config.weight_type]),
            nodes_to_exclude=exclude, calibrate_method=getattr(CalibrationMethod, _CALIBRATION[config.method]),
            extra_options=extra,
        )
    quantized = onnx.load(str(out_path), load_external_data=False)
    ops: dict[str, int] = {}
    for node in quantized.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return {"calibration_inputs": len(feeds), "nodes_kept_float": len(exclude), "nodes_by_op": ops}



def compare_engines(reference, candidate, inputs: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """How far `candidate` (INT8) is from `reference` (FP32) over a sequence, each carrying its own cache.

    Max and mean abs differences per output; ``mask_disagreement``: share of pixels whose mask
    (mask_prob >= the manifest's mask threshold) differs; ``gate_flips``: frames whose sounding
    decision (>= the gate threshold) differs; ``mask_iou``: IoU of the two masks over all frames.
    """
    thresholds = reference.manifest.thresholds
    keys = ("mask_prob", "uncertainty", "sounding", "cache")
    max_d, sum_d, count = dict.fromkeys(keys, 0.0), dict.fromkeys(keys, 0.0), dict.fromkeys(keys, 0)
    disagree = inter = union = pixels = flips = 0
    cache_r, cache_c = reference.initial_cache(), candidate.initial_cache()
    for frame, log_mel in inputs:
        r, c = reference.run(frame, log_mel, cache_r), candidate.run(frame, log_mel, cache_c)
        for key, a, b in zip(keys, (r.mask_prob, r.uncertainty, r.sounding, r.cache),
                             (c.mask_prob, c.uncertainty, c.sounding, c.cache)):
            d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
            max_d[key] = max(max_d[key], float(d.max()) if np.all(np.isfinite(d)) else float("inf"))
            sum_d[key] += float(d.sum())
            count[key] += d.size
        ma, mb = r.mask_prob >= thresholds.mask, c.mask_prob >= thresholds.mask
        disagree += int(np.count_nonzero(ma != mb))
        inter += int(np.count_nonzero(ma & mb))
        union += int(np.count_nonzero(ma | mb))
        pixels += ma.size
        flips += int((r.sounding >= thresholds.gate) != (c.sounding >= thresholds.gate))
        cache_r, cache_c = r.cache, c.cache
    return {
        "frames": len(inputs),
        "max_abs_diff": max_d,
        "mean_abs_diff": {k: sum_d[k] / max(count[k], 1) for k in keys},
        "mask_disagreement": disagree / max(pixels, 1),
        "mask_iou": inter / union if union else 1.0,
        "gate_flips": flips,
    }
