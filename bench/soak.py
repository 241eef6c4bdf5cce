"""Soak run: the live pipeline for minutes at real-time pace, watching memory, drops and latency.

    python -m streamavs.bench.soak --seconds 600 --out bench/results/soak-<date>.json

The synthetic live scene (30 fps, with audio) feeds the default engine on ONNX Runtime, masks go
over ZeroMQ to a subscriber thread (the latency runner's row, :func:`measure_row`). A sampler
thread records this process's resident memory and the CPU used by this process, by other programs
and by the hypervisor (steal) every few seconds; the report gives memory after the warm-up and at
the end (target: growth under 5%), drops, overflows, latency percentiles, and for every gap in
the processed frames the stage times of the frame before it and the CPU use around it.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
import time
from pathlib import Path

from streamavs.bench.report import command_line, default_out, run_script, write_json


def rss_mib() -> float:
    """Resident set size of this process (MiB), from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def machine_cpu_s() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, all cores, from /proc/stat.

    busy = user + nice + system + irq + softirq + steal; steal is time a virtual machine's cores
    were runnable but the hypervisor ran something else.
    """
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq + steal) / tick, steal / tick


def process_cpu_s() -> float:
    """CPU seconds used by this process so far (all threads, user + system)."""
    t = os.times()
    return t.user + t.system


class ResourceSampler:
    """Every `period` s in a daemon thread: (monotonic s, RSS MiB, machine busy s, steal s, process CPU s).

    From consecutive samples, :meth:`intervals` gives the CPU the rest of the machine used while
    the pipeline ran: a drop that coincides with other programs' CPU use is contention, not the
    pipeline falling behind on its own.
    """

    def __init__(self, period: float = 5.0):
        self.samples: list[tuple[float, float, float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(period,), name="resource-sampler", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        busy, steal = machine_cpu_s()
        self.samples.append((time.monotonic(), rss_mib(), busy, steal, process_cpu_s()))

    def _loop(self, period: float) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(period)

    def stop(self) -> list[tuple[float, float, float, float, float]]:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._sample()
        return self.samples

    def intervals(self) -> list[dict[str, float]]:
        """Per sampling interval: start/end (monotonic s) and cores used by this process, by
        everything else (busy - steal - this process), and stolen by the hypervisor (1.0 = one
        core for the whole interval)."""
        out = []
        for (t0, _, b0, s0, p0), (t1, _, b1, s1, p1) in zip(self.samples, self.samples[1:]):
            dt = max(t1 - t0, 1e-9)
            busy, steal, process = b1 - b0, s1 - s0, p1 - p0  # busy includes steal: count it once
            out.append({"start_s": t0, "end_s": t1, "process_cores": process / dt,
                        "other_cores": max(0.0, busy - steal - process) / dt, "steal_cores": steal / dt})
        return out


class GcPauses:
    """Records every garbage collection of the oldest generation or one over `min_ms`: (monotonic s, gen, ms).

    A collection holds the GIL, so a long one stalls every Python thread of the pipeline at once.
    """

    def __init__(self, min_ms: float = 2.0) -> None:
        self.min_ms = min_ms
        self.pauses: list[tuple[float, int, float]] = []
        self._t0 = 0.0

    def __enter__(self) -> "GcPauses":
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        ms = (time.perf_counter() - self._t0) * 1e3
        if info["generation"] == 2 or ms >= self.min_ms:
            self.pauses.append((time.monotonic(), info["generation"], ms))

    def ms_near(self, t_s: float, window_s: float = 0.1) -> float:
        """Total pause (ms) of the recorded collections within `window_s` of monotonic time `t_s`."""
        return sum(ms for t, _, ms in self.pauses if abs(t - t_s) <= window_s)


def annotate_gaps(gaps: list[dict], intervals: list[dict[str, float]], gc_pauses: GcPauses) -> None:
    """Give each gap (with `t_s`) the CPU use of the sampling interval it fell in (`cpu`) and the
    garbage-collection pause within 100 ms of it (`gc_ms_within_100ms`)."""
    for gap in gaps:
        hit = next((iv for iv in intervals if iv["start_s"] <= gap["t_s"] < iv["end_s"]), None)
        if hit is not None:
            gap["cpu"] = {k: round(v, 3) for k, v in hit.items() if k.endswith("_cores")}
        gap["gc_ms_within_100ms"] = round(gc_pauses.ms_near(gap["t_s"]), 2)


def sampling_period(seconds: float) -> float:
    """Seconds between resource samples: 5, or less for a short run so that several fall inside it."""
    return max(0.5, min(5.0, seconds / 10.0))


def measured_start(report: dict, t_returned: float) -> float | None:
    """Monotonic time at which the measured run began: the row's own stamp (measure_row), else when
    run_latency returned less the measured seconds (the drain after the measurement makes that up to
    ~2 s late), or None without a measured row."""
    row = report["rows"][0] if report.get("rows") else {}
    if "measured_from_monotonic_s" in row:
        return row["measured_from_monotonic_s"]
    return t_returned - row["seconds"] if "seconds" in row else None


def memory_record(samples: list[tuple[float, ...]], t_measure: float | None) -> dict:
    """RSS after the warm-up (the first sample at or after the measured run's start, not the final one),
    at the end and its growth; growth is None when no sample fell inside the measured run."""
    t_start = samples[0][0]
    inside = [s for s in samples[:-1] if t_measure is not None and s[0] >= t_measure]
    after_warmup = inside[0][1] if inside else None
    end = samples[-1][1]
    return {
        "after_warmup": after_warmup, "end": end, "max": max(s[1] for s in samples),
        "growth_percent": 100.0 * (end - after_warmup) / after_warmup if after_warmup else None,
        "baseline_t_s": round(inside[0][0] - t_start, 1) if inside else None,
        "measured_from_t_s": round(t_measure - t_start, 1) if t_measure is not None else None,
        "samples": [[round(s[0] - t_start, 1), round(s[1], 1)] for s in samples],
    }


def main(argv: list[str] | None = None) -> int:
    from streamavs.bench.latency import LatencyConfig, for_json, run_latency

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="measured run time")
    parser.add_argument("--warmup", type=float, default=15.0, help="discarded start (engine warm-up)")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--model", default="default", help="engine spec, as for bench latency --models")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/soak-<date>.json)")
    args = parser.parse_args(argv)

    config = LatencyConfig(seconds=args.seconds, warmup=args.warmup, fps=args.fps,
                           backends=("onnxruntime",), models=(args.model,))
    period = sampling_period(args.seconds)
    sampler = ResourceSampler(period)
    with GcPauses() as gc_pauses:
        report = run_latency(config, command=command_line(argv, "python -m streamavs.bench.soak"))
    t_returned = time.monotonic()
    samples = sampler.stop()
    t_start = samples[0][0]
    report["memory_mib"] = memory_record(samples, measured_start(report, t_returned))
    after_warmup, end = report["memory_mib"]["after_warmup"], report["memory_mib"]["end"]
    report["benchmark"] = "soak"
    intervals = sampler.intervals()
    report["cpu_cores"] = {  # per sampling interval: this process, other programs, hypervisor steal
        "cores": os.cpu_count(), "period_s": period,
        "samples": [[round(iv["start_s"] - t_start, 1), round(iv["process_cores"], 3), round(iv["other_cores"], 3),
                     round(iv["steal_cores"], 3)] for iv in intervals],
        "columns": ["t_s", "process", "other", "steal"],
        "other_max": max((iv["other_cores"] for iv in intervals), default=0.0),
        "steal_max": max((iv["steal_cores"] for iv in intervals), default=0.0),
    }  # fmt: skip
    report["gc_pauses"] = {  # collections of generation 2, or of any generation over 2 ms
        "columns": ["t_s", "generation", "ms"],
        "samples": [[round(t - t_start, 3), g, round(ms, 2)] for t, g, ms in gc_pauses.pauses],
        "max_ms": max((ms for _, _, ms in gc_pauses.pauses), default=0.0),
    }
    for row in report["rows"]:
        annotate_gaps(row.get("gaps", []), intervals, gc_pauses)
    report["targets"] = "no crash; memory growth < 5%; no drops while the engine keeps up"
    out = write_json(for_json(report), args.out or default_out("soak"))
    row = report["rows"][0]
    for gap in row.get("gaps", []):
        print(f"gap: {gap['missing']} frame(s) from index {gap['first_missing']}; frame before it: {gap['before_ms']}; "
              f"cores used meanwhile: {gap.get('cpu')}; GC within 100 ms: {gap['gc_ms_within_100ms']} ms")
    print(f"garbage collections (gen 2 or > 2 ms): {len(gc_pauses.pauses)}, longest "
          f"{report['gc_pauses']['max_ms']:.1f} ms")
    cpu = report["cpu_cores"]
    print(f"other programs used up to {cpu['other_max']:.2f} of {cpu['cores']} cores in a {period:g} s interval; "
          f"hypervisor steal up to {cpu['steal_max']:.2f}")
    growth = report["memory_mib"]["growth_percent"]
    memory = (f"memory {after_warmup:.0f} -> {end:.0f} MiB ({growth:+.2f}%)" if growth is not None
              else f"memory at the end {end:.0f} MiB (no sample inside the measured run: growth unknown)")
    print(f"{row.get('fps', 0):.1f} fps, counters {row.get('counters')}, {memory}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
