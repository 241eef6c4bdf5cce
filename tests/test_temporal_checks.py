"""A [temporal] recipe is checked before any work starts: keys it would not read, a run folder
that already holds a stage, torchrun, frames of another size than the segmenter's, a device that
is not there (training/temporal_checks.py). Each used to train anyway or fail late."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from streamavs.errors import ConfigError, InputError
from streamavs.training.config import load_config
from streamavs.training.distributed import resolve_device
from streamavs.training.temporal_checks import check_recipe
from streamavs.training.temporal_trainer import train_temporal
from tiny_training import REPO, SEGMENTER_RECIPE, TINY

TEMPORAL = REPO / "training" / "configs" / "synthetic_temporal_full.toml"


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory) -> Path:
    """A 64 px segmenter checkpoint (one epoch on two clips)."""
    from streamavs.training.trainer import train

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = tmp_path_factory.mktemp("seg")
        train(load_config(SEGMENTER_RECIPE, {**TINY, "optim.epochs": 1}), run, progress=False)
    finally:
        torch.set_num_threads(before)
    return run / "last.pt"


def _recipe(segmenter: Path, **changes) -> object:
    return load_config(TEMPORAL, {"model.init_checkpoint": str(segmenter), "data.image_size": 64,
                                  "data.train_clips": 3, "data.val_clips": 2, "optim.epochs": 1,
                                  "optim.batch_size": 2, "temporal.clip_seconds": 2, **changes})


def test_the_shipped_temporal_recipes_hold_only_keys_the_stage_reads():
    for path in sorted((REPO / "training" / "configs").glob("*temporal*.toml")):
        check_recipe(load_config(path, {}))


def test_keys_the_stage_does_not_read_are_refused_not_recorded():
    cfg = load_config(TEMPORAL, {"optim.lr_schedule": "cosine", "loss.lambda_sim": 5.0, "data.negative_share": 0.9})
    with pytest.raises(ConfigError) as err:
        check_recipe(cfg)
    message = str(err.value)
    for said in ("[optim] lr_schedule = 'cosine'", "[loss] lambda_sim = 5.0", "[data] negative_share = 0.9",
                 "[temporal] clip_negative_share", "remove them from the recipe"):
        assert said in message


def test_a_run_folder_holding_a_stage_and_torchrun_are_refused_before_any_work(segmenter, tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "temporal.pt").write_bytes(b"an earlier stage")
    with pytest.raises(ConfigError, match="already holds a temporal stage \\(temporal.pt\\); choose another --out"):
        train_temporal(_recipe(segmenter), out, progress=False)
    assert (out / "temporal.pt").read_bytes() == b"an earlier stage" and not (out / "log.jsonl").exists()
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="trains in one process .* this is one of 2 \\(torchrun\\)"):
        train_temporal(_recipe(segmenter), tmp_path / "other", progress=False)
    assert not (tmp_path / "other").exists()


def test_frames_of_another_size_than_the_segmenters_are_refused(segmenter, tmp_path):
    with pytest.raises(ConfigError, match="image_size 96 differs from the segmenter's 64 .* set image_size = 64"):
        train_temporal(_recipe(segmenter, **{"data.image_size": 96}), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def stage(segmenter, tmp_path_factory) -> Path:
    """A stage trained on the CPU on top of `segmenter`."""
    run = tmp_path_factory.mktemp("stage")
    train_temporal(_recipe(segmenter), run, device="cpu", progress=False)
    return run / "temporal.pt"


def test_the_device_is_checked_and_used(stage):
    with pytest.raises(InputError, match="--device must be auto, cpu, cuda or cuda:N, got 'banana'"):
        resolve_device("banana")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="PyTorch sees no CUDA GPU here .* --device cpu"):
            resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    start = json.loads((stage.parent / "log.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["device"] == "cpu"  # where it trained (checkpoints are always CPU)
    saved = torch.load(stage, weights_only=False)
    assert all(t.device.type == "cpu" for t in saved["temporal_state_dict"].values())


def test_eval_of_a_stage_checkpoint_says_it_would_run_the_segmenter_alone(stage, segmenter):
    """It evaluated the segmenter frame by frame and reported the stage's file (the same numbers as best.pt)."""
    from streamavs.training.evaluate_checkpoint import evaluate_checkpoint

    with pytest.raises(InputError, match="holds a temporal stage, which runs on streams") as err:
        evaluate_checkpoint(stage, "synthetic-single", clips=1, progress=False)
    assert f"only its segmenter ({segmenter.parent.name}/last.pt)" in str(err.value) and "with --engine" in str(err.value)


@pytest.mark.slow  # moved from the default step (2026-12-01) to keep it under 5 minutes
def test_a_stage_engine_records_what_each_part_learned_from(stage, tmp_path):
    """The manifest's training.data is the segmenter's (its negatives), the stage's clips and [temporal]
    are under training.temporal_stage, and no absolute path of the training machine is recorded."""
    import json

    from streamavs.training.export import export_engine

    result = export_engine(stage, "onnx", tmp_path, name="stage", n_check=2, threads=1)
    training = json.loads(result.manifest_path.read_text())["training"]
    assert training["data"]["negative_share"] == 0.1 and training["data"]["train_clips"] == 2  # the segmenter's recipe
    assert training["temporal_stage"]["data"] == {"kind": "synthetic", "setting": "single", "image_size": 64,
                                                  "train_clips": 3, "val_clips": 2, "state_change_prob": 0.5,
                                                  "distractor_share": 0.5}
    assert training["temporal_stage"]["temporal"]["clip_negative_share"] == 0.25
    assert training["temporal_stage"]["segmenter_checkpoint"].endswith("/last.pt")
    assert str(tmp_path.parents[1]) not in result.manifest_path.read_text()
