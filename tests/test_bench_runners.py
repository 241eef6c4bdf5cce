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
