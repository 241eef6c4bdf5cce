"""Real training steps on tiny configurations: one process, resume, DDP on two CPU processes, temporal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from streamavs.errors import ConfigError
from streamavs.training.config import load_config, parse_set
from tiny_training import REPO, TINY
from tiny_training import SEGMENTER_RECIPE as RECIPE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _events(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_recipes_parse_and_typos_are_errors(tmp_path):
    for recipe in (REPO / "training" / "configs").glob("*.toml"):
        load_config(recipe)
    bad = tmp_path / "bad.toml"
    bad.write_text(RECIPE.read_text().replace("lambda_sim", "lamda_sim"))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['lamda_sim'\] in \[loss\]"):
        load_config(bad)
    assert parse_set(["optim.lr=0.5", "data.setting=multi"]) == {"optim.lr": 0.5, "data.setting": "multi"}


def test_lr_schedules():
    from streamavs.training.config import OptimSection, lr_factor

    constant = OptimSection()
    assert [lr_factor(constant, s, 10) for s in (0, 5, 9)] == [1.0, 1.0, 1.0]
    cosine = OptimSection(lr_schedule="cosine", lr_final_scale=0.01)
    f = [lr_factor(cosine, s, 11) for s in range(11)]
    assert f[0] == pytest.approx(1.0) and f[5] == pytest.approx(0.505) and f[10] == pytest.approx(0.01)
    assert all(a > b for a, b in zip(f, f[1:]))
    warm = OptimSection(warmup_steps=4)
    assert [lr_factor(warm, s, 10) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    with pytest.raises(ConfigError, match="lr_schedule"):
        OptimSection(lr_schedule="step")


def test_eval_defaults_score_a_checkpoint_as_its_engine():
    """[eval] defaults are the engine evaluation's batch size and a manifest's default thresholds."""
    from streamavs.engine.manifest import Thresholds
    from streamavs.evaluation import BATCH_SIZE
    from streamavs.training.config import EvalSection

    e, t = EvalSection(), Thresholds()
    assert (e.batch_size, e.threshold, e.gate_threshold) == (BATCH_SIZE, t.mask, t.gate)


def test_train_evaluates_and_resumes_from_the_saved_step(tmp_path):
    from streamavs.training.trainer import train

    cfg = load_config(RECIPE, {**TINY, "optim.lr_schedule": "cosine"})
    run = tmp_path / "run"
    train(cfg, run, max_steps=3, progress=False)  # 5 steps per epoch: stop inside epoch 1
    stopped = torch.load(run / "last.pt", weights_only=False)
    assert stopped["run_state"]["global_step"] == 3 and stopped["run_state"]["step_in_epoch"] == 3
    with pytest.raises(ConfigError, match="--resume"):
        train(cfg, run, progress=False)  # refuses to overwrite a run silently

    table = train(cfg, run, resume=True, progress=False)
    final = torch.load(run / "last.pt", weights_only=False)
    assert final["run_state"]["global_step"] == 10  # 3 + 7 more, not 3 + 10
    assert final["run_state"]["epoch"] == 2
    for cond in ("positive", "silence", "noise", "offscreen"):
        assert table["gate_off"][cond]["n"] == 5
    assert (run / "best.pt").exists()
    events = _events(run)
    assert [e["event"] for e in events].count("eval") == 2
    resumed = [e for e in events if e["event"] == "start"][-1]
    assert resumed["resume"] is True and resumed["state"]["global_step"] == 3
    # The cosine schedule continued across the resume: the last step ran at lr_final_scale * lr.
    assert final["optimizer"]["param_groups"][0]["lr"] == pytest.approx(cfg.optim.lr * cfg.optim.lr_final_scale)


@pytest.mark.slow  # real-time pace / two processes: runs in the slow CI step
def test_ddp_two_cpu_processes(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    assert torchrun, "torchrun comes with torch"
    sets = [f"--set={k}={json.dumps(v) if not isinstance(v, dict) else '{backbone_pretrained = false}'}"
            for k, v in TINY.items()]
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "streamavs", "train",
         "--config", str(RECIPE), "--out", str(run), "--device", "cpu", *sets],
        capture_output=True, text=True, timeout=240, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = _events(run)
    assert events[0]["world_size"] == 2
    ckpt = torch.load(run / "last.pt", weights_only=False)
    # 10 samples, 2 processes, batch 2 per process -> 2 steps per epoch, 2 epochs
    assert ckpt["run_state"]["global_step"] == 4
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])  # saved unwrapped


@pytest.mark.parametrize(("keep", "resolution", "audio_change"),
                         [("best_score", "fused", False), ("no_worse", "full", False), ("last", "fused", True)])
def test_temporal_stage_trains_on_a_frozen_segmenter(tmp_path, keep, resolution, audio_change):
    from streamavs.model.streaming import load_streaming
    from streamavs.training.temporal_trainer import replaces_kept, train_temporal
    from streamavs.training.trainer import train

    seg_run = tmp_path / "seg"
    train(load_config(RECIPE, {**TINY, "optim.epochs": 1}), seg_run, progress=False)
    cfg = load_config(REPO / "training" / "configs" / "synthetic_temporal_full.toml", {
        "model.init_checkpoint": str(seg_run / "last.pt"),
        "data.image_size": 64, "data.train_clips": 4, "data.val_clips": 2,
        "optim.epochs": 2, "optim.batch_size": 2, "temporal.clip_seconds": 3, "temporal.keep": keep,
        "temporal.resolution": resolution, "temporal.audio_change": audio_change,
    })
    train_temporal(cfg, tmp_path / "temporal", progress=False)
    model, extra = load_streaming(tmp_path / "temporal" / "temporal.pt")
    assert model.temporal is not None and model.temporal.config.window == 5
    assert model.temporal.config.audio_dim == (model.segmenter.config.audio_dim if audio_change else 0)
    assert [h["epoch"] for h in extra["temporal_history"]] == [0, 1, 2]  # epoch 0: the identity (frame-only)
    history = extra["temporal_history"]
    kept = history[0]
    for h in history[1:]:
        kept = h if replaces_kept(keep, h, kept["val_score"], history[0]) else kept
    assert extra["temporal_best_epoch"] == kept["epoch"]  # the epoch the rule keeps (replaces_kept: its own test)
    assert extra["temporal_saved_val_score"] == kept["val_score"]  # the weights written are that epoch's
    delta_weights = [p for name, p in model.temporal.named_parameters() if name.startswith("delta_head.")]
    assert delta_weights and all(torch.count_nonzero(p) == 0 for p in delta_weights) == (kept["epoch"] == 0)
    before = torch.load(seg_run / "last.pt", weights_only=False)["state_dict"]
    after = model.segmenter.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the segmenter stayed frozen
    frame = torch.zeros(1, 64, 64, 3, dtype=torch.uint8)
    prob, unc, sounding, cache = model(frame, torch.zeros(1, 1, 96, 64), model.initial_cache())
    assert prob.shape == (1, 1, 64, 64) and cache.shape == model.cache_shape()


def test_no_worse_rule_refuses_an_epoch_worse_on_any_transition_target():
    from streamavs.training.temporal_trainer import keeps_frame_only_promise

    frame_only = {"fpr_silenced": 0.002, "flicker": 0.010, "miou_started": 46.0}
    assert keeps_frame_only_promise(dict(frame_only), frame_only)  # equal is no worse
    assert keeps_frame_only_promise({"fpr_silenced": 0.001, "flicker": 0.009, "miou_started": 47.0}, frame_only)
    for key, worse in (("fpr_silenced", 0.0021), ("flicker", 0.0101), ("miou_started", 45.9)):
        assert not keeps_frame_only_promise({**frame_only, key: worse}, frame_only), key


def test_a_gated_stage_trained_from_an_ablation_starts_as_it(tmp_path, monkeypatch):
    """[temporal] init_stage through the trainer: the gated run starts with the ablation's mask
    logits (a learning rate of 1e-12 keeps it there for the one epoch saved) and its validation
    results, and records where it started as given (relative), with the open gate."""
    from streamavs.model.streaming import load_streaming
    from streamavs.training.temporal_trainer import train_temporal
    from streamavs.training.trainer import train

    train(load_config(RECIPE, {**TINY, "optim.epochs": 1}), tmp_path / "seg", progress=False)
    stage = {"model.init_checkpoint": str(tmp_path / "seg" / "last.pt"), "data.image_size": 64,
             "data.train_clips": 4, "data.val_clips": 2, "optim.batch_size": 2, "temporal.clip_seconds": 3}
    configs = REPO / "training" / "configs"
    train_temporal(load_config(configs / "synthetic_temporal_attention_only.toml", {**stage, "optim.epochs": 2}),
                   tmp_path / "att", progress=False)
    _, att = load_streaming(tmp_path / "att" / "temporal.pt")
    kept = att["temporal_history"][att["temporal_best_epoch"]]
    monkeypatch.chdir(tmp_path)  # a relative init_stage is recorded as given
    train_temporal(load_config(configs / "synthetic_temporal_full.toml", {
        **stage, "optim.epochs": 1, "optim.lr": 1e-12, "temporal.init_stage": "att/temporal.pt", "temporal.keep": "last"}),
        tmp_path / "full", progress=False)
    gated, full = load_streaming(tmp_path / "full" / "temporal.pt")
    ablation, _ = load_streaming(tmp_path / "att" / "temporal.pt")
    g = torch.Generator().manual_seed(0)
    inputs = (torch.randn(1, 3, ablation.segmenter.fused_channels, 4, 4, generator=g),
              torch.randn(1, 3, 1, 4, 4, generator=g), torch.randn(1, 3, generator=g))
    with torch.no_grad():
        want, got = ablation.temporal.forward_clip(*inputs), gated.temporal.forward_clip(*inputs)
    assert (want.mask_logits - inputs[1]).abs().max() > 1e-3  # the trained ablation changes the frame's logits
    torch.testing.assert_close(got.mask_logits, want.mask_logits, atol=1e-5, rtol=1e-5)
    start = full["temporal_history"][0]
    for key in ("val_miou", "val_fpr", "miou_started", "fpr_silenced", "flicker"):
        assert start[key] == pytest.approx(kept[key], rel=1e-4, abs=1e-6), key
    assert full["temporal_best_epoch"] == 1  # keep = "last"
    assert full["train_config"]["temporal"]["init_stage"] == "att/temporal.pt"
    assert full["temporal_start"]["open_gate"]["u0"] == pytest.approx(3.0 / 13.0)


def test_each_keep_rule_replaces_the_kept_epoch_as_documented():
    from streamavs.training.temporal_trainer import replaces_kept

    start = {"val_score": 50.0, "fpr_silenced": 0.002, "flicker": 0.010, "miou_started": 46.0}
    higher_but_flickers = {**start, "val_score": 52.0, "flicker": 0.011}
    higher_and_no_worse = {**start, "val_score": 51.0}
    worst = {**start, "val_score": 40.0}
    assert replaces_kept("best_score", higher_but_flickers, 50.0, start)
    assert not replaces_kept("no_worse", higher_but_flickers, 50.0, start)
    assert replaces_kept("no_worse", higher_and_no_worse, 50.0, start)
    assert not replaces_kept("best_score", worst, 50.0, start) and not replaces_kept("no_worse", worst, 50.0, start)
    assert replaces_kept("last", worst, 50.0, start)  # the final epoch, however it scores


def test_full_resolution_validation_measures_what_the_engine_outputs():
    """With resolution = "full" the validation cuts the logits upsampled to the frame (as the
    engine does) against full-size masks: for the identity stage that is frame-only at full size."""
    import numpy as np

    from streamavs.metrics import TemporalMeter, frame_metrics, transition_flags
    from streamavs.model.resize import to_frame
    from streamavs.model.temporal import TemporalConfig, TemporalStage
    from streamavs.training.config import TemporalSection
    from streamavs.training.temporal_trainer import _validate

    g = torch.Generator().manual_seed(0)
    n, length, c, h, size = 3, 4, 8, 8, 32
    frame_logits = 2.0 * torch.randn(n, length, 1, h, h, generator=g)
    target_full = torch.rand(n, length, 1, size, size, generator=g) > 0.6
    target_full[:, 1] = False  # a silent second: transitions on both sides
    val = {"fused": torch.randn(n, length, c, h, h, generator=g).half(), "frame_logits": frame_logits,
           "sounding_logit": torch.randn(n, length, generator=g), "target_full": target_full,
           "target": torch.nn.functional.interpolate(target_full.flatten(0, 1).float(), size=(h, h), mode="area")
           .gt(0.5).float().reshape(n, length, 1, h, h)}
    stage = TemporalStage(TemporalConfig(in_channels=c, window=3, dim=8, heads=2))  # untrained: the identity
    got = _validate(stage, val, TemporalSection(resolution="full"))
    prob = torch.sigmoid(to_frame(frame_logits.flatten(0, 1), (size, size))).reshape(n, length, size, size).numpy()
    gt = target_full[:, :, 0].numpy()
    meter, ious = TemporalMeter(), []
    for b in range(n):
        present = gt[b].reshape(length, -1).any(axis=1)
        meter.update(prob[b], gt[b], *transition_flags(present))
        ious += frame_metrics(prob[b], gt[b], 0.5)["iou"][present].tolist()
    expected = meter.result()
    for key in ("miou_started", "fpr_silenced", "flicker", "n_stable"):
        assert got[key] == pytest.approx(expected[key]), key
    assert got["n_stable"] > (size * size) and got["val_miou"] == pytest.approx(100.0 * np.mean(ious))
    fused = _validate(stage, val, TemporalSection())  # the same clips at the fused size count other pixels
    assert fused["n_stable"] < got["n_stable"]
