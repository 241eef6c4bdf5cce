"""Training the causal temporal stage on top of a frozen segmenter.

Why on top of, not jointly: the segmenter's robustness to negative audio comes from the
balanced per-frame training of the paper; freezing it keeps that intact, makes the ablation
clean (frame-only, attention-only and full stage share one segmenter), and makes training cheap
on a CPU: the segmenter runs once per clip to cache its fused feature maps, then the stage
trains for many epochs on the cache.

Data: synthetic clips whose objects start and stop sounding between seconds
(`[data] state_change_prob`), with `clip_negative_share` of the seconds given negative audio
(silence / off-screen / noise through the same front end). Targets are the per-second sounding
masks at the fused map's resolution (1/4 of the input).

Loss (see :func:`temporal_loss`): BCE + soft IoU on the stage's output ``sigmoid(m_frame +
delta)`` (the uncertainty gates the past inside delta), each frame weighted by ``transition_weight`` when the sounding state changed
at it (a start or a stop: the frames the stage must not delay); a consistency term, the mean
change of the probability between consecutive frames on pixels whose target did not change
(what the flicker metric counts; without it the first residual stage raised mIoU after onsets
by 5.6 points on the real-media test split but flickered 13% more than frame-only); plus an
evidential loss on the Dirichlet parameters. Through the output alone the uncertainty would only learn "where the
correction helps"; the evidential loss (Sensoy et al. 2018: type-II likelihood plus a KL term
that removes evidence for the wrong class) asks for evidence for the right class at every pixel
and penalises misleading evidence, so the head keeps evidence low exactly where the features
cannot tell silent from sounding: where the cached past and the current audio disagree. That
is where the gate shuts the past out of the correction.

Resolution (``[temporal] resolution``): "fused" computes the mask terms and the validation
metrics on the 1/4-resolution map the stage works on, against area-downsampled targets; "full"
upsamples the stage's logits to the frame first (``to_frame``, as the engine does) and uses the
full-size masks, so boundary pixels, which the flicker metric counts at full size, are trained
and validated where they are measured. The evidential term stays on the fused map.

The stage starts as the identity (frame-only), or as the stage of ``[temporal] init_stage``
(:mod:`streamavs.training.stage_init`); the checkpoint keeps the epoch with the best
validation score, ``val_score = mIoU of the frames where something sounds (percent) - 100 x FPR
of the frames where nothing does``, at the ``[temporal] resolution`` (threshold 0.5). The log's epoch 0
is the start on the same validation clips: a stage that never beats its start on validation is
saved as the start. The kept weights are validated again once restored, and the checkpoint records
that score (``temporal_saved_val_score``, equal to the kept epoch's). With ``[temporal] keep = "no_worse"`` only epochs no worse
than the start on validation on each transition target (FPR just after silence, mIoU just after
an onset, flicker: :func:`keeps_frame_only_promise`) compete; with ``keep = "last"`` the final epoch
is saved, whatever validation says (for comparing two arms without selecting on a small
validation set: a stage started from one that was itself the best of its run on the same
clips is rarely beaten there, runs/v26). Measured on the real-media test
split (bench/README.md, "Temporal stage v2"): "best_score" on 5 s clips (the shipped stage)
gains 4.1 points of mIoU just after onsets and of G-mIoU with 12% more flicker than frame-only;
"no_worse" on 10 s clips (``clip_seconds = 10``, as long as the benchmark's, where validation
shows the flicker the test shows) gains 1.3 and 0.5 with 2% more flicker. (Selecting by the
validation loss instead kept an epoch that lowered the loss by tempering over-confident frame
logits but lost 1.3 points of G-mIoU on the synthetic test split.)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from streamavs.model.streaming import StreamingSegmenter, save_streaming_checkpoint
from streamavs.model.resize import to_frame
from streamavs.model.temporal import TemporalConfig, TemporalOutput, TemporalStage
from streamavs.threads import limit_blas_threads
from streamavs.training.config import TemporalSection, TrainConfig
from streamavs.training.distributed import resolve_device
from streamavs.training.stage_init import warm_start
from streamavs.training.temporal_checks import check_recipe, check_run_folder, check_segmenter_size


def soft_iou_loss(prob: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """1 - (2 sum(p y) + 1) / (sum p + sum y + 1) per map; defined (and > 0 for p > 0) on empty targets.

    prob, target: (N, ...); weight: (N,) per-map weights with mean 1, or None."""
    dims = tuple(range(1, prob.dim()))
    inter = (prob * target).sum(dims)
    per_map = 1.0 - (2.0 * inter + 1.0) / (prob.sum(dims) + target.sum(dims) + 1.0)  # (N,)
    return (per_map if weight is None else per_map * weight).mean()


def evidential_loss(alpha: torch.Tensor, target: torch.Tensor, kl_weight: float) -> torch.Tensor:
    """Type-II ML loss for a Dirichlet over {silent, sounding} plus the annealed KL regulariser.

    alpha: (N, 2, h, w) >= 1; target: (N, 1, h, w) in {0, 1}."""
    y = torch.cat([1.0 - target, target], dim=1)  # (N, 2, h, w) one-hot
    s = alpha.sum(dim=1, keepdim=True)
    nll = (y * (torch.log(s) - torch.log(alpha))).sum(dim=1)  # (N, h, w)
    a_tilde = y + (1.0 - y) * alpha  # evidence for the wrong class only
    s_tilde = a_tilde.sum(dim=1)
    kl = (
        torch.lgamma(s_tilde) - math.lgamma(2.0) - torch.lgamma(a_tilde).sum(dim=1)
        + ((a_tilde - 1.0) * (torch.digamma(a_tilde) - torch.digamma(s_tilde).unsqueeze(1))).sum(dim=1)
    )
    return (nll + kl_weight * kl).mean()


def transition_weights(target: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-frame loss weights (B, L): `weight` where the sounding state changed against the
    previous frame (the target's foreground appeared or vanished), 1 elsewhere and at frame 0.

    target: (B, L, 1, h, w) in {0, 1}."""
    present = target.flatten(2).amax(dim=2) > 0.5  # (B, L)
    changed = torch.zeros_like(present)
    changed[:, 1:] = present[:, 1:] != present[:, :-1]
    return 1.0 + (weight - 1.0) * changed.float()


def consistency_loss(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |p_t - p_{t-1}| over the pixels whose target is the same at t-1 and t (what the
    flicker metric counts), so real starts and stops cost nothing. prob, target: (B, L, 1, h, w)."""
    if prob.shape[1] < 2:
        return prob.new_zeros(())
    stable = (target[:, 1:] == target[:, :-1]).to(prob.dtype)  # (B, L-1, 1, h, w)
    change = (prob[:, 1:] - prob[:, :-1]).abs()
    return (change * stable).sum() / stable.sum().clamp(min=1.0)


def frame_logits_of(out: TemporalOutput, size: tuple[int, int]) -> torch.Tensor:
    """The stage's mask logits at the frame's size, as the engine outputs them: (B, L, 1, H, W)."""
    b, length = out.mask_logits.shape[:2]
    return to_frame(out.mask_logits.flatten(0, 1), size).reshape(b, length, 1, *size)


def temporal_loss(out: TemporalOutput, target: torch.Tensor, section: TemporalSection,
                  kl_weight: float, target_full: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """out: stacked over time (B, L, ...); target: (B, L, 1, h, w) at the fused resolution.

    With `target_full` ((B, L, 1, H, W), ``[temporal] resolution = "full"``) the mask terms (BCE,
    soft IoU, consistency) are computed on the logits upsampled to the frame, against the
    full-resolution masks; the evidential term stays on the fused map, where the Dirichlet lives."""
    b, length = target.shape[:2]
    flat = lambda x: x.reshape(b * length, *x.shape[2:])  # noqa: E731  (B*L, C, h, w)
    w = transition_weights(target, section.transition_weight).reshape(b * length)  # (B*L,)
    w = w / w.mean()
    if target_full is None:
        logits, mask_target = out.mask_logits, target
    else:
        logits, mask_target = frame_logits_of(out, target_full.shape[-2:]), target_full.to(target.dtype)
    prob = torch.sigmoid(logits)
    y_mask = flat(mask_target)
    bce = (F.binary_cross_entropy_with_logits(flat(logits), y_mask, reduction="none").mean(dim=(1, 2, 3)) * w).mean()
    iou = soft_iou_loss(flat(prob), y_mask, w)
    steady = consistency_loss(prob, mask_target)
    mask = bce + iou + section.consistency_weight * steady
    parts = {"bce": bce.item(), "iou": iou.item(), "consistency": steady.item()}
    if out.alpha is None:
        return mask, parts
    edl = evidential_loss(flat(out.alpha), flat(target), kl_weight)
    return mask + section.edl_weight * edl, {**parts, "edl": edl.item()}


@torch.no_grad()
def cache_features(segmenter, clips, batch_clips: int = 4, progress: bool = True,
                   full_targets: bool = False, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Run the frozen segmenter over every clip once: the stage's inputs and 1/4-res targets.

    Returns {"fused": (N, L, C, h, w) float16, "frame_logits": (N, L, 1, h, w) float32 (the mask
    head on the full-precision map), "sounding_logit": (N, L), "audio": (N, L, D_a) the audio
    embedding, "target": (N, L, 1, h, w)}, and
    with `full_targets` also "target_full": (N, L, 1, H, W) bool, the masks at the frame's size.
    The segmenter runs on `device` (where it is); the cache is kept in CPU memory."""
    from tqdm import tqdm

    from streamavs.training.data import collate

    segmenter.eval()
    fused, logits, sounding, audio, targets, full = [], [], [], [], [], []
    for start in tqdm(range(0, len(clips), batch_clips), desc="caching features", disable=not progress, unit="batch"):
        batch = collate([clips[i] for i in range(start, min(start + batch_clips, len(clips)))])
        b, length = batch["frame"].shape[:2]
        out = segmenter(batch["frame"].flatten(0, 1).to(device), batch["log_mel"].flatten(0, 1).to(device))
        h, w = out.fused.shape[-2:]
        fused.append(out.fused.reshape(b, length, *out.fused.shape[1:]).half().cpu())  # (B, L, C, h, w)
        logits.append(segmenter.mask_head(out.fused).reshape(b, length, 1, h, w).cpu())
        sounding.append(out.sounding_logit.reshape(b, length).cpu())
        audio.append(out.audio.reshape(b, length, -1).cpu())
        small = F.interpolate(batch["mask"].flatten(0, 1), size=(h, w), mode="area")  # (B*L, 1, h, w)
        targets.append((small > 0.5).float().reshape(b, length, 1, h, w))
        if full_targets:
            full.append(batch["mask"] > 0.5)  # (B, L, 1, H, W)
    cache = {"fused": torch.cat(fused), "frame_logits": torch.cat(logits), "sounding_logit": torch.cat(sounding),
             "audio": torch.cat(audio), "target": torch.cat(targets)}
    if full_targets:
        cache["target_full"] = torch.cat(full)
    return cache


def keeps_frame_only_promise(metrics: dict[str, Any], start: dict[str, Any]) -> bool:
    """Whether a validation result is no worse than the start (`start`, epoch 0: frame-only, or the
    ``init_stage``) on each of the stage's transition targets: FPR just after silence, mIoU just
    after an onset, flicker. Under ``keep = "no_worse"`` an epoch that trades one of them for a
    higher score is never kept."""
    return (metrics["fpr_silenced"] <= start["fpr_silenced"] and metrics["flicker"] <= start["flicker"]
            and metrics["miou_started"] >= start["miou_started"])


def replaces_kept(keep: str, metrics: dict[str, Any], kept_score: float, start: dict[str, Any]) -> bool:
    """Whether an epoch's validation `metrics` replace the epoch kept so far (its ``val_score``
    `kept_score`) under ``[temporal] keep``: "last" always; "best_score" when it scores higher;
    "no_worse" when it scores higher and :func:`keeps_frame_only_promise` against `start`."""
    if keep == "last":
        return True
    if keep == "no_worse" and not keeps_frame_only_promise(metrics, start):
        return False
    return metrics["val_score"] > kept_score


def _run_stage(stage: TemporalStage, cache: dict[str, torch.Tensor], idx) -> TemporalOutput:
    """The stage over cached clips `idx`, on the stage's device."""
    device = stage.delta_head.weight.device
    audio = cache.get("audio")  # only a stage with the audio change reads it (and says so when it is missing)
    return stage.forward_clip(cache["fused"][idx].to(device).float(), cache["frame_logits"][idx].to(device),
                              cache["sounding_logit"][idx].to(device), None if audio is None else audio[idx].to(device))


def train_temporal(cfg: TrainConfig, out_dir: str | Path, *, device: str = "auto", progress: bool = True) -> dict:
    """Train the [temporal] stage of `cfg` on the frozen segmenter of [model].init_checkpoint."""
    from tqdm import tqdm

    from streamavs.errors import ConfigError
    from streamavs.model.checkpoint import load_model
    from streamavs.datasets.conditions import NegativeMix
    from streamavs.training.data import scene_config
    from streamavs.datasets.synthetic import SyntheticClips

    section = cfg.temporal
    if section is None or not cfg.model.init_checkpoint:
        raise ConfigError("temporal training needs a [temporal] section and [model] init_checkpoint = the segmenter")
    if cfg.data.kind not in ("synthetic", "real"):
        raise ConfigError(f"temporal training runs on composed clips ([data] kind = 'synthetic' or 'real'), got {cfg.data.kind!r}")
    out = Path(out_dir)
    check_recipe(cfg)
    check_run_folder(out)
    dev = resolve_device(device)
    limit_blas_threads(1)  # numpy matmuls in the audio front end: one thread beats contending with torch
    torch.manual_seed(cfg.seed)
    segmenter, seg_extra = load_model(cfg.model.init_checkpoint)
    check_segmenter_size(cfg, segmenter.config.image_size)
    out.mkdir(parents=True, exist_ok=True)
    for p in segmenter.parameters():
        p.requires_grad_(False)
    segmenter.to(dev)
    stage = TemporalStage(TemporalConfig(in_channels=segmenter.fused_channels, window=section.window,
                                         dim=section.dim, heads=section.heads, uncertainty=section.uncertainty,
                                         audio_dim=segmenter.config.audio_dim if section.audio_change else 0))
    started = (warm_start(stage, section.init_stage, segmenter, _recorded_path(section.init_stage))
               if section.init_stage else {})  # before the long caching
    stage.to(dev)

    scenes = dataclasses.replace(scene_config(cfg.data), seconds=section.clip_seconds)
    mix = NegativeMix(share=section.clip_negative_share)  # silence, off-screen and noise seconds
    t0 = time.perf_counter()
    if cfg.data.kind == "real":
        from streamavs.datasets.real import real_clips

        clips = lambda split, size, seed: real_clips(split, size, scenes, cfg.data.media, mix=mix, seed=seed)  # noqa: E731
    else:
        clips = lambda split, size, seed: SyntheticClips(split, size, scenes, mix=mix, seed=seed)  # noqa: E731
    full = section.resolution == "full"
    train = cache_features(segmenter, clips("train", cfg.data.train_clips, cfg.seed), progress=progress,
                           full_targets=full, device=dev)
    val = cache_features(segmenter, clips("val", cfg.data.val_clips, cfg.seed + 1), progress=progress,
                         full_targets=full, device=dev)
    cache_s = time.perf_counter() - t0

    optimizer = torch.optim.AdamW(stage.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    n = train["fused"].shape[0]
    log = (out / "log.jsonl").open("a")
    log.write(json.dumps({"event": "start", "config": cfg.to_dict(), "device": str(dev), "cache_seconds": cache_s,
                          **started}) + "\n")
    generator = torch.Generator().manual_seed(cfg.seed)
    history = [{"epoch": 0, **_validate(stage, val, section)}]  # the start: frame-only (or the init_stage) on the same clips
    log.write(json.dumps({"event": "eval", **history[0]}) + "\n")
    best = (history[0]["val_score"], 0, copy.deepcopy(stage.state_dict()))
    for epoch in range(cfg.optim.epochs):
        stage.train()
        kl_weight = min(1.0, (epoch + 1) / max(1, cfg.optim.epochs // 2))  # annealed, as in EDL
        order = torch.randperm(n, generator=generator)
        bar = tqdm(range(0, n, cfg.optim.batch_size), desc=f"temporal epoch {epoch + 1}/{cfg.optim.epochs}",
                   disable=not progress, unit="step")
        for start in bar:
            idx = order[start:start + cfg.optim.batch_size]
            result = _run_stage(stage, train, idx)
            loss, parts = temporal_loss(result, train["target"][idx].to(dev), section, kl_weight,
                                        train["target_full"][idx].to(dev) if full else None)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(stage.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            bar.set_postfix(loss=f"{loss.item():.4f}")
        val_metrics = _validate(stage, val, section)
        history.append({"epoch": epoch + 1, **val_metrics})
        log.write(json.dumps({"event": "eval", "epoch": epoch + 1, **val_metrics}) + "\n")
        log.flush()
        if replaces_kept(section.keep, val_metrics, best[0], history[0]):
            best = (val_metrics["val_score"], epoch + 1, copy.deepcopy(stage.state_dict()))
    stage.load_state_dict(best[2])
    saved_score = _validate(stage, val, section)["val_score"]  # of the stage written: the kept epoch's
    log.write(json.dumps({"event": "best", "epoch": best[1], "val_score": best[0], "saved_val_score": saved_score}) + "\n")
    log.close()
    model = StreamingSegmenter(segmenter, stage).cpu().eval()  # checkpoints hold CPU tensors
    train_config = cfg.to_dict()
    if section.init_stage:
        train_config["temporal"]["init_stage"] = started["init_stage"]  # as recorded: no machine's layout
    save_streaming_checkpoint(out / "temporal.pt", model, {
        "train_config": train_config,
        **({"temporal_start": started} if started else {}),
        "segmenter_checkpoint": _recorded_path(cfg.model.init_checkpoint),
        "segmenter_train_config": seg_extra.get("train_config"),  # the data the segmenter learned from
        "segmenter_provenance": seg_extra.get("provenance", "trained by this project's recipe (segmenter_train_config)"),
        "metrics": seg_extra.get("metrics", {}),
        "temporal_history": history,
        "temporal_best_epoch": best[1],
        "temporal_saved_val_score": saved_score,  # validated again after the kept weights were restored
    })
    return {}


def _recorded_path(path: str | Path) -> str:
    """How a checkpoint names the segmenter it was trained on: as given when relative (runs/x/best.pt);
    an absolute path keeps only its run folder and file, so no machine's layout lands in an engine."""
    path = Path(path)
    return path.as_posix() if not path.is_absolute() else f"{path.parent.name}/{path.name}"


@torch.no_grad()
def _validate(stage: TemporalStage, val: dict[str, torch.Tensor], section: TemporalSection) -> dict[str, Any]:
    """Loss and temporal metrics on the cached validation clips, at the fused resolution or, with
    ``[temporal] resolution = "full"``, at the frame's (the logits upsampled as the engine does)."""
    import numpy as np

    from streamavs.metrics import TemporalMeter, frame_metrics, transition_flags

    stage.eval()
    meter = TemporalMeter()
    losses, ious, fprs = [], [], []
    for start in range(0, val["fused"].shape[0], 8):
        idx = slice(start, start + 8)
        target = val["target"][idx]
        target_full = val["target_full"][idx] if section.resolution == "full" else None  # cached when "full"
        out = TemporalOutput(*(None if x is None else x.cpu() for x in _run_stage(stage, val, idx)))
        losses.append(temporal_loss(out, target, section, 1.0, target_full)[0].item())
        if target_full is None:
            gt, prob = target[:, :, 0].numpy() > 0.5, out.mask_prob[:, :, 0].numpy()  # (B, L, h, w)
        else:
            gt = target_full[:, :, 0].numpy()  # (B, L, H, W)
            prob = torch.sigmoid(frame_logits_of(out, target_full.shape[-2:]))[:, :, 0].numpy()
        for b in range(gt.shape[0]):
            present = gt[b].reshape(gt.shape[1], -1).any(axis=1)  # (L,) something sounds in frame t
            meter.update(prob[b], gt[b], *transition_flags(present))
            per_frame = frame_metrics(prob[b], gt[b], 0.5)
            ious += per_frame["iou"][present].tolist()
            fprs += per_frame["fpr"][~present].tolist()
    miou = 100.0 * float(np.mean(ious)) if ious else 0.0
    fpr = float(np.mean(fprs)) if fprs else 0.0
    return {"val_loss": float(np.mean(losses)), "val_miou": miou, "val_fpr": fpr, "val_score": miou - 100.0 * fpr, **meter.result()}
