"""Mask-stream loopback benchmark: masks per second and publish-to-receive latency.

The publisher runs in this process, the subscriber in a child process (its own interpreter,
so the two do not share a GIL), both on 127.0.0.1. Two phases per encoding:

- throughput: `--count` masks published back to back; rate = received / receive span
  (SNDHWM may drop masks when the subscriber falls behind: reported as `lost`);
- latency: masks paced at `--rate` Hz; latency = receive time (after decoding) - t_publish,
  which the publisher stamps before encoding, so it spans encode + send + transport + decode.

    python -m streamavs.bench.zmq_loopback --out bench/results/zmq-loopback-<date>.json
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from streamavs.bench.report import command_line, default_out, machine_info, make_report, run_script, write_json
from streamavs.protocol import ENCODINGS

ENGINE = {"name": "bench", "sha256": "00000000"}


def _subscriber(address: str, idle_s: float) -> None:
    """Child process: receive until `idle_s` without masks; print one JSON summary line."""
    from streamavs.publish import Subscriber

    with Subscriber(address) as sub:
        while sub.stats().heartbeats == 0:
            sub.recv(timeout=0.05)
        print("ready", flush=True)
        lat, arrivals = [], []
        while True:
            msg = sub.recv(timeout=idle_s if arrivals else 30.0)
            if msg is None:
                break
            now = time.time()
            arrivals.append(time.perf_counter())
            lat.append(now - msg.t_publish)
        stats = sub.stats()
    print(json.dumps({"latency_s": lat, "span_s": arrivals[-1] - arrivals[0] if arrivals else 0.0,
                      "received": len(lat), "lost": stats.lost}), flush=True)  # fmt: skip


def _run_phase(pub, masks: list[np.ndarray], encoding: str, count: int, rate: float | None) -> dict:
    """Publish `count` masks (paced at `rate` Hz, or back to back) to a fresh child subscriber."""
    child = subprocess.Popen(
        [sys.executable, "-m", "streamavs.bench.zmq_loopback", "--subscriber", pub.address],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        while not select.select([child.stdout], [], [], 0.02)[0]:
            pub.heartbeat(force=True)
        assert child.stdout.readline().strip() == "ready"
        call_s = []
        t0 = time.perf_counter()
        for i in range(count):
            if rate:  # sleep, then spin the last 0.3 ms: sleep alone overshoots, spinning alone hogs a core
                time.sleep(max(0.0, t0 + i / rate - time.perf_counter() - 3e-4))
                while time.perf_counter() < t0 + i / rate:
                    pass
            t = time.time()
            start = time.perf_counter()
            pub.publish(masks[i % len(masks)], t_capture=t, audio_window=(t - 1, t), sounding=0.9,
                        uncertainty=0.1, engine=ENGINE, backend="bench", encoding=encoding)  # fmt: skip
            call_s.append(time.perf_counter() - start)
        send_span = time.perf_counter() - t0
        result = json.loads(child.communicate(timeout=120)[0].strip().splitlines()[-1])
    finally:
        if child.poll() is None:
            child.kill()
    lat_ms = np.asarray(result["latency_s"]) * 1e3
    call_ms = np.asarray(call_s) * 1e3
    row = {
        "encoding": encoding, "paced_hz": rate, "published": count, "received": result["received"],
        "lost": result["lost"], "publish_rate_hz": count / send_span,
        "receive_rate_hz": (result["received"] - 1) / result["span_s"] if result["span_s"] else 0.0,
        "publish_call_ms": {"p50": float(np.percentile(call_ms, 50)), "p99": float(np.percentile(call_ms, 99))},
    }  # fmt: skip
    if lat_ms.size:
        p50, p90, p99 = np.percentile(lat_ms, [50, 90, 99])
        row["latency_ms"] = {"p50": p50, "p90": p90, "p99": p99, "max": lat_ms.max()}
        row["latency_ms"] = {k: float(v) for k, v in row["latency_ms"].items()}
    return row


def run(size: int, count: int, rate: float, latency_count: int, encodings: list[str]) -> dict:
    """Both phases for each encoding; returns the report dict."""
    from streamavs.publish import Publisher

    rng = np.random.default_rng(0)
    masks = []
    for _ in range(8):  # blobs, so binary encodings see realistic runs
        yy, xx = np.mgrid[:size, :size] / size  # (H, W)
        cy, cx, r = rng.uniform(0.2, 0.8, 3)
        masks.append(np.clip(1.2 - np.hypot(yy - cy, xx - cx) / (0.5 * r), 0, 1).astype(np.float32))
    rows = []
    with Publisher("tcp://127.0.0.1:*", sndhwm=100) as pub:
        for enc in encodings:
            rows.append(_run_phase(pub, masks, enc, count, None))
            rows.append(_run_phase(pub, masks, enc, latency_count, rate))
    return {"shape": [size, size], "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224, help="mask side in pixels (masks are size x size)")
    ap.add_argument("--count", type=int, default=5000, help="masks in the throughput phase")
    ap.add_argument("--rate", type=float, default=200.0, help="pace of the latency phase, Hz")
    ap.add_argument("--latency-count", type=int, default=1000, help="masks in the latency phase")
    ap.add_argument("--encodings", default=",".join(ENCODINGS), help="comma-separated encodings")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default bench/results/zmq-loopback-<date>.json)")
    ap.add_argument("--subscriber", help=argparse.SUPPRESS)  # internal: run as the child process
    args = ap.parse_args(argv)
    if args.subscriber:
        _subscriber(args.subscriber, idle_s=1.0)
        return 0
    machine = machine_info()  # the load before the run adds its own
    results = run(args.size, args.count, args.rate, args.latency_count, args.encodings.split(","))
    report = make_report(
        "zmq_loopback", command_line(argv, "python -m streamavs.bench.zmq_loopback"), machine=machine,
        targets={"u8_receive_rate_hz_min": 2000, "u8_latency_p99_ms_max": 2.0}, **results,
    )
    report["machine"]["load_average_1m_at_end"] = os.getloadavg()[0]  # other work shares this CPU
    rows = {(r["encoding"], r["paced_hz"] is not None): r for r in report["rows"]}
    if ("u8", False) in rows and ("u8", True) in rows:
        rate, p99 = rows["u8", False]["receive_rate_hz"], rows["u8", True].get("latency_ms", {}).get("p99")
        report["summary_u8"] = {
            "receive_rate_hz": rate, "latency_p99_ms": p99,
            "meets_targets": bool(rate >= 2000 and p99 is not None and p99 <= 2.0),
        }  # fmt: skip
    out = write_json(report, args.out or default_out("zmq-loopback"))
    for row in report["rows"]:
        lat = row.get("latency_ms", {})
        p50, p99 = lat.get("p50", float("nan")), lat.get("p99", float("nan"))
        print(
            f"{row['encoding']:>4} paced={row['paced_hz']!s:>5}  recv {row['receive_rate_hz']:8.0f}/s  "
            f"lost {row['lost']:4d}  latency p50 {p50:.3f} p99 {p99:.3f} ms  "
            f"publish() p50 {row['publish_call_ms']['p50']:.3f} ms"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
