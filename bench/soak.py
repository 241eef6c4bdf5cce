"""Soak run: the live pipeline for minutes at real-time pace, watching memory, drops and latency.

    python -m streamavs.bench.soak --seconds 600 --out bench/results/soak-<date>.json

The synthetic live scene (30 fps, with audio) feeds the default engine on ONNX Runtime, masks go
over ZeroMQ to a subscriber thread (the latency runner's row, :func:`measure_row`). A sampler
thread records this process's resident memory every few seconds; the report gives memory after
the warm-up and at the end (target: growth under 5%), drops, overflows and latency percentiles.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path


def rss_mib() -> float:
    """Resident set size of this process (MiB), from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


class MemorySampler:
    """Samples rss_mib() every `period` seconds in a daemon thread: [(seconds since start, MiB)]."""

    def __init__(self, period: float = 5.0):
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, args=(period,), name="rss-sampler", daemon=True)
        self._thread.start()

    def _loop(self, period: float) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic() - self._t0, rss_mib()))
            self._stop.wait(period)

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.samples.append((time.monotonic() - self._t0, rss_mib()))
        return self.samples


def main(argv: list[str] | None = None) -> int:
    from streamavs.bench.latency import LatencyConfig, for_json, run_latency
    from streamavs.bench.report import command_line, write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="measured run time")
    parser.add_argument("--warmup", type=float, default=15.0, help="discarded start (engine warm-up)")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--model", default="default", help="engine spec, as for bench latency --models")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    sampler = MemorySampler()
    config = LatencyConfig(seconds=args.seconds, warmup=args.warmup, fps=args.fps,
                           backends=("onnxruntime",), models=(args.model,))
    report = run_latency(config, command=command_line(argv, "python -m streamavs.bench.soak"))
    samples = sampler.stop()
    t_measure = samples[0][0] + args.warmup  # roughly when measurement began (engine load included before)
    after_warmup = next((mib for t, mib in samples if t >= t_measure), samples[0][1])
    end = samples[-1][1]
    report["benchmark"] = "soak"
    report["memory_mib"] = {
        "after_warmup": after_warmup, "end": end, "max": max(m for _, m in samples),
        "growth_percent": 100.0 * (end - after_warmup) / after_warmup,
        "samples": [[round(t, 1), round(m, 1)] for t, m in samples],
    }
    report["targets"] = "no crash; memory growth < 5%; no drops while the engine keeps up"
    write_json(for_json(report), args.out)
    row = report["rows"][0]
    for gap in row.get("gaps", []):
        print(f"gap: {gap['missing']} frame(s) from index {gap['first_missing']}; frame before it: {gap['before_ms']}")
    print(f"{row.get('fps', 0):.1f} fps, counters {row.get('counters')}, "
          f"memory {after_warmup:.0f} -> {end:.0f} MiB ({report['memory_mib']['growth_percent']:+.2f}%); wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
