"""Recover the PyTorch segmenter (and its first temporal stage) of a shipped ONNX engine.

The synthetic engine's training checkpoint was not kept; retraining it costs ~50 CPU-minutes.
Its ONNX file still holds every weight the streaming graph uses, under the PyTorch names
(the dynamo exporter keeps them), so the model is rebuilt from the manifest's ModelConfig and
filled from the ONNX initializers; scripts/_onnx_weights.py says how each tensor is mapped and
what cannot be recovered (the segmenter's frame-only mask head, which the exporter dropped: set
to zeros and listed under ``extra["recovery"]["not_recovered"]``). The temporal stage is the
engine's FIRST stage, saved beside the segmenter in the layout ``save_streaming_checkpoint``
wrote then (temporal_config without a version).

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

It reads engines with the first temporal stage (version 1), as the synthetic engine was before
commit 4946412; today's engines hold stage version 3 and are refused. The engine it was written
for, from git:

    mkdir -p prev && for f in json onnx; do git show 4946412:engines/streamavs-synthetic-lite.$f > prev/streamavs-synthetic-lite.$f; done
    .venv/bin/python scripts/recover_segmenter.py --engine prev/streamavs-synthetic-lite.json \\
        --out runs/synthetic_engine_segmenter/best.pt
    # + a re-estimated mask head (about a CPU-minute):
    .venv/bin/python scripts/recover_segmenter.py --engine prev/streamavs-synthetic-lite.json \\
        --out runs/synthetic_engine_segmenter/best_fitted_head.pt \\
        --recipe training/configs/synthetic_single_full_long.toml --fit-mask-head 480
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from _onnx_weights import Graph, recover_segmenter, recover_temporal  # scripts/, beside this file
from streamavs.errors import InputError, StreamAVSError


# -- the engine ---------------------------------------------------------------------------------
def load_engine(manifest_path: Path) -> tuple[Any, Path, Any]:
    """The Manifest, the ONNX path and the ModelProto of the bytes checked against the manifest's sha256."""
    import onnx

    from streamavs.engine.manifest import check_model_file, read_manifest

    manifest = read_manifest(manifest_path)
    if manifest.backend != "onnx" or "config" not in manifest.model:
        raise InputError(f"--engine {manifest_path} is a {manifest.backend!r} engine without a model config; "
                         "expected an ONNX engine whose manifest has model.config (exported by `streamavs export`)")
    model_path = manifest_path.parent / manifest.model_file
    return manifest, model_path, onnx.load_from_string(check_model_file(manifest, model_path))


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


def head_logits(head, fused):
    """Mask logits (B, 1, H, W) of `head` on cached fused maps (B, C, h, w), upsampled as the segmenter does."""
    import torch.nn.functional as F

    return F.interpolate(head(fused.float()), scale_factor=4.0, mode="bilinear", align_corners=False)


def fit_mask_head(head, train: dict[str, Any], dice_weight: float, seed: int, steps: int = 400) -> float:
    """The recipe's mask loss (BCE + dice_weight * two-sided soft Dice) on the frozen fused maps, head only
    (zero start, Adam, cosine decay); returns the final loss over all samples."""
    import torch

    from streamavs.training.losses import mask_loss

    def loss_of(idx) -> torch.Tensor:
        return mask_loss(head_logits(head, train["fused"][idx]), train["mask"][idx].float(), dice_weight)

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

    from streamavs.metrics import RobustMeter

    meters = {"gate_off": RobustMeter(threshold), "gate_on": RobustMeter(threshold)}
    with torch.no_grad():
        for s in range(0, val["fused"].shape[0], 64):
            prob = torch.sigmoid(head_logits(head, val["fused"][s:s + 64]))[:, 0].numpy()  # (B, H, W)
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
    parser.add_argument("--engine", type=Path, required=True,
                        help="the engine's manifest (.json), its .onnx beside it; an engine with the first "
                             "temporal stage (see the module docstring for the one this was written for)")
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
    manifest, model_path, proto = load_engine(args.engine)
    version = (manifest.model.get("temporal_config") or {}).get("version", 1)
    if version != 1:
        print(f"error: {args.engine} holds temporal stage version {version}; this script reads engines with the "
              "first stage (version 1), e.g. the synthetic engine of commit 4946412 (module docstring)", file=sys.stderr)
        return 2
    graph = Graph(proto)
    provenance = f"recovered from {model_path.as_posix()} sha256 {manifest.sha256}"
    print(provenance)
    segmenter, report = recover_segmenter(manifest.model["config"], graph, args.backbone == "package")
    temporal_config = manifest.model["temporal_config"]
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
    metrics = manifest.training.get("metrics", {})
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
        "engine_training": {k: v for k, v in manifest.training.items() if k != "metrics"},
        "recovery": {**report, "parity_max_abs_diff": diffs, "parity_tolerance": args.tolerance,
                     "engine": manifest.name, "engine_sha256": manifest.sha256},
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