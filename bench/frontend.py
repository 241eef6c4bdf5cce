"""Timing benchmark of the audio front end (streamavs.audio); writes JSON to bench/results/.

Run single-threaded so numbers are per core:

    OMP_NUM_THREADS=1 python -m streamavs.bench.frontend

Stages timed (time.perf_counter, warm-up first, median / p95 / min / max in milliseconds):
  - ``example_ending_at``: one 96x64 log-mel example from a 16 kHz mono waveform;
  - ``frames_1s``: log-mel frames of 1 s of 16 kHz audio;
  - ``prepare_44k1_stereo_1s``: downmix + soxr resample of 1 s of 44.1 kHz stereo float32;
  - ``examples_per_second_5s``: the five examples of a 5 s clip.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from streamavs.audio import LogMel, prepare_waveform
from streamavs.bench.report import (check_counts, command_line, default_out, machine_info, make_report, run_script,
                                    write_json)


def time_call(fn: Callable[[], object], repeats: int, warmup: int) -> dict[str, float]:
    """Run `fn` warmup + repeats times; statistics of the timed runs in milliseconds."""
    for _ in range(warmup):
        fn()
    ms = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        fn()
        ms[i] = (time.perf_counter() - t0) * 1e3
    return {
        "repeats": repeats,
        "median_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
    }


def run(repeats: int, warmup: int) -> dict[str, dict[str, float]]:
    """Time every stage; returns {stage: time_call statistics}."""
    rng = np.random.default_rng(0)
    logmel = LogMel()
    wave_5s = (0.1 * rng.standard_normal(5 * 16000)).astype(np.float32)
    wave_1s = wave_5s[:16000]
    stereo_44k = (0.1 * rng.standard_normal((44100, 2))).astype(np.float32)  # (n, channels)
    return {
        "example_ending_at": time_call(lambda: logmel.example_ending_at(wave_5s, 40000), repeats, warmup),
        "frames_1s": time_call(lambda: logmel.frames(wave_1s), repeats, warmup),
        "prepare_44k1_stereo_1s": time_call(lambda: prepare_waveform(stereo_44k, 44100), repeats, warmup),
        "examples_per_second_5s": time_call(lambda: logmel.examples_per_second(wave_5s, 5), max(1, repeats // 5), warmup),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2000, help="timed runs per stage")
    parser.add_argument("--warmup", type=int, default=50, help="untimed runs per stage first")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/frontend-<date>.json)")
    args = parser.parse_args(argv)
    check_counts(args.repeats, args.warmup, defaults=(2000, 50))
    machine = machine_info()  # the load before the run adds its own
    stages = run(args.repeats, args.warmup)
    threads = [f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"] if "OMP_NUM_THREADS" in os.environ else []
    report = make_report("frontend", " ".join([*threads, command_line(argv, "python -m streamavs.bench.frontend")]),
                         machine=machine, stages=stages)
    out = write_json(report, args.out or default_out("frontend"))
    for name, s in stages.items():
        print(f"{name:26s} median {s['median_ms']:.3f} ms  p95 {s['p95_ms']:.3f} ms  (n={s['repeats']})")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
