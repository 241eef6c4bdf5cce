"""The bench runners' shared convention (bench/report.py): exit status, one-line errors, --out default."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest

from streamavs.bench.report import RESULTS_DIR, default_out, run_script
from streamavs.errors import InputError


def test_run_script_returns_main_status_and_turns_known_errors_into_one_line(capsys):
    assert run_script(lambda: 0) == 0
    assert run_script(lambda: 3) == 3

    def bad() -> int:
        raise InputError("--clips must be >= 1, got 0;\n  leave it out for 80")

    assert run_script(bad) == 2
    assert capsys.readouterr().err == "error: --clips must be >= 1, got 0; leave it out for 80\n"


def test_default_out_is_dated_under_bench_results():
    today = dt.date.today().isoformat()
    assert default_out("soak") == RESULTS_DIR / f"soak-{today}.json"
    assert default_out("temporal-figure", "png") == RESULTS_DIR / f"temporal-figure-{today}.png"
    assert RESULTS_DIR.name == "results" and RESULTS_DIR.parent.name == "bench"


def test_a_runner_exits_2_with_one_line_on_a_known_error(tmp_path):
    out = tmp_path / "frontend.json"
    proc = subprocess.run([sys.executable, "-m", "streamavs.bench.frontend", "--repeats", "0", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: --repeats must be >= 1 and --warmup >= 0, got 0 and 50; leave them out for 2000 and 50"]
    assert not out.exists()


def test_a_runner_writes_its_report_to_out_and_exits_0(tmp_path):
    out = tmp_path / "frontend.json"
    proc = subprocess.run([sys.executable, "-m", "streamavs.bench.frontend", "--repeats", "3", "--warmup", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["benchmark"] == "frontend"
    assert report["command"].endswith(f"python -m streamavs.bench.frontend --repeats 3 --warmup 1 --out {out}")
    assert {s: report["stages"][s]["repeats"] for s in report["stages"]} == {
        "example_ending_at": 3, "frames_1s": 3, "prepare_44k1_stereo_1s": 3, "examples_per_second_5s": 1}
    assert proc.stdout.strip().splitlines()[-1] == f"wrote {out}"


@pytest.mark.parametrize("runner", ["engine_speed", "engine_profile", "session_sweep"])
def test_engine_runners_exit_2_with_one_line_for_an_unknown_engine(tmp_path, runner):
    out = tmp_path / "report.json"
    args = ["--engine", "no-such-engine", "--engine", "no-such-engine-2"]  # engine_speed compares two
    proc = subprocess.run([sys.executable, "-m", f"streamavs.bench.{runner}", *args, "--out", str(out)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no engine 'no-such-engine': not a file"), lines
    assert not out.exists()


def test_session_sweep_writes_its_report_to_out(tmp_path):
    out = tmp_path / "sweep.json"
    args = ["--engine", "streamavs-synthetic-lite", "--threads", "1", "--repeats", "2", "--warmup", "1",
            "--variants", "default", "no_memory_arena", "--out", str(out)]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "streamavs.bench.session_sweep", *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["benchmark"] == "session_sweep"
    assert report["command"] == "python -m streamavs.bench.session_sweep " + " ".join(args)
    rows = report["results"]["streamavs-synthetic-lite_1t"]
    assert set(rows) == {"default", "no_memory_arena"} and rows["default"]["vs_default"] == 1.0
    assert all(r["repeats"] == 2 and r["warmup"] == 1 for r in rows.values())
    assert proc.stdout.strip().splitlines()[-1] == f"wrote {out}"


# ---------------------------------------------------------------- the runners' defects, each by a real run
def _run_without(module: str, runner: str, *args: str) -> subprocess.CompletedProcess:
    """`runner`'s main(args) in a fresh interpreter where `module` cannot be imported (an install without it)."""
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            "from streamavs.bench.report import run_script\n"
            f"from streamavs.bench.{runner} import main\n"
            "sys.exit(run_script(lambda: main(sys.argv[1:])))")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def _engine_speed(engine, out, *extra: str) -> dict:
    from streamavs.bench.engine_speed import main

    args = ["--engine", str(engine), "--ort-threads", "1", "--repeats", "2", "--warmup", "1", "--out", str(out)]
    assert main([*args, *extra]) == 0
    return json.loads(out.read_text())


def test_engine_speed_eager_rows_run_the_checkpoint_the_engine_was_exported_from(tiny_engine, tmp_path):
    record = _engine_speed(tiny_engine, tmp_path / "speed.json", "--torch-threads", "1")
    assert record["engine"]["checkpoint"] == str(tiny_engine.parent / "tiny.pt")
    assert set(record["results"]) == {"onnxruntime_1t", "torch_eager_1t"}
    assert set(record["speedup_median"]) == {"torch_eager_1t/onnxruntime_1t"}


def test_engine_speed_eager_rows_without_a_checkpoint_build_the_engines_own_architecture(tiny_engine, tmp_path):
    import shutil

    from streamavs.bench.engine_speed import eager_checkpoint
    from streamavs.engine.manifest import read_manifest
    from streamavs.engine.torch import TorchEngine

    alone = tmp_path / "alone"
    alone.mkdir()
    for name in ("tiny.json", "tiny.onnx"):  # no tiny.pt beside it
        shutil.copy(tiny_engine.parent / name, alone / name)
    record = _engine_speed(alone / "tiny.json", tmp_path / "speed.json", "--torch-threads", "1")
    assert record["engine"]["checkpoint"] == "random weights, the engine's architecture (manifest)"
    assert "torch_eager_1t" in record["results"]
    manifest = read_manifest(alone / "tiny.json")
    ckpt, _ = eager_checkpoint(alone / "tiny.json", manifest, tmp_path)
    with TorchEngine.from_checkpoint(ckpt, threads=1) as eager:  # same frame, cache and temporal window as the engine
        assert eager.frame_size == tuple(manifest.frame.size) and eager.manifest.cache_shape == manifest.cache_shape
        assert eager.manifest.temporal.window == manifest.temporal.window == 3


def test_engine_speed_refuses_eager_rows_when_the_engine_records_no_architecture(tiny_engine, tmp_path):
    import shutil

    from streamavs.bench.engine_speed import eager_checkpoint
    from streamavs.engine.manifest import read_manifest

    shutil.copy(tiny_engine.parent / "tiny.onnx", tmp_path / "tiny.onnx")
    data = json.loads(tiny_engine.read_text())
    data["model"] = {"name": data["model"]["name"]}  # no config: an older or hand-written manifest
    (tmp_path / "tiny.json").write_text(json.dumps(data))
    manifest = read_manifest(tmp_path / "tiny.json")
    with pytest.raises(InputError, match="pass --checkpoint, or --torch-threads with no value"):
        eager_checkpoint(tmp_path / "tiny.json", manifest, tmp_path)


def test_engine_speed_without_torch_times_onnx_rows_and_refuses_eager_ones_in_one_line(tiny_engine, tmp_path):
    out = tmp_path / "speed.json"
    args = ["--engine", str(tiny_engine), "--ort-threads", "1", "--repeats", "2", "--warmup", "1", "--out", str(out)]
    proc = _run_without("torch", "engine_speed", *args, "--torch-threads")
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.read_text())
    assert set(record["results"]) == {"onnxruntime_1t"} and record["engine"]["checkpoint"] is None
    line = _one_line_error(_run_without("torch", "engine_speed", *args, "--torch-threads", "1"))
    assert "'torch'" in line and "pip install 'streamavs[train]'" in line


@pytest.mark.parametrize("counts", [["--repeats", "0"], ["--warmup", "-1"]])
def test_engine_runners_refuse_bad_counts_in_one_line(tiny_engine, tmp_path, capsys, counts):
    from streamavs.bench import engine_profile, engine_speed, session_sweep

    out = tmp_path / "out.json"
    for main in (engine_speed.main, engine_profile.main, session_sweep.main):
        assert run_script(lambda: main(["--engine", str(tiny_engine), *counts, "--out", str(out)])) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --repeats must be >= 1 and --warmup >= 0") and err.count("\n") == 1, err
    assert not out.exists()


def test_engine_profile_without_onnx_says_what_to_install_in_one_line(tiny_engine, tmp_path):
    out = tmp_path / "profile.json"
    line = _one_line_error(_run_without("onnx", "engine_profile", "--engine", str(tiny_engine), "--threads", "1",
                                        "--repeats", "2", "--warmup", "1", "--out", str(out)))
    assert "'onnx'" in line and "pip install 'streamavs[train]'" in line and not out.exists()


def test_session_sweep_always_times_the_default_and_refuses_unknown_variants_and_repeated_engines(
        tiny_engine, tmp_path, capsys):
    from streamavs.bench.session_sweep import VARIANTS, main

    out = tmp_path / "sweep.json"
    base = ["--engine", str(tiny_engine), "--threads", "1", "--repeats", "2", "--warmup", "1", "--out", str(out)]
    assert main([*base, "--variants", "graph_basic"]) == 0  # the baseline of vs_default is added
    rows = json.loads(out.read_text())["results"]["tiny_1t"]
    assert set(rows) == {"default", "graph_basic"} and rows["default"]["vs_default"] == 1.0
    out.unlink()
    capsys.readouterr()
    assert run_script(lambda: main([*base, "--variants", "default", "graph_bsic"])) == 2
    assert capsys.readouterr().err == f"error: unknown --variants ['graph_bsic']; valid: {', '.join(VARIANTS)}\n"
    assert run_script(lambda: main([*base, "--engine", str(tiny_engine.with_suffix(".onnx"))])) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: engine names must differ") and "['tiny', 'tiny']" in err and err.count("\n") == 1
    assert not out.exists()


def test_synthetic_throughput_records_the_thread_settings_it_ran_with(tmp_path):
    import importlib.util
    import os

    out = tmp_path / "synthetic.json"
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-m", "streamavs.bench.synthetic_throughput", "--clips", "1",
                           "--image-size", "32", "--seconds", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    threads = json.loads(out.read_text())["machine"]["threads"]
    assert threads["thread_env"] == {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": None, "MKL_NUM_THREADS": None}
    limited = importlib.util.find_spec("threadpoolctl") is not None
    assert ("limited to 1 thread (threadpoolctl)" in threads["numpy"]) == limited
    assert ("not limited" in threads["numpy"]) == (not limited)


def test_soak_counts_steal_once_in_other_programs_cpu():
    from streamavs.bench.soak import ResourceSampler

    sampler = ResourceSampler(period=60.0)
    sampler.stop()
    # (t s, RSS MiB, machine busy s including steal, steal s, this process's CPU s)
    sampler.samples = [(0.0, 100.0, 10.0, 2.0, 1.0), (2.0, 100.0, 16.0, 4.0, 2.0)]
    (iv,) = sampler.intervals()
    assert iv["steal_cores"] == 1.0 and iv["process_cores"] == 0.5
    assert iv["other_cores"] == 1.5  # (6 busy - 2 steal - 1 process) / 2 s


def test_soak_memory_baseline_is_the_first_sample_inside_the_measured_run():
    from streamavs.bench.soak import memory_record

    samples = [(10.0, 50.0), (11.0, 120.0), (12.0, 121.0), (13.0, 126.0)]  # engine loads between 10 and 11 s
    record = memory_record(samples, t_measure=10.5)
    assert record["after_warmup"] == 120.0 and record["end"] == 126.0 and record["baseline_t_s"] == 1.0
    assert record["growth_percent"] == pytest.approx(5.0)
    short = memory_record(samples[:1] + samples[-1:], t_measure=10.5)  # no sample before the final one: unknown
    assert short["after_warmup"] is None and short["growth_percent"] is None


def test_soak_takes_the_measured_runs_start_from_the_latency_row():
    """measure_row stamps where its measured run starts; soak estimated it from when the run returned."""
    from streamavs.bench.soak import measured_start

    assert measured_start({"rows": [{"seconds": 2.0, "measured_from_monotonic_s": 95.5}]}, t_returned=100.0) == 95.5
    assert measured_start({"rows": [{"seconds": 2.0}]}, t_returned=100.0) == 98.0  # a row recorded before the stamp
    assert measured_start({"rows": []}, t_returned=100.0) is None


def test_soak_short_run_measures_growth_from_a_sample_after_the_warmup(tiny_engine, tmp_path):
    from streamavs.bench.soak import main

    out = tmp_path / "soak.json"
    assert main(["--seconds", "2", "--warmup", "0.5", "--model", str(tiny_engine), "--out", str(out)]) == 0
    memory = json.loads(out.read_text())["memory_mib"]
    assert memory["growth_percent"] is not None and memory["baseline_t_s"] >= memory["measured_from_t_s"] > 0


def test_robust_ablation_reuse_refuses_a_missing_run_in_one_line(tmp_path):
    out = tmp_path / "ablation.json"
    proc = subprocess.run([sys.executable, "-m", "streamavs.bench.robust_ablation", "--reuse", "--runs",
                           str(tmp_path / "runs"), "--rows", "baseline", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    line = _one_line_error(proc)
    assert str(tmp_path / "runs" / "synthetic_single_baseline" / "best.pt") in line and "leave out --reuse" in line
    assert not out.exists() and not (tmp_path / "runs").exists()  # nothing trained


def test_robust_ablation_reuse_records_the_run_folder_and_an_unknown_wall_time(tmp_path):
    torch = pytest.importorskip("torch")
    from streamavs.bench.robust_ablation import main, wall_from_log
    from streamavs.model.checkpoint import save_checkpoint
    from streamavs.model.registry import create_model

    run = tmp_path / "my-runs" / "synthetic_single_baseline"
    run.mkdir(parents=True)
    torch.manual_seed(0)
    save_checkpoint(run / "best.pt", create_model("avs_lite", image_size=64, backbone_pretrained=False), {})
    assert wall_from_log(run) is None  # best.pt without log.jsonl beside it
    out = tmp_path / "ablation.json"
    assert main(["--reuse", "--runs", str(tmp_path / "my-runs"), "--rows", "baseline", "--clips", "1",
                 "--noise-clips", "1", "--out", str(out)]) == 0
    row = json.loads(out.read_text())["rows"]["baseline"]
    assert row["run"] == str(run) and row["train_wall_s"] is None
