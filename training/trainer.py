"""The segmenter training loop: AdamW, AMP on CUDA, clipping, DDP, eval per epoch, atomic checkpoints.

Files in the run folder:
- ``last.pt``: written at the end of every epoch and when a run stops early (``max_steps``); holds
  the model, the optimizer (and the AMP loss scale), the epoch and the step inside it, so ``--resume``
  continues exactly; it refuses a recipe that differs from the saved one (see RESUMABLE_KEYS).
- ``best.pt``: the checkpoint with the highest G-mIoU (similarity gate off) so far.
- ``log.jsonl``: one JSON object per line: the config, step losses, epoch evaluations.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader

from streamavs.errors import ConfigError
from streamavs.model.checkpoint import save_checkpoint
from streamavs.threads import limit_blas_threads
from streamavs.training.config import SECTIONS, TrainConfig, lr_factor, toml_literal
from streamavs.training.distributed import World, close_world, init_world

if TYPE_CHECKING:
    from streamavs.model.config import ModelConfig

# What a resumed run may change in its recipe: how long it trains (optim.epochs; a cosine schedule then
# stretches from the saved step on), how it is evaluated ([eval], and data.val_clips, which builds only the
# validation set), how its samples are loaded (data.num_workers: the same samples in the same order) and its
# name (only the default --out). Any other key changes the model, the optimizer's parameter groups, the loss
# or the batches that the saved step counts: resuming under it would mix two runs.
RESUMABLE_KEYS = ("optim.epochs", "data.val_clips", "data.num_workers", "name")
RESUMABLE_SECTIONS = ("eval",)
# ModelConfig fields that only say where a new model's first weights come from; model.init_checkpoint
# replaces them all, so a recipe may give them whatever the checkpoint says.
WEIGHT_SOURCES = ("backbone_pretrained", "backbone_checkpoint", "audio_checkpoint")
_ABSENT = "(absent)"


@dataclass
class RunState:
    epoch: int = 0  # epoch in progress (0-based)
    step_in_epoch: int = 0  # optimizer steps already taken in that epoch
    global_step: int = 0
    best_gmiou: float = -math.inf


class JsonLog:
    """Append-only JSON-lines log; only the main process writes."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, event: str, **fields: Any) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps({"event": event, "time": time.time(), **fields}, default=float) + "\n")


def build_model(cfg: TrainConfig):
    from streamavs.model.checkpoint import load_model
    from streamavs.model.registry import create_model

    if cfg.model.init_checkpoint:
        model, _ = load_model(cfg.model.init_checkpoint)
        _check_init_checkpoint(cfg, model.config)
        return model
    return create_model(cfg.model.name, image_size=cfg.data.image_size, **cfg.model.overrides)


def _check_init_checkpoint(cfg: TrainConfig, saved: ModelConfig) -> None:
    """ConfigError unless the recipe describes the model of [model] init_checkpoint (`saved`, its
    ModelConfig): the weights train as they are, at the checkpoint's image size, so a recipe value that
    differs would be ignored while recorded as used, and the run would train on other-size frames."""
    from streamavs.model.registry import model_config

    wanted = model_config(cfg.model.name, image_size=cfg.data.image_size, **cfg.model.overrides)
    label = {"name": "model.name", "image_size": "data.image_size"}
    keys = ["name", "image_size", *(k for k in cfg.model.overrides if k not in WEIGHT_SOURCES)]
    diffs = [f"{label.get(k, f'model.overrides.{k}')} = {toml_literal(getattr(wanted, k))} here, "
             f"{toml_literal(getattr(saved, k))} in the checkpoint"
             for k in keys if getattr(wanted, k) != getattr(saved, k)]
    if diffs:
        raise ConfigError(
            f"[model] init_checkpoint {cfg.model.init_checkpoint} holds another model than the recipe describes: "
            f"{'; '.join(diffs)}; set {'it' if len(diffs) == 1 else 'them'} to the checkpoint's value in the recipe, "
            "or drop init_checkpoint to train a new model"
        )


def freeze_visual(model: torch.nn.Module) -> None:
    """Freeze the visual encoder: no gradients and fixed BatchNorm statistics.

    With ImageNet features frozen, backward stops at the neck, which makes a CPU epoch about
    3x cheaper; the synthetic recipes use it (backbone_lr_scale = 0)."""
    for p in model.visual.parameters():
        p.requires_grad_(False)
    model.visual.eval()


def freeze_unused(model: torch.nn.Module, cfg: TrainConfig) -> None:
    """Freeze the parts no loss reaches: the similarity head when lambda_sim = 0 (and the audio encoder
    too when the model has no fusion).

    DDP expects a gradient for every trainable parameter and fails on the next step otherwise.
    Freezing keeps DDP's cheap static reduction, where find_unused_parameters would walk the autograd
    graph on every step, and leaves the weights exactly as before: AdamW skips parameters without a
    gradient. Call it after make_optimizer: the parameters stay in its groups, so the optimizer state
    keeps the layout of earlier runs and of their checkpoints."""
    if cfg.loss.lambda_sim > 0:
        return
    unused = [model.similarity_head] + ([model.audio] if model.config.fusion == "none" else [])
    for module in unused:
        module.requires_grad_(False)


def _param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """Pretrained visual encoder at lr * backbone_lr_scale, everything else at lr."""
    backbone, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (backbone if name.startswith("visual.") else rest).append(p)
    lr = cfg.optim.lr
    groups = [{"params": rest, "lr": lr}]
    if backbone:
        groups.append({"params": backbone, "lr": lr * cfg.optim.backbone_lr_scale})
    return groups


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = _param_groups(model, cfg)
    cls = torch.optim.AdamW if cfg.optim.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Train the segmenter of `cfg`; returns the last evaluation table (gate off and on).

    max_steps: stop this invocation after that many optimizer steps (saving last.pt), e.g. to
    split a long run over sessions; --resume continues from the saved step.
    device: "auto" | "cpu" | "cuda" | "cuda:N" (under torchrun "cuda" is each process's own GPU).
    """
    if max_steps is not None and max_steps < 1:
        raise ConfigError(f"max_steps must be >= 1 optimizer step, got {max_steps}; "
                          "pass None to train the whole recipe")
    limit_blas_threads(1)  # numpy matmuls in the audio front end: one thread beats contending with torch
    world = init_world(device)
    try:  # every process leaves the process group, also when it refuses the run
        return _run(cfg, Path(out_dir), world, resume=resume, max_steps=max_steps, progress=progress)
    finally:
        close_world(world)


def _run(cfg: TrainConfig, out: Path, world: World, *, resume: bool, max_steps: int | None,
         progress: bool) -> dict[str, Any]:  # fmt: skip
    """The run of train(), on every process of `world`."""
    from tqdm import tqdm

    from streamavs.training.data import build_datasets, build_sampler, collate
    from streamavs.training.evaluate import evaluate
    from streamavs.training.losses import LossConfig, total_loss

    if world.from_main(not resume and (out / "last.pt").exists()):  # every process refuses, not rank 0 alone
        raise ConfigError(
            f"{out} already holds a run (last.pt); pass --resume to continue it or choose another --out"
        )
    train_set, eval_set = build_datasets(cfg)
    sampler = build_sampler(train_set, world.size, world.rank, cfg.seed)
    _check_one_batch(len(sampler), len(train_set), world, cfg)
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
    world.barrier()
    torch.manual_seed(cfg.seed)
    log = JsonLog(out / "log.jsonl", world.is_main)

    model = build_model(cfg).to(world.device)
    frozen = cfg.optim.backbone_lr_scale == 0
    if frozen:
        freeze_visual(model)
    optimizer = make_optimizer(model, cfg)
    freeze_unused(model, cfg)  # after the optimizer (see freeze_unused)
    base_lrs = [group["lr"] for group in optimizer.param_groups]  # what the schedule scales
    use_amp = cfg.optim.amp and world.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    state = _restore(out / "last.pt", cfg, model, optimizer, scaler) if resume else RunState()
    log.write("start", config=cfg.to_dict(), world_size=world.size, resume=resume, state=vars(state))

    net = model
    if world.size > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[world.local_rank] if world.device.type == "cuda" else None
        )

    loader = DataLoader(
        train_set,
        batch_size=cfg.optim.batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.data.num_workers,
        drop_last=True,
    )
    loss_cfg = LossConfig(lambda_sim=cfg.loss.lambda_sim, dice_weight=cfg.loss.dice_weight)

    steps_this_run = 0
    total_steps = cfg.optim.epochs * len(loader)
    if resume and state.global_step:
        _note_resumed_lr(log, optimizer, base_lrs, cfg, state.global_step, total_steps,
                         show=progress and world.is_main)
    table: dict[str, Any] = {}
    for epoch in range(state.epoch, cfg.optim.epochs):
        sampler.set_epoch(epoch)
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        net.train()
        if frozen:
            model.visual.eval()
        bar = tqdm(
            total=len(loader), initial=state.step_in_epoch, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}",
            disable=not (progress and world.is_main), unit="step",
        )
        t0, seen = time.perf_counter(), 0
        for i, batch in enumerate(loader):
            if i < state.step_in_epoch:  # resuming inside an epoch: same order, skip what was done
                continue
            batch = {k: v.to(world.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            with torch.autocast(world.device.type, enabled=use_amp):
                output = net(batch["frame"], batch["log_mel"])
                loss, parts = total_loss(output, batch, loss_cfg)
            optimizer.zero_grad(set_to_none=True)
            factor = lr_factor(cfg.optim, state.global_step, total_steps)
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * factor
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            state.step_in_epoch += 1
            state.global_step += 1
            steps_this_run += 1
            seen += batch["frame"].shape[0] * world.size
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{loss.item():.4f}", samples_s=f"{rate:.1f}")
            bar.update(1)
            if state.global_step % 10 == 0:
                log.write("step", step=state.global_step, epoch=epoch, loss=loss.item(), lr=factor * cfg.optim.lr,
                          **{k: float(v) for k, v in parts.items()}, samples_per_s=rate)
            if max_steps is not None and steps_this_run >= max_steps:
                bar.close()
                _save(out / "last.pt", model, optimizer, scaler, state, cfg, world)
                log.write("stopped", step=state.global_step, reason="max_steps")
                return table
        bar.close()
        state.epoch, state.step_in_epoch = epoch + 1, 0

        if (epoch + 1) % cfg.eval.every_epochs == 0 or epoch + 1 == cfg.optim.epochs:
            if world.is_main:
                table = evaluate(model, eval_set, cfg.eval, device=world.device, progress=progress)
                gmiou = table["gate_off"]["global"]["g_miou"]
                log.write("eval", epoch=epoch + 1, step=state.global_step, table=table)
                if not math.isnan(gmiou) and gmiou > state.best_gmiou:
                    state.best_gmiou = gmiou
                    _save(out / "best.pt", model, optimizer, scaler, state, cfg, world, table)
            world.barrier()
        _save(out / "last.pt", model, optimizer, scaler, state, cfg, world, table)
    log.write("done", step=state.global_step, best_gmiou=state.best_gmiou)
    return table


def _check_one_batch(per_process: int, total: int, world: World, cfg: TrainConfig) -> None:
    """ConfigError when a process has fewer samples than one batch: with drop_last no step would run,
    and the run would still write an untrained best.pt."""
    if per_process < cfg.optim.batch_size:
        raise ConfigError(
            f"{per_process} training samples per process ({total} samples / {world.size} process"
            f"{'es' if world.size > 1 else ''}) < optim.batch_size {cfg.optim.batch_size}: no full batch, so no "
            "step would run; lower optim.batch_size or raise data.train_clips"
        )


def _save(path, model, optimizer, scaler, state, cfg, world: World, table=None) -> None:
    if not world.is_main:
        return
    extra = {
        "optimizer": optimizer.state_dict(),
        "run_state": vars(state).copy(),
        "train_config": cfg.to_dict(),
        "metrics": table or {},
    }
    if scaler.is_enabled():  # AMP: the loss scale it has learned (checkpoints without it start a new one)
        extra["scaler"] = scaler.state_dict()
    save_checkpoint(path, model, extra)


def _note_resumed_lr(log: JsonLog, optimizer, base_lrs: list[float], cfg: TrainConfig, step: int,
                     total_steps: int, *, show: bool) -> None:
    """Log (and print) the learning rate a resumed run starts at next to the saved run's last one.

    The schedule is a function of the step and optim.epochs, so raising optim.epochs on a cosine
    schedule stretches it from the saved step on: the rate jumps up (e.g. from the final 1% back to
    half the base rate). That is what the user asked for, but it should not pass unseen.
    """
    main = max(range(len(base_lrs)), key=base_lrs.__getitem__)  # the group at the full base rate
    saved = float(optimizer.param_groups[main]["lr"])  # loaded from last.pt: its last step's rate
    resumed = base_lrs[main] * lr_factor(cfg.optim, step, total_steps)
    log.write("resume_lr", step=step, saved_lr=saved, resumed_lr=resumed)
    if show and abs(resumed - saved) > 0.05 * saved:
        from tqdm import tqdm

        tqdm.write(f"--resume: the learning rate goes from {saved:.3g} (the saved run's last step) to {resumed:.3g} "
                   f"at step {step}: optim.epochs = {cfg.optim.epochs} stretches the {cfg.optim.lr_schedule} schedule")


def _restore(path: Path, cfg: TrainConfig, model, optimizer, scaler) -> RunState:
    """Load last.pt into the model, optimizer and AMP scaler; ConfigError if it was written under another recipe."""
    if not path.is_file():
        raise ConfigError(f"--resume: no checkpoint at {path}; start without --resume")
    from streamavs.model.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)  # weights_only; tensors land on the CPU and load_state_dict moves them
    missing = [key for key in ("train_config", "optimizer", "run_state") if key not in ckpt]
    if missing:
        raise ConfigError(f"--resume: {path} has no {missing}: it is not the last.pt of a `streamavs train` run; "
                          "start a new run with another --out")
    changes = recipe_changes(ckpt["train_config"], cfg)
    if changes:
        allowed = ", ".join([*RESUMABLE_KEYS, *(f"[{s}]" for s in RESUMABLE_SECTIONS)])
        raise ConfigError(
            f"--resume: the recipe differs from the one {path} was trained with ({'; '.join(changes)}); only "
            f"{allowed} may change: resume with the saved recipe, or start a new run with another --out"
        )
    try:
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scaler.is_enabled() and "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        state = RunState(**ckpt["run_state"])
    except (RuntimeError, ValueError, TypeError, KeyError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ConfigError(f"--resume: {path} does not fit the model and optimizer this recipe builds ({reason}); "
                          "start a new run with another --out") from exc
    if state.epoch > cfg.optim.epochs:
        raise ConfigError(f"--resume: {path} has finished {state.epoch} epochs, more than optim.epochs = "
                          f"{cfg.optim.epochs}; raise optim.epochs to train on")
    return state


def recipe_changes(saved: dict[str, Any], current: TrainConfig) -> list[str]:
    """`key: old -> new` for each recipe value of `current` that differs from the `saved` recipe
    (TrainConfig.to_dict() of a checkpoint), leaving out the ones a resumed run may change."""
    try:
        saved = TrainConfig.from_dict(saved).to_dict()  # keys added since take their defaults
    except ConfigError:
        pass  # written by another version: compared as it is, a key this version lacks shows as a change
    old, new = _flat(saved), _flat(current.to_dict())
    keys = [k for k in sorted(old.keys() | new.keys()) if k not in RESUMABLE_KEYS
            and k.split(".")[0] not in RESUMABLE_SECTIONS]
    return [f"{k}: {_show(old, k)} -> {_show(new, k)}" for k in keys if old.get(k, _ABSENT) != new.get(k, _ABSENT)]


def _show(recipe: dict[str, Any], key: str) -> str:
    return toml_literal(recipe[key]) if key in recipe else _ABSENT


def _flat(recipe: dict[str, Any]) -> dict[str, Any]:
    """{"optim.lr": 0.001, ..., "seed": 0}: one dotted key per recipe value."""
    out: dict[str, Any] = {}
    for key, value in recipe.items():
        if key in SECTIONS and isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out
