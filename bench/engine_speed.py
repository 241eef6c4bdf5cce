"""Model-only latency of an engine: ONNX Runtime (per thread count) vs PyTorch eager; JSON to bench/results/.

    python -m streamavs.bench.engine_speed                      # avs_lite + temporal, 224x224, random weights
    python -m streamavs.bench.engine_speed --checkpoint best.pt --ort-threads 2 1 --torch-threads 2
    python -m streamavs.bench.engine_speed --engine engines/streamavs-real-lite.json \
        --engine engines/streamavs-real-lite-int8.json --ort-threads 1 2 --torch-threads   # INT8 vs FP32

With several ``--engine`` they are timed interleaved, call by call (A, B, A, B, ...; each with its
own cache), so that a machine shared with other work slows them alike: ``ratio_vs_first`` (the
first engine's median over each one's, per thread count) is the figure to compare; absolute
times hold only for the load the record states.

"Model-only": one ``engine.run(frame, log_mel, cache)`` per sample (the numpy <-> runtime copies
included; capture, resize and the log-mel front end excluded), on a fixed sequence of synthetic
frames with the cache carried from call to call, after a warm-up. Without --checkpoint a
random-weight checkpoint is built (weights do not change the cost); with --engine, the eager rows
run the checkpoint the engine was exported from when it lies beside the manifest, else the
manifest's own architecture with random weights. The ONNX engine is exported
(with its parity check) into a temporary folder unless --engine names one.

Records median / p95 / mean / min / max in milliseconds, FPS at the median, and eager/ORT speed-ups.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamavs.bench.report import (check_counts, command_line, default_out, machine_info, now_iso, run_script,
                                    write_json)
from streamavs.errors import InputError, require

PROGRAM = "python -m streamavs.bench.engine_speed"


def time_engine(engine, inputs: list[tuple[np.ndarray, np.ndarray]], repeats: int, warmup: int) -> dict[str, float]:
    """Latency statistics (ms) of `repeats` engine.run calls after `warmup` untimed ones."""
    return time_interleaved({"engine": engine}, inputs, repeats, warmup)["engine"]


def time_interleaved(engines: dict[str, Any], inputs: list[tuple[np.ndarray, np.ndarray]], repeats: int,
                     warmup: int) -> dict[str, dict[str, float]]:
    """Latency statistics (ms) of each engine over `repeats` engine.run calls after `warmup` untimed ones, the
    engines timed call by call in turn (A, B, A, B, ...), each carrying its own cache."""
    caches = {k: e.initial_cache() for k, e in engines.items()}
    ms = {k: np.empty(repeats) for k in engines}
    for i in range(warmup + repeats):
        frame, mel = inputs[i % len(inputs)]
        for key, engine in engines.items():
            t0 = time.perf_counter()
            caches[key] = engine.run(frame, mel, caches[key]).cache  # run() returns host arrays: work is finished
            if i >= warmup:
                ms[key][i - warmup] = (time.perf_counter() - t0) * 1e3
    out = {}
    for key, a in ms.items():
        median = float(np.median(a))
        out[key] = {"repeats": repeats, "warmup": warmup, "median_ms": median, "p95_ms": float(np.percentile(a, 95)),
                    "mean_ms": float(a.mean()), "min_ms": float(a.min()), "max_ms": float(a.max()),
                    "fps_at_median": 1e3 / median}
    return out


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


def engine_parser(doc: str, name: str, *, repeats: int, warmup: int) -> argparse.ArgumentParser:
    """The command line of the runners that time ONNX engines per thread count (engine_profile, session_sweep):
    `doc` is the runner's module docstring, `name` names its default report, bench/results/<name>-<date>.json."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--engine", action="append", required=True, help="an ONNX engine (.json, .onnx or name); repeatable")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="ONNX Runtime intra-op threads, a row each")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed runs per row")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed runs before them")
    parser.add_argument("--out", type=Path, default=None, help=f"JSON path (default bench/results/{name}-<date>.json)")
    return parser


def check_engine_names(names: list[str]) -> None:
    """InputError when two engines share a name: their sessions and rows would overwrite each other."""
    if len(set(names)) != len(names):
        raise InputError(f"engine names must differ to be told apart in the record, got {names}; "
                         "give each engine once, or copy one under another name")


def _model_from_manifest(manifest, path: Path) -> Path:
    """A random-weight streaming checkpoint of the architecture `manifest` records (model config and
    temporal config), written to `path`: eager rows then time the engine's own architecture."""
    torch = require("torch", "train", "eager (PyTorch) rows")
    from streamavs.model.config import ModelConfig
    from streamavs.model.segmenter import AVSSegmenter
    from streamavs.model.streaming import StreamingSegmenter, save_streaming_checkpoint
    from streamavs.model.temporal import TemporalConfig, TemporalStage

    torch.manual_seed(0)
    seg = AVSSegmenter(ModelConfig.from_dict(dict(manifest.model["config"])), load_pretrained=False)
    temporal_config = manifest.model.get("temporal_config")
    temporal = TemporalStage(TemporalConfig.from_dict(dict(temporal_config))) if temporal_config else None
    save_streaming_checkpoint(path, StreamingSegmenter(seg, temporal).eval(), {})
    return path


def eager_checkpoint(engine_path: Path, manifest, tmp: Path) -> tuple[Path, str]:
    """The checkpoint eager rows time for an engine given without --checkpoint, and what it is: the one
    the engine was exported from when it lies beside the manifest, else the manifest's architecture
    with random weights. InputError when the manifest records neither."""
    from streamavs.bench.latency_engines import checkpoint_beside

    beside = checkpoint_beside(engine_path)
    if beside is not None:
        return beside, str(beside)
    if not isinstance(manifest.model.get("config"), dict):
        raise InputError(f"eager rows need the engine's architecture, but {engine_path} has no exported-from "
                         "checkpoint beside it and no model config in its manifest; pass --checkpoint, or "
                         "--torch-threads with no value for no eager rows")
    return _model_from_manifest(manifest, tmp / "eager.pt"), "random weights, the engine's architecture (manifest)"


def _engine_checkpoint(args: argparse.Namespace, tmp: Path) -> tuple[Path | None, str]:
    """The checkpoint to export from when no --engine is given (--checkpoint, else random weights)."""
    if args.checkpoint:
        return Path(args.checkpoint), str(args.checkpoint)
    require("torch", "train", "exporting an engine to time (no --engine given)")
    ckpt = _random_checkpoint(tmp / f"{args.model}-{args.size}.pt", args.model, args.size, args.window)
    return ckpt, "random weights"


def run(args: argparse.Namespace, argv: list[str] | None = None) -> dict[str, Any]:
    check_counts(args.repeats, args.warmup)
    machine = machine_info()  # before the work: its load average says how busy the machine was
    from streamavs.engine import load_engine
    from streamavs.engine.base import resolve_engine
    from streamavs.training.export import export_engine, parity_inputs

    if args.engine and len(args.engine) > 1:
        return run_compare(args, machine, argv)
    with tempfile.TemporaryDirectory(prefix="engine-speed-") as tmp:
        if args.engine:
            engine_path = resolve_engine(args.engine[0])
            ckpt, ckpt_note = (Path(args.checkpoint), str(args.checkpoint)) if args.checkpoint else (None, None)
            export_s = None
        else:
            ckpt, ckpt_note = _engine_checkpoint(args, Path(tmp))
            t0 = time.perf_counter()
            engine_path = export_engine(ckpt, "onnx", Path(tmp) / "engines", n_check=args.n_check, threads=1).manifest_path
            export_s = time.perf_counter() - t0
        results: dict[str, Any] = {}
        with load_engine(engine_path, threads=1) as probe:
            size = probe.frame_size[0]
            manifest = probe.manifest
        if args.torch_threads:
            require("torch", "train", "eager (PyTorch) rows (--torch-threads with no value: none)")
            if ckpt is None:
                ckpt, ckpt_note = eager_checkpoint(engine_path, manifest, Path(tmp))
        inputs, source = parity_inputs(size, 16, seed=1)
        for n in args.ort_threads:
            with load_engine(engine_path, threads=n) as engine:
                results[f"onnxruntime_{n}t"] = time_engine(engine, inputs, args.repeats, args.warmup)
            print(f"onnxruntime {n} thread(s): {results[f'onnxruntime_{n}t']['median_ms']:.2f} ms median", file=sys.stderr)
        for n in args.torch_threads:
            results[f"torch_eager_{n}t"] = _time_eager(ckpt, n, inputs, args.repeats, args.warmup)
            print(f"torch eager {n} thread(s): {results[f'torch_eager_{n}t']['median_ms']:.2f} ms median", file=sys.stderr)
    speedups = {
        f"{e}/{o}": results[e]["median_ms"] / results[o]["median_ms"]
        for e in results if e.startswith("torch") for o in results if o.startswith("onnxruntime")
    }
    return {
        "benchmark": "engine_speed",
        "command": command_line(argv, program=PROGRAM),
        "date": now_iso(),
        "machine": machine,
        "engine": {"name": manifest.name, "model": manifest.model.get("name"), "frame": list(manifest.frame.size),
                   "temporal_window": manifest.temporal.window if manifest.temporal else None,
                   "cache_shape": list(manifest.cache_shape), "exporter": manifest.export.get("exporter"),
                   "opset": manifest.export.get("opset"), "parity": manifest.export.get("parity"),
                   "checkpoint": ckpt_note},  # what the eager rows ran (None: no eager rows)
        "export_seconds": export_s,
        "inputs": f"{source}, cycled; cache carried between calls",
        "results": results,
        "speedup_median": speedups,
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,  # shared machine?
    }


def _time_eager(ckpt: Path, threads: int, inputs: list[tuple[np.ndarray, np.ndarray]], repeats: int,
                warmup: int) -> dict[str, float]:
    """Latency statistics of the PyTorch eager engine of `ckpt` at `threads` threads."""
    from streamavs.engine.torch import TorchEngine

    with TorchEngine.from_checkpoint(ckpt, threads=threads) as engine:
        return time_engine(engine, inputs, repeats, warmup)


def run_compare(args: argparse.Namespace, machine: dict[str, Any], argv: list[str] | None = None) -> dict[str, Any]:
    """Several engines timed interleaved per ONNX Runtime thread count; ratios against the first engine."""
    from streamavs.engine import load_engine
    from streamavs.engine.base import resolve_engine
    from streamavs.engine.manifest import read_manifest
    from streamavs.training.export import parity_inputs

    paths = [resolve_engine(e) for e in args.engine]
    manifests = [read_manifest(p) for p in paths]
    keys = [m.name for m in manifests]
    check_engine_names(keys)
    if len({m.frame.size for m in manifests}) != 1:
        raise InputError(f"engines to compare must take the same frame size, got {[m.frame.size for m in manifests]}; "
                         "export them at one size")
    inputs, source = parity_inputs(manifests[0].frame.size[0], 16, seed=1)
    results: dict[str, Any] = {}
    ratios: dict[str, dict[str, float]] = {}
    for n in args.ort_threads:
        engines = {k: load_engine(p, threads=n) for k, p in zip(keys, paths)}
        try:
            timed = time_interleaved(engines, inputs, args.repeats, args.warmup)
        finally:
            for engine in engines.values():
                engine.close()
        for key, stats in timed.items():
            results[f"{key}_{n}t"] = stats
        first = timed[keys[0]]["median_ms"]
        ratios[f"{n}t"] = {k: first / timed[k]["median_ms"] for k in keys[1:]}
        line = ", ".join(f"{k} {timed[k]['median_ms']:.2f} ms" for k in keys)
        print(f"onnxruntime {n} thread(s), interleaved: {line}; {keys[0]} / other: "
              f"{json.dumps({k: round(v, 2) for k, v in ratios[f'{n}t'].items()})}", file=sys.stderr)
    return {
        "benchmark": "engine_speed",
        "command": command_line(argv, program=PROGRAM),
        "date": now_iso(),
        "machine": machine,
        "mode": "interleaved: engines timed call by call in turn, each carrying its own cache",
        "engines": [{"name": m.name, "precision": m.precision, "model_file": m.model_file, "sha256": m.sha256,
                     "frame": list(m.frame.size), "cache_shape": list(m.cache_shape)} for m in manifests],
        "inputs": f"{source}, cycled; cache carried between calls",
        "results": results,
        "ratio_vs_first": ratios,  # first engine's median / each engine's median, per thread count
        "speedup_median": {},
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
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
    p.add_argument("--engine", action="append",
                   help="time this exported engine (.json/.onnx/name) instead of exporting one; repeat to compare "
                        "engines interleaved (ratios against the first)")
    p.add_argument("--model", default="avs_lite", help="registry name for the random checkpoint")
    p.add_argument("--size", type=int, default=224, help="frame size for the random checkpoint")
    p.add_argument("--window", type=int, default=5, help="temporal window T for the random checkpoint (1: none)")
    p.add_argument("--ort-threads", type=int, nargs="+", default=[2, 1])
    p.add_argument("--torch-threads", type=int, nargs="*", default=[2], help="eager rows; none: no eager row")
    p.add_argument("--repeats", type=int, default=200, help="timed runs per row (>= 1)")
    p.add_argument("--warmup", type=int, default=20, help="untimed runs before them (>= 0)")
    p.add_argument("--n-check", type=int, default=20, help="parity frames during the export")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default bench/results/engine-speed-<date>.json, then -2, -3, ... if taken)")
    args = p.parse_args(argv)
    record = run(args, argv)
    out = write_json(record, args.out or _free_path(default_out("engine-speed")))
    print(json.dumps({k: {"median_ms": round(v["median_ms"], 2), "p95_ms": round(v["p95_ms"], 2)}
                      for k, v in record["results"].items()}, indent=1))
    if record.get("ratio_vs_first"):
        print(f"ratio vs {record['engines'][0]['name']} (median): {json.dumps(record['ratio_vs_first'])}; wrote {out}")
    else:
        print(f"speed-up (median): {json.dumps({k: round(v, 2) for k, v in record['speedup_median'].items()})}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
