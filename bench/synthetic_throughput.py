"""Throughput of the synthetic benchmark generator on one CPU core.

Measures, per setting, how fast :func:`streamavs.synthetic.generate_clip` makes clips in
memory (what an on-the-fly training loader pays) and how fast
:func:`streamavs.synthetic.write_avsbench` writes them to disk (PNG + WAV encoding
included): clips/s, frames/s and seconds of audio-visual data per wall-clock second, with
per-clip latency percentiles. Writes JSON to --out (default bench/results/synthetic-<date>.json).

    python -m streamavs.bench.synthetic_throughput --clips 40
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from streamavs.bench.report import command_line, default_out, make_report, run_script, write_json
from streamavs.errors import InputError

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _stats(wall: list[float], cpu: list[float], seconds_per_clip: int) -> dict:
    """Rates from per-clip wall-clock and process-CPU durations (s). On a shared machine the
    CPU-time rates are what one free core would do; the wall-clock ones are what we got."""
    import numpy as np

    d, c = np.asarray(wall), np.asarray(cpu)
    total, total_cpu = float(d.sum()), float(c.sum())
    return {
        "clips": int(d.size),
        "clips_per_s": d.size / total,
        "frames_per_s": d.size * seconds_per_clip / total,
        "data_seconds_per_s": d.size * seconds_per_clip / total,  # one frame per second of data
        "ms_per_clip": {"p50": 1e3 * float(np.percentile(d, 50)), "p90": 1e3 * float(np.percentile(d, 90)),
                        "max": 1e3 * float(d.max())},
        "cpu_ms_per_clip_mean": 1e3 * total_cpu / c.size,
        "frames_per_cpu_s": d.size * seconds_per_clip / total_cpu,
    }


def _timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def run(clips: int, image_size: int, seconds: int, warmup: int = 3) -> dict:
    """Measure both settings; returns the results dict (see module docstring)."""
    import cv2

    from streamavs.synthetic import SceneConfig, generate_clip, split_seed, write_avsbench

    cv2.setNumThreads(1)  # one core: the generator is meant to run inside a loader worker
    results = {}
    for setting in ("single", "multi"):
        config = SceneConfig(image_size=image_size, seconds=seconds, setting=setting)
        for i in range(warmup):
            generate_clip(split_seed("train", 10_000 + i), config)
        times = [_timed(lambda: generate_clip(split_seed("train", i), config)) for i in range(clips)]
        row = {"generate": _stats([w for w, _ in times], [c for _, c in times], seconds)}
        with tempfile.TemporaryDirectory() as tmp:
            times = [_timed(lambda: write_avsbench(tmp, "train", 1, config, first_index=i, progress=False))
                     for i in range(max(1, clips // 2))]
        row["write_avsbench"] = _stats([w for w, _ in times], [c for _, c in times], seconds)
        results[setting] = row
    return results


def limit_numpy_threads():
    """(context manager, what it does): threadpoolctl's one-thread limit on numpy's BLAS/OpenMP pools when
    threadpoolctl is installed; otherwise a no-op, and the record says numpy's threads were not limited
    (environment variables set now would be too late: numpy is already imported)."""
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext(), ("numpy's BLAS/OpenMP threads not limited by this runner (threadpoolctl "
                                          "is not installed); they follow thread_env, as set before it started")
    return threadpool_limits(limits=1), "numpy's BLAS/OpenMP pools limited to 1 thread (threadpoolctl)"


def main(argv: list[str] | None = None) -> int:
    thread_env = {var: os.environ.get(var) for var in THREAD_VARS}  # as the user set them (None: unset)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=40, help="clips per setting to time (default 40)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/synthetic-<date>.json)")
    args = parser.parse_args(argv)
    if args.clips < 1:
        raise InputError(f"--clips must be >= 1, got {args.clips}; leave it out for 40")

    limit, numpy_threads = limit_numpy_threads()
    with limit:
        results = run(args.clips, args.image_size, args.seconds)
    report = make_report("synthetic_throughput", command_line(argv, "python -m streamavs.bench.synthetic_throughput"),
                         image_size=args.image_size, seconds_per_clip=args.seconds, results=results)
    report["machine"]["threads"] = {"opencv": "1 (cv2.setNumThreads(1))", "numpy": numpy_threads,
                                    "thread_env": thread_env}
    path = write_json(report, args.out or default_out("synthetic"))
    for setting, row in results.items():
        for kind, s in row.items():
            print(f"{setting:6s} {kind:14s} {s['clips_per_s']:6.1f} clips/s {s['frames_per_s']:7.1f} frames/s "
                  f"p50 {s['ms_per_clip']['p50']:6.1f} ms/clip | per CPU-second {s['frames_per_cpu_s']:6.1f} frames")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
