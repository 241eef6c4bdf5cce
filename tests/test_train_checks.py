"""What `streamavs train` refuses, and the runs it no longer breaks: a resume under another recipe, an
init checkpoint of another model, too little data for one batch, out-of-range recipe values, unknown
devices and step limits, DDP on a recipe without the similarity loss. Real training steps on tiny
configurations; every refusal is one line (exit 2) without a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from streamavs.cli import main
from streamavs.errors import ConfigError
from streamavs.training.config import load_config, toml_literal
from cli_output import one_error_line
from tiny_training import REPO, SEGMENTER_RECIPE
from tiny_training import TINY as TINY_SEGMENTER

FULL = SEGMENTER_RECIPE  # lambda_sim = 1
BASELINE = REPO / "training" / "configs" / "synthetic_single_baseline.toml"  # lambda_sim = 0
TINY = {**TINY_SEGMENTER, "optim.epochs": 1}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.setenv("STREAMAVS_DEBUG", "0")  # no tracebacks from the CLI


def sets(overrides: dict) -> list[str]:
    """`--set key=value` arguments (TOML literals) for the CLI."""
    return [f"--set={key}={toml_literal(value)}" for key, value in overrides.items()]


def train_cli(capsys, recipe: Path, out: Path, *args, **overrides) -> tuple[int, str]:
    """`streamavs train` in this process on the tiny recipe: (exit status, stderr)."""
    code = main(["train", "-c", str(recipe), "--out", str(out), "--device", "cpu", *map(str, args),
                 *sets({**TINY, **overrides})])  # fmt: skip
    return code, capsys.readouterr().err


def tiny_run(out: Path, recipe: Path = FULL, **overrides) -> Path:
    """A real last.pt after one optimizer step of the tiny recipe."""
    from streamavs.training.trainer import train

    cfg = load_config(recipe, {**TINY, **overrides})
    train(cfg, out, max_steps=1, device="cpu", progress=False)
    return out / "last.pt"


# -- 1. resume under the saved recipe only; state that does not fit is one line; the AMP loss scale -------
def test_resume_refuses_a_changed_recipe_naming_each_key(tmp_path, capsys):
    run = tmp_path / "run"
    last = tiny_run(run)
    before = last.read_bytes()
    args = (["--resume"], {"data.image_size": 96, "loss.lambda_sim": 0.0, "optim.batch_size": 5})
    line = one_error_line(*train_cli(capsys, FULL, run, *args[0], **args[1]))
    assert line == (
        f"streamavs: error: --resume: the recipe differs from the one {last} was trained with "
        "(data.image_size: 64 -> 96; loss.lambda_sim: 1.0 -> 0.0; optim.batch_size: 2 -> 5); only optim.epochs, "
        "data.val_clips, data.num_workers, name, [eval] may change: resume with the saved recipe, or start a new "
        "run with another --out"
    )
    assert last.read_bytes() == before  # nothing trained, nothing written

    harmless = {"optim.epochs": 2, "eval.threshold": 0.4, "data.val_clips": 2, "data.num_workers": 0}
    assert train_cli(capsys, FULL, run, "--resume", **harmless)[0] == 0
    state = torch.load(last, weights_only=True)["run_state"]
    assert (state["epoch"], state["global_step"]) == (2, 10)  # 1 step + 4 + 5: the saved step went on
    line = one_error_line(*train_cli(capsys, FULL, run, "--resume", **{"optim.epochs": 1}))
    assert line == (f"streamavs: error: --resume: {last} has finished 2 epochs, more than optim.epochs = 1; "
                    "raise optim.epochs to train on")


def test_resume_state_that_does_not_fit_is_one_line(tmp_path, capsys):
    """A last.pt whose optimizer state lost a parameter (edited, or from another version) used to be an
    internal error from optimizer.load_state_dict."""
    run = tmp_path / "run"
    last = tiny_run(run)
    ckpt = torch.load(last, weights_only=True)
    ckpt["optimizer"]["param_groups"][0]["params"].pop()
    torch.save(ckpt, last)
    line = one_error_line(*train_cli(capsys, FULL, run, "--resume"))
    assert line == (
        f"streamavs: error: --resume: {last} does not fit the model and optimizer this recipe builds (loaded state "
        "dict contains a parameter group that doesn't match the size of optimizer's group); start a new run with "
        "another --out"
    )


def test_resume_that_stretches_a_cosine_schedule_says_how_the_rate_jumps(tmp_path, capsys):
    """One whole epoch ends at the schedule's final rate; resuming with optim.epochs 3 restarts higher."""
    import json

    cosine = {"optim.lr_schedule": "cosine", "optim.warmup_steps": 0}
    run = tmp_path / "run"
    assert train_cli(capsys, FULL, run, **cosine)[0] == 0
    assert main(["train", "-c", str(FULL), "--out", str(run), "--device", "cpu", "--resume", "--max-steps", "1",
                 *sets({**TINY, **cosine, "optim.epochs": 3})]) == 0  # fmt: skip
    assert "--resume: the learning rate goes from" in capsys.readouterr().out
    events = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    (note,) = [e for e in events if e["event"] == "resume_lr"]
    base = load_config(FULL, TINY).optim.lr
    assert note["step"] == 5 and note["saved_lr"] == pytest.approx(0.01 * base, rel=0.05)  # the final 1%
    assert note["resumed_lr"] > 40 * note["saved_lr"]  # step 5 of 15: ~0.6 x base


def test_amp_loss_scale_is_saved_and_restored(tmp_path):
    """The trainer's checkpoint functions with a real enabled GradScaler (the CPU one: same state as CUDA's);
    a checkpoint without a scaler (CPU runs, older runs) still resumes."""
    from streamavs.training.distributed import World
    from streamavs.training.trainer import RunState, _restore, _save, build_model, freeze_visual, make_optimizer

    cfg = load_config(FULL, TINY)
    old = tiny_run(tmp_path / "cpu")
    assert "scaler" not in torch.load(old, weights_only=True)
    model = build_model(cfg)
    freeze_visual(model)  # as the trainer does for this recipe (backbone_lr_scale = 0)
    optimizer = make_optimizer(model, cfg)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    scaler.scale(torch.ones(()))  # the scale tensor exists once something was scaled
    scaler.update(new_scale=512.0)  # as after overflows backed it off
    path = tmp_path / "amp" / "last.pt"
    one_process = World(rank=0, size=1, local_rank=0, device=torch.device("cpu"))
    _save(path, model, optimizer, scaler, RunState(step_in_epoch=1, global_step=1), cfg, one_process)
    assert torch.load(path, weights_only=True)["scaler"]["scale"] == 512.0

    fresh = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    assert _restore(path, cfg, model, optimizer, fresh).global_step == 1
    assert fresh.get_scale() == 512.0
    untouched = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    _restore(old, cfg, model, optimizer, untouched)
    assert untouched.get_scale() == 2.0**16


@pytest.mark.gpu
def test_amp_run_on_cuda_resumes_its_loss_scale(tmp_path):
    from streamavs.training.trainer import train

    cfg = load_config(FULL, TINY)
    run = tmp_path / "run"
    train(cfg, run, max_steps=1, device="cuda", progress=False)
    saved = torch.load(run / "last.pt", weights_only=True)["scaler"]
    assert saved["scale"] > 0
    train(cfg, run, resume=True, device="cuda", progress=False)
    assert torch.load(run / "last.pt", weights_only=True)["run_state"]["global_step"] == 5


# -- 2. DDP: a recipe without the similarity loss trains; a used folder is refused by every rank ---------
@pytest.mark.slow  # two processes: runs in the slow CI step (about 10 s on 2 idle cores)
def test_ddp_trains_a_lambda_sim_zero_recipe_and_every_rank_refuses_a_used_folder(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    assert torchrun, "torchrun comes with torch"
    run = tmp_path / "ddp"
    command = [torchrun, "--standalone", "--nproc_per_node", "2", "--monitor-interval", "1", "-m", "streamavs",
               "train", "--config", str(BASELINE), "--out", str(run), "--device", "cpu", *sets(TINY)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STREAMAVS_DEBUG": "0"}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["train_config"]["loss"]["lambda_sim"] == 0.0
    assert ckpt["run_state"]["global_step"] == 2  # 10 samples, 2 processes, batch 2: the second step ran too

    again = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    refusal = (f"streamavs: error: {run} already holds a run (last.pt); pass --resume to continue it or choose "
               "another --out")
    assert again.returncode != 0
    assert again.stderr.count(refusal) == 2, again.stderr[-3000:]  # rank 1 too, not a gloo error
    assert "internal error" not in again.stderr


# -- 3. an init checkpoint must be the model the recipe describes ---------------------------------------
def test_init_checkpoint_of_another_model_is_refused(tmp_path, capsys):
    seg = tiny_run(tmp_path / "seg")
    line = one_error_line(*train_cli(capsys, FULL, tmp_path / "a", **{
        "model.init_checkpoint": str(seg), "model.name": "avs_tpavi_b5", "data.image_size": 96}))
    assert line == (
        f"streamavs: error: [model] init_checkpoint {seg} holds another model than the recipe describes: "
        'model.name = "avs_tpavi_b5" here, "avs_lite" in the checkpoint; data.image_size = 96 here, 64 in the '
        "checkpoint; set them to the checkpoint's value in the recipe, or drop init_checkpoint to train a new model"
    )
    line = one_error_line(*train_cli(capsys, FULL, tmp_path / "b", **{
        "model.init_checkpoint": str(seg), "model.overrides": {"backbone_pretrained": True, "sim_learnable": True}}))
    assert "holds another model than the recipe describes: model.overrides.sim_learnable = true here, false in " \
           "the checkpoint; set it to" in line  # backbone_pretrained: where first weights come from, not compared
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert train_cli(capsys, FULL, tmp_path / "c", "--max-steps", 1, **{"model.init_checkpoint": str(seg)})[0] == 0


# -- 4. at least one batch per process ------------------------------------------------------------------
def test_too_little_data_for_one_batch_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    line = one_error_line(*train_cli(capsys, FULL, run, **{"data.train_clips": 1, "optim.batch_size": 8}))
    assert line == (
        "streamavs: error: 5 training samples per process (5 samples / 1 process) < optim.batch_size 8: no full "
        "batch, so no step would run; lower optim.batch_size or raise data.train_clips"
    )
    assert not run.exists()  # no untrained best.pt


# -- 5. recipe ranges -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, message",
    [
        ("[optim]\ngrad_clip = 0\n", "[optim] grad_clip must be > 0, got 0.0; fix the value, e.g. grad_clip = 1.0"),
        ("[optim]\ngrad_clip = -1\n", "[optim] grad_clip must be > 0, got -1.0"),
        ("[optim]\nweight_decay = -0.01\n", "[optim] weight_decay must be >= 0, got -0.01; fix the value, "
                                            "e.g. weight_decay = 0.0001"),
        ("[data]\nnum_workers = -1\n", "[data] num_workers must be >= 0, got -1; fix the value, e.g. num_workers = 0"),
        ("[data]\ntrain_clips = 0\n", "[data] train_clips must be > 0, got 0; fix the value, e.g. train_clips = 400"),
        ("[data]\nval_clips = -2\n", "[data] val_clips must be > 0, got -2; fix the value, e.g. val_clips = 60"),
        ("[eval]\nthreshold = 1\n", "[eval] threshold must be in (0, 1), got 1.0; fix the value, e.g. threshold = 0.5"),
        ("[eval]\nthreshold = 0\n", "[eval] threshold must be in (0, 1), got 0.0"),
        ("[eval]\ngate_threshold = 1.5\n", "[eval] gate_threshold must be in [0, 1], got 1.5; fix the value, "
                                           "e.g. gate_threshold = 0.5"),
        ("[eval]\ngate_threshold = -0.1\n", "[eval] gate_threshold must be in [0, 1], got -0.1"),
    ],
)
def test_recipe_ranges(capsys, tmp_path, text, message):
    path = tmp_path / "recipe.toml"
    path.write_text('name = "t"\n' + text)
    code = main(["train", "--config", str(path), "--out", str(tmp_path / "run")])
    line = one_error_line(code, capsys.readouterr().err)
    assert line.startswith(f"streamavs: error: {path}: {message}")


def test_range_edges_that_are_allowed(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text('name = "t"\n[eval]\ngate_threshold = 0\n[optim]\nweight_decay = 0\ngrad_clip = inf\n'
                    "[data]\nnum_workers = 0\n")
    cfg = load_config(path)
    assert (cfg.eval.gate_threshold, cfg.optim.weight_decay, cfg.optim.grad_clip) == (0.0, 0.0, float("inf"))
    assert load_config(path, {"eval.gate_threshold": 1}).eval.gate_threshold == 1.0


# -- 6. --device and --max-steps ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["--device", "banana"], "--device must be auto, cpu, cuda or cuda:N, got 'banana'; e.g. --device cpu"),
        (["--device", "cuda:x"], "--device must be auto, cpu, cuda or cuda:N, got 'cuda:x'; e.g. --device cpu"),
        (["--max-steps", "0"], "--max-steps must be >= 1 (optimizer steps this invocation), got 0; drop --max-steps "
                               "to train the whole recipe"),
        (["--max-steps", "-3"], "--max-steps must be >= 1 (optimizer steps this invocation), got -3"),
    ],
)
def test_device_and_max_steps_are_checked(tmp_path, capsys, args, message):
    run = tmp_path / "run"
    code = main(["train", "-c", str(FULL), "--out", str(run), *args, *sets(TINY)])
    line = one_error_line(code, capsys.readouterr().err)
    assert line.startswith(f"streamavs: error: {message}")
    assert not run.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a CUDA GPU")
def test_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "-c", str(FULL), "--out", str(run), "--device", "cuda", *sets(TINY)])
    assert one_error_line(code, capsys.readouterr().err) == (
        "streamavs: error: --device cuda: PyTorch sees no CUDA GPU here (no NVIDIA driver, or a CPU-only torch "
        "build); train on the CPU with --device cpu, or --device auto"
    )
    assert not run.exists()


def test_library_max_steps_below_one_is_refused(tmp_path):
    from streamavs.training.trainer import train

    with pytest.raises(ConfigError, match=r"max_steps must be >= 1 optimizer step, got 0; pass None"):
        train(load_config(FULL, TINY), tmp_path / "run", max_steps=0, device="cpu", progress=False)
    assert not (tmp_path / "run").exists()
