"""Where an ONNX engine spends its time: ONNX Runtime's per-node profile, grouped by engine stage.

    python -m streamavs.bench.engine_profile --engine engines/streamavs-real-lite.json \\
        --engine engines/streamavs-real-lite-int8.json --threads 1 2 --out bench/results/engine-profile-<date>.json

For each engine and thread count: a session with the backend's settings
(:class:`streamavs.engine.onnxruntime.SessionSettings`) plus ``enable_profiling``, the same
cycled sequence of frames and log-mels as ``engine_speed`` with the cache carried from call to
call, warm-up runs, then ``--repeats`` profiled runs. Every node's kernel time is assigned to a
stage of the engine by the weights it reads (``streamavs.training.graph_stages``: visual
encoder, audio encoder, fusion/decoder, temporal stage) in the graph ONNX Runtime actually ran
(after its optimisations and fusions, saved from the same session). Also per operator type, so
an INT8 engine shows which operators ran in int8 (QLinearConv, QGemm, ...) and what stayed in
float or went to quantize/dequantize; and per layer (the module path of the weights a node
reads, e.g. ``segmenter.visual.body.blocks.1.0.conv_dw``), to compare layers across engines.

Kernel time is the sum over nodes of each node's median time over the measured runs (ms per
run; medians, because on a shared machine a run that another process preempts inflates a mean);
the wall time per run, also recorded, adds the session's own overhead and the input/output
copies. Profiling itself costs a little, so take speeds from ``engine_speed``, shares from here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from streamavs.bench.engine_speed import engine_parser
from streamavs.bench.report import command_line, default_out, machine_info, now_iso, run_script, write_json
from streamavs.errors import EngineError, require

INT8_OPS = ("QLinearConv", "QGemm", "QLinearMatMul", "MatMulInteger", "ConvInteger", "QLinearAdd", "QLinearMul",
            "QLinearConcat", "QLinearSigmoid", "QLinearSoftmax", "QLinearAveragePool", "QLinearGlobalAveragePool",
            "QLinearLeakyRelu", "QLinearReduceMean", "DynamicQuantizeMatMul", "MatMulIntegerToFloat")
CONVERSION_OPS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
ONNX_PURPOSE = "reading the graph ONNX Runtime ran (to assign node times to engine stages)"


def op_kind(op: str) -> str:
    """'int8' (an integer kernel), 'q/dq' (a conversion between int8 and float) or 'float'."""
    return "int8" if op in INT8_OPS else "q/dq" if op in CONVERSION_OPS else "float"


def profile_engine(manifest_path: Path, threads: int, inputs: list[tuple[np.ndarray, np.ndarray]],
                   repeats: int, warmup: int, work: Path) -> dict[str, Any]:
    """Profile one engine at one thread count; returns times per stage, group, operator and node (ms per run)."""
    import onnxruntime as ort

    onnx = require("onnx", "train", ONNX_PURPOSE)

    from streamavs.engine.manifest import check_model_file, read_manifest
    from streamavs.engine.onnxruntime import SessionSettings, session_options
    from streamavs.training.graph_stages import STAGE_GROUPS, group_of, node_stages, stage_totals

    manifest = read_manifest(manifest_path)
    model_path = manifest_path.parent / manifest.model_file
    check_model_file(manifest, model_path)
    settings = SessionSettings(threads=threads)
    so = session_options(settings)
    so.enable_profiling = True
    so.profile_file_prefix = str(work / f"{manifest.name}-{threads}t")
    optimized = work / f"{manifest.name}-{threads}t.optimized.onnx"
    so.optimized_model_filepath = str(optimized)
    session = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    names = [t.name for t in manifest.inputs]
    cache = np.zeros(manifest.cache_shape, np.float32)

    def step(i: int) -> np.ndarray:
        frame, mel = inputs[i % len(inputs)]
        return session.run(None, {names[0]: frame[None], names[1]: mel[None, None], names[2]: cache})[3]

    for i in range(warmup):
        cache = step(i)
    wall = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        cache = step(i)
        wall[i] = (time.perf_counter() - t0) * 1e3
    events = json.loads(Path(session.end_profiling()).read_text())
    # Node events of the measured runs only (the warm-up runs come first in the profile).
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    if len(runs) != warmup + repeats:
        raise EngineError(f"the profile holds {len(runs)} runs, expected {warmup + repeats}; this onnxruntime "
                          "profiles differently: record with the version in the report")
    first = runs[warmup]["ts"]
    times: dict[str, list[float]] = defaultdict(list)
    op_of: dict[str, str] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= first:
            node = e["name"][: -len("_kernel_time")]
            times[node].append(e["dur"] / 1e3)  # us -> ms
            op_of[node] = e.get("args", {}).get("op_name", "?")
    per_node = {node: float(np.median(t)) for node, t in times.items()}  # ms per run
    graph = onnx.load(str(optimized), load_external_data=False).graph
    stages = node_stages(graph)
    by_stage = stage_totals(per_node, stages)
    total = sum(per_node.values())
    by_group = {g: sum(by_stage.get(s, 0.0) for s in members) for g, members in STAGE_GROUPS.items()}
    by_op: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    by_stage_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for node, ms in per_node.items():
        by_op[op_of[node]] += ms
        by_kind[op_kind(op_of[node])] += ms
        by_stage_kind[group_of(stages.get(node, "other"))][op_kind(op_of[node])] += ms
    nodes_by_op = Counter(n.op_type for n in graph.node)
    by_layer: Counter[str] = Counter()  # module path of the weights a node reads -> ms (convolutions, linears)
    for node in graph.node:
        module = next((re.sub(r"\.(weight|bias).*$", "", i) for i in node.input
                       if i.startswith(("segmenter.", "temporal.")) and re.search(r"\.(weight|bias)", i)), None)
        if module is not None and node.name in per_node:
            by_layer[module] += per_node[node.name]
    return {
        "engine": manifest.name, "precision": manifest.precision, "threads": threads, "settings": settings.to_dict(),
        "repeats": repeats, "warmup": warmup,
        "wall_ms": {"median": float(np.median(wall)), "p95": float(np.percentile(wall, 95)), "mean": float(wall.mean())},
        "kernel_ms_per_run": total,
        "groups": {g: {"ms": v, "share": v / total} for g, v in by_group.items() if v},
        "stages": {s: {"ms": v, "share": v / total} for s, v in by_stage.items()},
        "op_kinds": {k: {"ms": v, "share": v / total} for k, v in by_kind.most_common()},
        "group_op_kinds_ms": {g: dict(c) for g, c in by_stage_kind.items()},
        "ops_ms": dict(by_op.most_common()),
        "optimized_graph_nodes_by_op": dict(nodes_by_op.most_common()),
        "layers_ms": dict(by_layer),
        "top_nodes_ms": [{"node": n, "op": op_of[n], "stage": stages.get(n, "other"), "ms": ms}
                         for n, ms in sorted(per_node.items(), key=lambda kv: -kv[1])[:20]],
    }


def run(args: argparse.Namespace, argv: list[str] | None = None) -> dict[str, Any]:
    from streamavs.bench.report import check_counts
    from streamavs.engine.base import resolve_engine
    from streamavs.engine.manifest import read_manifest
    from streamavs.training.export import parity_inputs

    check_counts(args.repeats, args.warmup)
    require("onnx", "train", ONNX_PURPOSE)  # before any work, not after the first engine's runs
    machine = machine_info()  # before the work: its load average says how busy the machine was
    engines = [resolve_engine(e) for e in args.engine]
    size = read_manifest(engines[0]).frame.size[0]
    inputs, source = parity_inputs(size, 16, seed=1)
    profiles = []
    with tempfile.TemporaryDirectory(prefix="engine-profile-") as tmp:
        for threads in args.threads:  # engines interleaved per thread count: the same machine state
            for path in engines:
                p = profile_engine(path, threads, inputs, args.repeats, args.warmup, Path(tmp))
                profiles.append(p)
                groups = ", ".join(f"{g} {v['share'] * 100:.0f}%" for g, v in p["groups"].items())
                print(f"{p['engine']} {threads}t: wall {p['wall_ms']['median']:.2f} ms, kernels "
                      f"{p['kernel_ms_per_run']:.2f} ms: {groups}", file=sys.stderr)
    return {
        "benchmark": "engine_profile",
        "command": command_line(argv, program="python -m streamavs.bench.engine_profile"),
        "date": now_iso(),
        "machine": machine,
        "inputs": f"{source}, cycled; cache carried between calls",
        "profiles": profiles,
        "load_average_at_end": list(os.getloadavg()),
    }


def main(argv: list[str] | None = None) -> int:
    args = engine_parser(__doc__, "engine-profile", repeats=100, warmup=20).parse_args(argv)
    out = write_json(run(args, argv), args.out or default_out("engine-profile"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
