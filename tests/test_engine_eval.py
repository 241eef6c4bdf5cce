"""`streamavs eval --engine`: the numpy evaluation loop, without torch, and its agreement with the checkpoint path.

The torch-free claim is tested the only way that proves it: the command runs in a fresh
interpreter whose import system refuses ``torch`` (a meta-path finder that raises and records
every attempt), as on an install without the `train` extra. The same run records every
``streamavs.training`` module it loaded: the runtime path must load none.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from no_torch import run_without_torch

from streamavs.cli import main
from streamavs.datasets.conditions import BENCHMARK_REVISION
from streamavs.metrics.meters import UNITS


def assert_eval_reproduces_manifest(manifest: Path, tmp_path: Path) -> dict:
    """`streamavs eval --engine` (torch unimportable) on the data and clips the manifest's
    ``training.eval`` records gives its tables: every condition, both gates. Returns the fresh report.

    ONNX Runtime's float rounding may differ between CPUs and move pixels that lie on a
    threshold, hence the tolerances (0.5 percentage points, 1e-3 for rates); on the machine that
    recorded the manifest the numbers are equal.
    """
    stored = json.loads(manifest.read_text())["training"]["eval"]
    assert stored.get("benchmark_revision", 1) == BENCHMARK_REVISION, (
        f"{manifest.name} was evaluated on benchmark revision {stored.get('benchmark_revision', 1)}; re-record it "
        f"(training.evaluate_checkpoint.record_evaluation) on revision {BENCHMARK_REVISION}")
    out = tmp_path / "fresh.json"
    code, _, stderr, record = run_without_torch(
        "eval", "--engine", manifest, "--data", stored["data"], "--clips", str(stored["clips"]), "--out", out
    )
    assert code == 0, stderr[-2000:]
    assert record == {"attempts": [], "loaded": False, "training": []}
    fresh = json.loads(out.read_text())
    assert fresh["benchmark_revision"] == BENCHMARK_REVISION
    for gate in ("gate_off", "gate_on"):
        for cond, row in stored[gate].items():
            for key, value in row.items():
                tol = 0.5 if UNITS.get(key) == "percent" else 1e-3
                assert fresh[gate][cond][key] == pytest.approx(value, abs=tol, nan_ok=True), (gate, cond, key)
    return fresh


def test_engine_eval_runs_without_torch(tiny_engine, tmp_path):
    out = tmp_path / "eval.json"
    code, stdout, stderr, record = run_without_torch(
        "eval", "--engine", tiny_engine, "--data", "synthetic-single", "--clips", "4", "--out", out
    )
    assert code == 0, stderr[-2000:]
    assert record == {"attempts": [], "loaded": False, "training": []}
    assert "similarity gate off:" in stdout and "G-mIoU" in stdout
    report = json.loads(out.read_text())
    assert report["command"].startswith("streamavs eval --engine ")
    for gate in ("gate_off", "gate_on"):  # 4 clips x 5 s: one clip per condition, 5 frames each
        assert {c: report[gate][c]["n"] for c in ("positive", "silence", "noise", "offscreen")} == {
            "positive": 5, "silence": 5, "noise": 5, "offscreen": 5}  # fmt: skip


def test_avsbench_data_without_torch_is_one_line(tiny_engine, tmp_path):
    code, _, stderr, record = run_without_torch("eval", "--engine", tiny_engine, "--data", f"avsbench_s4:{tmp_path}")
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith(f"streamavs: error: --data avsbench_s4:{tmp_path} (AVSBench is read by the training "
                               "package) needs the Python package 'torch'")  # fmt: skip
    assert lines[0].endswith("install it with: pip install 'streamavs[train]'")
    assert record["attempts"] == ["torch"] and not record["loaded"]  # the one guarded attempt of `require`


def test_bench_accuracy_is_an_alias_of_eval(tiny_engine, tmp_path):
    a, b = tmp_path / "eval.json", tmp_path / "bench.json"
    assert main(["eval", "--engine", str(tiny_engine), "--data", "synthetic-multi", "--clips", "2", "--out", str(a)]) == 0
    assert main(["bench", "accuracy", "--engine", str(tiny_engine), "--data", "synthetic-multi", "--clips", "2",
                 "--json", str(b)]) == 0  # fmt: skip
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert (ra["gate_off"], ra["gate_on"]) == (rb["gate_off"], rb["gate_on"])
    assert ra["command"].startswith("streamavs eval ") and rb["command"].startswith("streamavs bench accuracy ")
    assert sum(ra["gate_off"][c]["n"] for c in ("positive", "silence", "noise", "offscreen")) == 10


@pytest.mark.parametrize("args, message", [
    ([], "give exactly one of --engine PATH or --checkpoint PATH"),
    (["--engine", "a.json", "--checkpoint", "b.pt"], "give exactly one of --engine PATH or --checkpoint PATH"),
    (["--engine", "a.json", "--data", "kinetics"], "unknown --data 'kinetics'; expected one of synthetic-single | "),
    (["--engine", "a.json", "--data", "avsbench_s4"], "unknown --data 'avsbench_s4'; expected one of "),
    (["--engine", "a.json", "--fscore-mode", "mean"], "--fscore-mode must be one of set | avsbench, got 'mean'"),
])  # fmt: skip
def test_option_errors_before_any_work(capsys, args, message):
    assert main(["eval", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"streamavs: error: {message}") and "\n" not in err


def test_record_evaluation_stores_what_eval_measures(tiny_engine, tmp_path):
    """Export's --eval-data writes the table of the numpy loop into the manifest, with the command that gives it."""
    import shutil

    from streamavs.evaluation import evaluate_engine_path
    from streamavs.files import jsonable
    from streamavs.training.evaluate_checkpoint import record_evaluation

    for suffix in (".json", ".onnx"):
        shutil.copy(tiny_engine.with_suffix(suffix), tmp_path / f"tiny{suffix}")
    manifest = tmp_path / "tiny.json"
    record_evaluation(manifest, "synthetic-single", 4, progress=False)
    stored = json.loads(manifest.read_text())["training"]["eval"]
    assert stored["command"] == "streamavs eval --engine tiny.json --data synthetic-single --clips 4"
    fresh = evaluate_engine_path(manifest, "synthetic-single", clips=4, progress=False)
    assert jsonable(fresh["gate_off"]) == stored["gate_off"] and jsonable(fresh["gate_on"]) == stored["gate_on"]


@pytest.fixture(scope="module")
def calibrated_checkpoint(tmp_path_factory) -> Path:
    """A 64 px avs_lite (random weights, no temporal stage) whose mask and gate straddle 0.5 on the test set.

    Random weights put every pixel above 0.5 and every sounding score below it; the biases are
    shifted by the medians over the test samples (interpolated: no output sits exactly on a
    threshold) so that the comparison below covers masks and gates neither all on nor all off.
    """
    torch = pytest.importorskip("torch", reason="the checkpoint path needs torch (the train extra)")
    from streamavs.datasets import robust_test_set
    from streamavs.model.checkpoint import save_checkpoint
    from streamavs.model.registry import create_model
    from streamavs.training.data import collate

    torch.manual_seed(0)
    model = create_model("avs_lite", image_size=64, backbone_pretrained=False).eval()
    batch = collate([s for s in (robust_test_set("synthetic-single", 2, 64)[i] for i in range(10))])
    with torch.no_grad():
        out = model(batch["frame"], batch["log_mel"])
        model.mask_head.bias -= out.mask_logits.flatten().quantile(0.5)
        model.similarity_head.bias -= out.sounding_logit.quantile(0.5)
    path = tmp_path_factory.mktemp("eval") / "segmenter.pt"
    save_checkpoint(path, model, {})
    return path


def test_numpy_loop_matches_the_checkpoint_path(calibrated_checkpoint):
    """The same samples through the torch checkpoint path and through the numpy loop over the
    torch engine of the same file give the same robust tables."""
    from streamavs.datasets import robust_test_set
    from streamavs.engine import load_engine
    from streamavs.evaluation import evaluate_engine
    from streamavs.training.evaluate_checkpoint import evaluate_checkpoint

    torch_path = evaluate_checkpoint(calibrated_checkpoint, "synthetic-single", clips=2, progress=False)
    with load_engine(calibrated_checkpoint) as engine:  # the TorchEngine: numpy in, numpy out
        numpy_loop = evaluate_engine(engine, robust_test_set("synthetic-single", 2, 64), progress=False)
    off, on = torch_path["gate_off"], torch_path["gate_on"]
    # not degenerate: some pixels on and some off; the gate closes on some frames, not on all
    assert 0.05 < off["positive"]["fpr"] < 0.95 and off != on and on["positive"]["fpr"] + on["negative"]["fpr"] > 0
    assert np.isfinite(torch_path["similarity"]["positive"]).all() and numpy_loop["similarity"]["positive"] == []
    # Batched vs one-frame convolutions differ by float rounding, which may move a pixel that lies
    # within ~1e-6 of a threshold: 0.1 percentage points (mIoU, F) or 1e-3 (rates) allow a few such pixels.
    for gate in ("gate_off", "gate_on"):
        for cond, row in torch_path[gate].items():
            for key, value in row.items():
                tol = 0.1 if UNITS.get(key) == "percent" else 1e-3
                assert numpy_loop[gate][cond][key] == pytest.approx(value, abs=tol, nan_ok=True), (gate, cond, key)
