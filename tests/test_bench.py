"""The benchmark runners: latency of the real pipeline on a tiny model, accuracy tables and plots.

The latency test runs the whole live path (synthetic 30 fps source -> pairer -> preprocess ->
engine -> ZeroMQ publisher -> subscriber thread) for ~2 s per backend on a tiny untrained
model (64 px) that the fixture writes, with ONNX Runtime on an engine exported on the fly.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from streamavs.bench.report import STAT_KEYS, make_report, stats_ms, write_json
from streamavs.errors import InputError

torch = pytest.importorskip("torch", reason="the benchmark runners build models with PyTorch (the train extra)")

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A 64 px avs_lite with a small temporal stage and random weights, as a streaming checkpoint."""
    from streamavs.model.registry import create_model
    from streamavs.model.streaming import StreamingSegmenter, save_streaming_checkpoint
    from streamavs.model.temporal import TemporalConfig, TemporalStage

    torch.manual_seed(0)
    seg = create_model("avs_lite", image_size=64, backbone_pretrained=False)
    stage = TemporalStage(TemporalConfig(in_channels=seg.config.decoder_channels, window=3, dim=8, heads=2))
    path = tmp_path_factory.mktemp("bench") / "tiny.pt"
    save_streaming_checkpoint(path, StreamingSegmenter(seg, stage).eval(), {})
    return path


def _check_stats(st: dict, what: str) -> None:
    assert st["n"] > 0, what
    assert 0 <= st["p50"] <= st["p90"] <= st["p95"] <= st["p99"] <= st["max"], (what, st)
    assert st["p50"] <= st["max"] and math.isfinite(st["mean"]), (what, st)


# ------------------------------------------------------------------------------ report
def test_stats_ms_is_monotone_and_empty_is_nan():
    st = stats_ms([5.0, 1.0, 3.0, 100.0, float("nan")])
    assert list(st) == list(STAT_KEYS)
    assert st["n"] == 4 and st["max"] == 100.0 and st["p50"] == 4.0
    assert st["p50"] <= st["p95"] <= st["p99"] <= st["max"]
    empty = stats_ms([])
    assert empty["n"] == 0 and math.isnan(empty["p50"])


def test_report_json_has_command_machine_date_and_null_for_nan(tmp_path):
    report = make_report("unit", "streamavs bench latency --seconds 1", value=float("nan"), arr=np.arange(3))
    path = write_json(report, tmp_path / "r.json")
    data = json.loads(path.read_text())
    assert data["command"] == "streamavs bench latency --seconds 1"
    assert data["date"][:2] == "20" and "T" in data["date"]
    machine = data["machine"]
    assert machine["cores"] >= 1 and machine["cpu"] and machine["os"]
    assert machine["libraries"]["numpy"] == np.__version__
    assert data["value"] is None and data["arr"] == [0, 1, 2]


# ------------------------------------------------------------------------------ latency
def _check_row(row: dict, fps: float) -> None:
    from streamavs.bench.latency import STAGES

    assert row["model"] == "tiny" and row["frame_size"] == [64, 64] and row["temporal_window"] == 3
    for stage in STAGES:
        _check_stats(row["stages"][stage], f"{row['backend']} {stage}")
    c = row["counters"]
    assert c["processed"] == row["stages"]["inference"]["n"] > 0
    assert c["processed"] <= c["offered"] and 0 < c["processed_fraction"] <= 1
    assert c["received_by_subscriber"] + c["lost_to_subscriber"] == c["processed"]
    assert c["received_by_subscriber"] == row["stages"]["end_to_end"]["n"]
    # A mask is received after its frame was captured and after its engine call started.
    s = row["stages"]
    assert s["end_to_end"]["max"] >= s["frame_age_at_inference"]["p50"] > 0
    assert 0 < row["fps"] <= fps * 1.2
    assert "inside inference" in row["temporal_stage"]


def test_speedups_pair_rows_of_the_same_model_not_of_the_same_name(tmp_path):
    """Two runs' temporal.pt were both called "temporal", and the second model's ONNX row was divided
    by the first model's eager time. Rows pair by --models entry, and a run's checkpoint is named after its run."""
    from streamavs.bench.latency import _relative_speed
    from streamavs.bench.latency_engines import resolve_model

    def row(spec, backend, p50):
        return {"model": "temporal", "model_spec": spec, "backend": backend,
                "stages": {"inference": {"p50": p50, "n": 10}}}

    rows = [row("a/temporal.pt", "torch", 6.4), row("a/temporal.pt", "onnxruntime", 1.8),
            row("b/temporal.pt", "torch", 17.3), row("b/temporal.pt", "onnxruntime", 7.1)]
    _relative_speed(rows)
    assert [round(r["inference_speedup_vs_torch"], 2) for r in rows] == [1.0, 3.56, 1.0, 2.44]
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "temporal.pt").write_bytes(b"")
    assert resolve_model(str(tmp_path / "a" / "temporal.pt"), tmp_path).name == "a"


def test_the_recorded_command_retypes_global_options_before_the_subcommand():
    """`streamavs --debug bench latency ...` was recorded as `streamavs bench latency --debug bench latency ...`."""
    from streamavs.bench.report import subcommand_line

    argv = ["--debug", "bench", "latency", "--seconds", "1", "--models", "a b.pt"]
    assert subcommand_line(["bench", "latency"], argv) == "streamavs --debug bench latency --seconds 1 --models 'a b.pt'"
    assert subcommand_line(["eval"], ["eval", "--data", "real-test"]) == "streamavs eval --data real-test"
    assert subcommand_line(["bench", "accuracy"], ["--clips", "4"]) == "streamavs bench accuracy --clips 4"


def test_latency_runner_on_tiny_model(tiny_checkpoint, tmp_path):
    """PyTorch eager on the checkpoint (TensorRT: skipped with its reason on a CPU machine)."""
    from streamavs.bench.latency import LatencyConfig, for_json, run_latency
    from streamavs.bench.latency_output import plot_latency

    config = LatencyConfig(
        seconds=1.5, warmup=0.5, fps=30.0, backends=("torch", "tensorrt"),
        models=(str(tiny_checkpoint),), threads=1, cache_dir=tmp_path / "cache",
    )  # fmt: skip
    report = run_latency(config, command="streamavs bench latency --seconds 1.5")
    rows = {r["backend"]: r for r in report["rows"]}
    assert set(rows) == {"torch", "tensorrt"}
    _check_row(rows["torch"], config.fps)
    assert rows["torch"]["inference_speedup_vs_torch"] == pytest.approx(1.0)
    if not torch.cuda.is_available():
        assert "CUDA" in rows["tensorrt"]["skipped"]

    out = write_json(for_json(report), tmp_path / "latency.json")
    data = json.loads(out.read_text())
    assert {"command", "machine", "date", "rows", "config"} <= set(data)
    assert data["command"] == "streamavs bench latency --seconds 1.5"
    assert data["machine"]["ram_gib"] > 0 and "samples_ms" not in data["rows"][0]
    row = data["rows"][0]
    assert sum(g["missing"] for g in row["gaps"]) <= row["counters"]["dropped"]  # gaps inside the window are drops
    png = plot_latency(report, tmp_path / "latency.png")
    assert png.read_bytes()[:8] == PNG
    _check_latency_tables(report)


def _check_latency_tables(report: dict) -> None:
    """The printed tables hold one summary line per row (skipped rows with their reason) and each
    measured row's per-stage percentiles."""
    import io

    from rich.console import Console

    from streamavs.bench.latency import STAGES
    from streamavs.bench.latency_output import print_table
    from streamavs.bench.report import fmt_cell

    console = Console(file=io.StringIO(), width=400)
    print_table(report, console)
    lines = console.file.getvalue().splitlines()

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.split("│")[1:-1]]

    table_rows = [cells(line) for line in lines if line.startswith("│")]
    for row in report["rows"]:
        summary = next(r for r in table_rows if r[:2] == [row["model"], row["backend"]])
        if "skipped" in row:
            assert summary[2] == "skipped"
            assert f"{row['model']} / {row['backend']} skipped: {row['skipped']}" in lines
            continue
        c, s = row["counters"], row["stages"]
        assert summary[2:8] == [f"{row['fps']:.1f}", f"{c['processed']}/{c['offered']}", str(c["dropped"]),
                                str(c["audio_overflows"]), fmt_cell(s["inference"]["p50"]), fmt_cell(s["end_to_end"]["p50"])]
        start = lines.index(next(line for line in lines if f"{row['model']} / {row['backend']} (" in line))
        per_stage = {r[0]: r for r in map(cells, lines[start:]) if r and r[0] in STAGES}
        for stage in STAGES:
            st = s[stage]
            assert per_stage[stage][1:4] == [str(st["n"]), fmt_cell(st["mean"], 2), fmt_cell(st["p50"], 2)], stage


@pytest.mark.slow
def test_latency_onnxruntime_exports_into_the_cache(tiny_checkpoint, tmp_path):
    """ONNX Runtime on an engine exported (and parity-checked) into the cache on the fly; ~15 s."""
    from streamavs.bench.latency import LatencyConfig, run_latency

    config = LatencyConfig(seconds=1.5, warmup=0.5, backends=("onnxruntime",), models=(str(tiny_checkpoint),),
                           threads=1, cache_dir=tmp_path / "cache")  # fmt: skip
    (row,) = run_latency(config)["rows"]
    _check_row(row, config.fps)
    assert row["engine_from"].startswith("exported to the cache")
    assert len(list((tmp_path / "cache" / "onnx").glob("tiny-*.onnx"))) == 1


def test_gap_events_locate_missing_frames():
    from streamavs.bench.latency import gap_events

    processed = {i: {"stage_ms": {"inference": float(i)}, "t_ns": i * 10**9} for i in (5, 3, 4, 9, 10, 12)}
    assert gap_events(processed) == [
        {"first_missing": 6, "missing": 3, "t_s": 5.0, "before_ms": {"inference": 5.0}},
        {"first_missing": 11, "missing": 1, "t_s": 10.0, "before_ms": {"inference": 10.0}},
    ]
    assert gap_events({}) == [] and gap_events({1: {}, 2: {}}) == []


def test_latency_rejects_unknown_model(tmp_path):
    from streamavs.bench.latency_engines import resolve_model

    with pytest.raises(InputError, match="avs_tpavi_b5"):
        resolve_model("no_such_model", tmp_path)


def test_cli_rejects_bad_options(capsys):
    from streamavs.cli import main

    assert main(["bench", "latency", "--backends", "onnxruntime,cuda"]) != 0
    assert "unknown backend(s) ['cuda']" in capsys.readouterr().err
    assert main(["bench", "accuracy"]) != 0
    assert "exactly one of --engine PATH or --checkpoint PATH" in capsys.readouterr().err


# ------------------------------------------------------------------------------ accuracy
def _robust_result() -> dict:
    """A result in evaluate()'s format from a real RobustMeter on a few synthetic masks."""
    from streamavs.metrics import RobustMeter

    rng = np.random.default_rng(0)
    gt = np.zeros((6, 32, 32), bool)
    gt[:, 8:24, 8:24] = True
    result = {}
    for gate in ("gate_off", "gate_on"):
        meter = RobustMeter()
        meter.update("positive", np.clip(gt + rng.normal(0, 0.3, gt.shape), 0, 1), gt)
        for cond in ("silence", "noise", "offscreen"):
            pred = np.zeros(gt.shape) if gate == "gate_on" else np.clip(gt * 0.8 + rng.normal(0, 0.2, gt.shape), 0, 1)
            meter.update(cond, pred, gt)
        result[gate] = meter.table()
    result["similarity"] = {"positive": rng.normal(0.5, 0.1, 30).tolist(), "negative": rng.normal(-0.1, 0.2, 90).tolist()}
    return result


def test_accuracy_table_plots_and_report(tmp_path):
    from streamavs.bench.accuracy import accuracy_report, similarity_summary, write_plots

    result = _robust_result()
    paths = write_plots(result, tmp_path / "plots")
    assert [p.name for p in paths] == ["conditions.png", "similarity.png"]
    assert all(p.read_bytes()[:8] == PNG for p in paths)
    summary = similarity_summary(result["similarity"])
    assert summary["positive"]["n"] == 30 and sum(summary["negative"]["histogram"]) == 90
    assert summary["mean_gap"] > 0.4
    report = accuracy_report(result, "x.pt", "synthetic-single", 2, "set", command="streamavs bench accuracy")
    data = json.loads(write_json(report, tmp_path / "acc.json").read_text())
    assert data["gate_on"]["global"]["g_fpr"] == 0.0 and data["gate_off"]["global"]["g_fpr"] > 0.0
    assert {"command", "machine", "date"} <= set(data)


def test_accuracy_on_tiny_checkpoint(tiny_checkpoint, tmp_path):
    """A segmenter checkpoint in torch (a stage's checkpoint is refused: it would be its segmenter alone)."""
    from streamavs.bench.accuracy import CONDITIONS, main_command
    from streamavs.model.checkpoint import load_model
    from streamavs.model.streaming import StreamingSegmenter, save_streaming_checkpoint

    segmenter = tmp_path / "segmenter.pt"
    save_streaming_checkpoint(segmenter, StreamingSegmenter(load_model(tiny_checkpoint)[0], None).eval(), {})
    report = main_command(segmenter, "synthetic-single", 4, json_out=tmp_path / "a.json", plots=tmp_path / "p")
    for gate in ("gate_off", "gate_on"):
        assert all(report[gate][c]["n"] > 0 for c in CONDITIONS)
    assert (tmp_path / "p" / "conditions.png").read_bytes()[:8] == PNG
    assert (tmp_path / "p" / "similarity.png").read_bytes()[:8] == PNG
    assert report["similarity"]["positive"]["n"] > 0 and report["similarity"]["negative"]["n"] > 0


def test_soak_reports_memory_cpu_and_gaps(tiny_engine, tmp_path):
    from streamavs.bench.soak import main

    out = tmp_path / "soak.json"
    assert main(["--seconds", "2", "--warmup", "0.5", "--model", str(tiny_engine), "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["benchmark"] == "soak" and data["memory_mib"]["end"] > 0
    cpu = data["cpu_cores"]
    assert cpu["cores"] >= 1 and cpu["samples"] and cpu["columns"] == ["t_s", "process", "other", "steal"]
    t, process, other, steal = cpu["samples"][0]
    assert 0 < process <= cpu["cores"] + 0.5 and other >= 0 and steal >= 0  # the pipeline itself used CPU
    assert data["gc_pauses"]["columns"] == ["t_s", "generation", "ms"] and data["gc_pauses"]["max_ms"] >= 0
    assert all(0 <= s[0] and s[1] in (0, 1, 2) and s[2] >= 0 for s in data["gc_pauses"]["samples"])
    (row,) = data["rows"]
    assert row["counters"]["processed"] > 0
    assert sum(g["missing"] for g in row["gaps"]) <= row["counters"]["dropped"]  # gaps inside the window are drops
    assert all("gc_ms_within_100ms" in g for g in row["gaps"])  # every gap annotated (test below: with what)


def test_soak_gaps_get_the_cpu_and_garbage_collection_around_them():
    from streamavs.bench.soak import GcPauses, annotate_gaps

    pauses = GcPauses()
    pauses.pauses = [(10.02, 2, 30.0), (10.5, 0, 3.0), (11.95, 1, 4.0), (12.2, 2, 5.0)]
    intervals = [{"start_s": 9.0, "end_s": 11.0, "process_cores": 1.2, "other_cores": 0.5, "steal_cores": 0.0},
                 {"start_s": 11.0, "end_s": 13.0, "process_cores": 0.9, "other_cores": 1.1, "steal_cores": 0.1}]
    gaps = [{"t_s": 10.0, "missing": 1}, {"t_s": 12.0, "missing": 2}, {"t_s": 20.0, "missing": 1}]
    annotate_gaps(gaps, intervals, pauses)
    assert gaps[0]["cpu"] == {"process_cores": 1.2, "other_cores": 0.5, "steal_cores": 0.0}
    assert gaps[0]["gc_ms_within_100ms"] == 30.0  # 10.02 only; 10.5 is 500 ms away
    assert gaps[1]["cpu"]["other_cores"] == 1.1 and gaps[1]["gc_ms_within_100ms"] == 4.0
    assert "cpu" not in gaps[2] and gaps[2]["gc_ms_within_100ms"] == 0.0  # past the sampled intervals


def test_latency_without_torch_refuses_a_registered_architecture_before_measuring():
    """A runtime-only install: `--models avs_tpavi_b5` needs PyTorch to build the architecture; the
    command says so (and how to run without it) before any row is measured, not after."""
    from no_torch import run_without_torch

    code, stdout, stderr, record = run_without_torch("bench", "latency", "--seconds", "0.1", "--warmup", "0",
                                                     "--backends", "onnxruntime", "--models", "default,avs_tpavi_b5")
    assert code != 0
    assert "pip install 'streamavs[train]'" in stderr and "--models default" in stderr, stderr[-1000:]
    assert "internal error" not in stderr and len(stdout.strip().splitlines()) == 1  # only the import record: nothing ran
    assert not record["loaded"] and record["training"] == []
