"""The segmenter training loop: AdamW, AMP on CUDA, clipping, DDP, eval per epoch, atomic checkpoints.

Files in the run folder:
- ``last.pt``: written at the end of every epoch and when a run stops early (``max_steps``); holds
  the model, the optimizer, the epoch and the step inside it, so ``--resume`` continues exactly.
- ``best.pt``: the checkpoint with the highest G-mIoU (similarity gate off) so far.
- ``log.jsonl``: one JSON object per line: the config, step losses, epoch evaluations.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from streamavs.errors import ConfigError
from streamavs.model.checkpoint import save_checkpoint
from streamavs.threads import limit_blas_threads
from streamavs.training.config import TrainConfig, lr_factor
from streamavs.training.distributed import World, close_world, init_world


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
        return model
    return create_model(cfg.model.name, image_size=cfg.data.image_size, **cfg.model.overrides)


def freeze_visual(model: torch.nn.Module) -> None:
    """Freeze the visual encoder: no gradients and fixed BatchNorm statistics.

    With ImageNet features frozen, backward stops at the neck, which makes a CPU epoch about
    3x cheaper; the synthetic recipes use it (backbone_lr_scale = 0)."""
    for p in model.visual.parameters():
        p.requires_grad_(False)
    model.visual.eval()


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
    """
    from tqdm import tqdm

    from streamavs.training.data import build_datasets, build_sampler, collate
    from streamavs.training.evaluate import evaluate
    from streamavs.training.losses import LossConfig, total_loss

    limit_blas_threads(1)  # numpy matmuls in the audio front end: one thread beats contending with torch
    world = init_world(device)
    out = Path(out_dir)
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
    base_lrs = [group["lr"] for group in optimizer.param_groups]  # what the schedule scales
    state = RunState()
    if resume:
        state = _restore(out / "last.pt", model, optimizer, world)
    elif world.is_main and (out / "last.pt").exists():
        raise ConfigError(
            f"{out} already holds a run (last.pt); pass --resume to continue it or choose another --out"
        )
    log.write("start", config=cfg.to_dict(), world_size=world.size, resume=resume, state=vars(state))

    net = model
    if world.size > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[world.local_rank] if world.device.type == "cuda" else None
        )

    train_set, eval_set = build_datasets(cfg)
    sampler = build_sampler(train_set, world.size, world.rank, cfg.seed)
    loader = DataLoader(
        train_set,
        batch_size=cfg.optim.batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.data.num_workers,
        drop_last=True,
    )
    loss_cfg = LossConfig(lambda_sim=cfg.loss.lambda_sim, dice_weight=cfg.loss.dice_weight)
    use_amp = cfg.optim.amp and world.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    steps_this_run = 0
    total_steps = cfg.optim.epochs * len(loader)
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
                _save(out / "last.pt", model, optimizer, state, cfg, world)
                log.write("stopped", step=state.global_step, reason="max_steps")
                close_world(world)
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
                    _save(out / "best.pt", model, optimizer, state, cfg, world, table)
            world.barrier()
        _save(out / "last.pt", model, optimizer, state, cfg, world, table)
    log.write("done", step=state.global_step, best_gmiou=state.best_gmiou)
    close_world(world)
    return table


def _save(path, model, optimizer, state, cfg, world: World, table=None) -> None:
    if not world.is_main:
        return
    save_checkpoint(
        path,
        model,
        {
            "optimizer": optimizer.state_dict(),
            "run_state": vars(state).copy(),
            "train_config": cfg.to_dict(),
            "metrics": table or {},
        },
    )


def _restore(path: Path, model, optimizer, world: World) -> RunState:
    if not path.is_file():
        raise ConfigError(f"--resume: no checkpoint at {path}; start without --resume")
    from streamavs.model.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)  # weights_only; tensors land on the CPU and load_state_dict moves them
    model.load_state_dict(ckpt["state_dict"])
    optimizer.load_state_dict(ckpt["optimizer"])
    return RunState(**ckpt["run_state"])
