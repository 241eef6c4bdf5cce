"""Model-only latency of an engine: ONNX Runtime (per thread count) vs PyTorch eager; JSON to bench/results/.

    python -m streamavs.bench.engine_speed                      # avs_lite + temporal, 224x224, random weights
    python -m streamavs.bench.engine_speed --checkpoint best.pt --ort-threads 2 1 --torch-threads 2

"Model-only": one ``engine.run(frame, log_mel, cache)`` per sample (the numpy <-> runtime copies
included; capture, resize and the log-mel front end excluded), on a fixed sequence of synthetic
frames with the cache carried from call to call, after a warm-up. Without --checkpoint a
random-weight checkpoint is built (weights do not change the cost). The ONNX engine is exported
(with its parity check) into a temporary folder unless --engine names one.

Records median / p95 / mean / min / max in milliseconds, FPS at the median, and eager/ORT speed-ups.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def time_engine(engine, inputs: list[tuple[np.ndarray, np.ndarray]], repeats: int, warmup: int) -> dict[str, float]:
    """Latency statistics (ms) of `repeats` engine.run calls after `warmup` untimed ones."""
    cache = engine.initial_cache()
    ms = np.empty(repeats)
    for i in range(warmup + repeats):
        frame, mel = inputs[i % len(inputs)]
        t0 = time.perf_counter()
        cache = engine.run(frame, mel, cache).cache  # run() returns host arrays: work is finished
        if i >= warmup:
            ms[i - warmup] = (time.perf_counter() - t0) * 1e3
    median = float(np.median(ms))
    return {
        "repeats": repeats, "warmup": warmup, "median_ms": median, "p95_ms": float(np.percentile(ms, 95)),
        "mean_ms": float(ms.mean()), "min_ms": float(ms.min()), "max_ms": float(ms.max()), "fps_at_median": 1e3 / median,
    }


def _random_checkpoint(path: Path, model: str, size: int, window: int) -> Path:
    import torch

    from streamavs.model.registry import create_model
    from streamavs.model.streaming import StreamingSegmenter, save_streaming_checkpoint
    from streamavs.model.temporal import TemporalConfig, TemporalStage

    torch.manual_seed(0)
    seg = create_model(model, image_size=size, backbone_pretrained=False)
    temporal = TemporalStage(TemporalConfig(in_channels=seg.fused_channels, window=window)) if window > 1 else None
    save_streaming_checkpoint(path, StreamingSegmenter(seg, temporal).eval(), {})
    return path


def run(args: argparse.Namespace) -> dict[str, Any]:
    from streamavs.bench.report import machine_info

    machine = machine_info()  # before the work: its load average says how busy the machine was
    from streamavs.engine import load_engine
    from streamavs.engine.torch import TorchEngine
    from streamavs.training.export import export_engine, parity_inputs

    with tempfile.TemporaryDirectory(prefix="engine-speed-") as tmp:
        ckpt = Path(args.checkpoint) if args.checkpoint else _random_checkpoint(
            Path(tmp) / f"{args.model}-{args.size}.pt", args.model, args.size, args.window)
        if args.engine:
            engine_path = Path(args.engine)
            export_s = None
        else:
            t0 = time.perf_counter()
            engine_path = export_engine(ckpt, "onnx", Path(tmp) / "engines", n_check=args.n_check, threads=1).manifest_path
            export_s = time.perf_counter() - t0
        results: dict[str, Any] = {}
        with load_engine(engine_path, threads=1) as probe:
            size = probe.frame_size[0]
            manifest = probe.manifest
        inputs, source = parity_inputs(size, 16, seed=1)
        for n in args.ort_threads:
            with load_engine(engine_path, threads=n) as engine:
                results[f"onnxruntime_{n}t"] = time_engine(engine, inputs, args.repeats, args.warmup)
            print(f"onnxruntime {n} thread(s): {results[f'onnxruntime_{n}t']['median_ms']:.2f} ms median", file=sys.stderr)
        for n in args.torch_threads:
            with TorchEngine.from_checkpoint(ckpt, threads=n) as engine:
                results[f"torch_eager_{n}t"] = time_engine(engine, inputs, args.repeats, args.warmup)
            print(f"torch eager {n} thread(s): {results[f'torch_eager_{n}t']['median_ms']:.2f} ms median", file=sys.stderr)
    speedups = {
        f"{e}/{o}": results[e]["median_ms"] / results[o]["median_ms"]
        for e in results if e.startswith("torch") for o in results if o.startswith("onnxruntime")
    }
    return {
        "benchmark": "engine_speed",
        "command": " ".join(shlex.quote(a) for a in ["python", "-m", "streamavs.bench.engine_speed", *sys.argv[1:]]),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine,
        "engine": {"name": manifest.name, "model": manifest.model.get("name"), "frame": list(manifest.frame.size),
                   "temporal_window": manifest.temporal.window if manifest.temporal else None,
                   "cache_shape": list(manifest.cache_shape), "exporter": manifest.export.get("exporter"),
                   "opset": manifest.export.get("opset"), "parity": manifest.export.get("parity"),
                   "checkpoint": "random weights" if not args.checkpoint else str(args.checkpoint)},
        "export_seconds": export_s,
        "inputs": f"{source}, cycled; cache carried between calls",
        "results": results,
        "speedup_median": speedups,
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,  # shared machine?
    }


def _free_path(path: Path) -> Path:
    """`path`, or path-2, path-3, ... when it exists: recorded runs are never overwritten."""
    n = 2
    candidate = path
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return candidate


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="a streaming checkpoint (.pt); default: random weights")
    p.add_argument("--engine", help="time this exported engine (.json/.onnx) instead of exporting one")
    p.add_argument("--model", default="avs_lite", help="registry name for the random checkpoint")
    p.add_argument("--size", type=int, default=224, help="frame size for the random checkpoint")
    p.add_argument("--window", type=int, default=5, help="temporal window T for the random checkpoint (1: none)")
    p.add_argument("--ort-threads", type=int, nargs="+", default=[2, 1])
    p.add_argument("--torch-threads", type=int, nargs="+", default=[2])
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--n-check", type=int, default=20, help="parity frames during the export")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default bench/results/engine-speed-<date>.json, then -2, -3, ... if taken)")
    args = p.parse_args(argv)
    record = run(args)
    out = args.out or _free_path(RESULTS_DIR / f"engine-speed-{_dt.date.today().isoformat()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: {"median_ms": round(v["median_ms"], 2), "p95_ms": round(v["p95_ms"], 2)}
                      for k, v in record["results"].items()}, indent=1))
    print(f"speed-up (median): {json.dumps({k: round(v, 2) for k, v in record['speedup_median'].items()})}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
