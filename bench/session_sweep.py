"""ONNX Runtime session options for an engine, chosen by measurement: one setting changed at a time.

    python -m streamavs.bench.session_sweep --engine engines/streamavs-real-lite.json \\
        --engine engines/streamavs-real-lite-int8.json --threads 1 2 --out bench/results/session-sweep-<date>.json

For each thread count, every engine is loaded once per variant of
:class:`streamavs.engine.onnxruntime.SessionSettings` (the backend's defaults, then each option
changed alone: graph optimisation level, memory arena, memory pattern, parallel execution) and
all those sessions are timed interleaved, call by call, on the same cycled
frames with each session carrying its own cache (``engine_speed.time_interleaved``). A machine
shared with other work slows every variant alike, so ``vs_default`` (the default's median over
the variant's, per engine and thread count) is the figure to read; > 1 means the variant is faster.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

from streamavs.bench.engine_speed import check_engine_names, engine_parser, time_interleaved
from streamavs.bench.report import (check_counts, command_line, default_out, machine_info, now_iso, run_script,
                                    write_json)
from streamavs.errors import InputError

# Variant name -> the fields it changes from the backend's defaults (threads are set per row).
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "graph_basic": {"graph_optimization": "basic"},
    "graph_extended": {"graph_optimization": "extended"},
    "no_memory_arena": {"memory_arena": False},
    "no_memory_pattern": {"memory_pattern": False},
    "parallel_2_inter_op": {"execution_mode": "parallel", "inter_op_threads": 2},
}
# Not a candidate: spinning (threads busy-wait between nodes and runs). It burns the cores that
# capture, audio and publishing need on a 2-core machine, and in an interleaved measurement its
# still-spinning threads slow whichever session runs next (measured: 2x), so no fair ratio exists.


def chosen_variants(names: list[str] | None) -> dict[str, dict[str, Any]]:
    """The variants `--variants` names (all when none), always with `default`, the baseline of every ratio.
    InputError for a name that is not a variant."""
    if not names:
        return dict(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise InputError(f"unknown --variants {unknown}; valid: {', '.join(VARIANTS)}")
    return {k: v for k, v in VARIANTS.items() if k == "default" or k in names}


def run(args: argparse.Namespace, argv: list[str] | None = None) -> dict[str, Any]:
    from streamavs.engine import load_engine
    from streamavs.engine.base import resolve_engine
    from streamavs.engine.manifest import read_manifest
    from streamavs.engine.onnxruntime import SessionSettings
    from streamavs.training.export import parity_inputs

    check_counts(args.repeats, args.warmup)
    variants = chosen_variants(args.variants)
    machine = machine_info()
    paths = [resolve_engine(e) for e in args.engine]
    manifests = [read_manifest(p) for p in paths]
    check_engine_names([m.name for m in manifests])
    inputs, source = parity_inputs(manifests[0].frame.size[0], 16, seed=1)
    rows: dict[str, Any] = {}
    for threads in args.threads:
        engines = {}
        try:
            for path, manifest in zip(paths, manifests):
                for variant, change in variants.items():
                    settings = dataclasses.replace(SessionSettings(threads=threads), **change)
                    engines[(manifest.name, variant)] = load_engine(path, settings=settings)
            timed = time_interleaved(engines, inputs, args.repeats, args.warmup)
        finally:
            for engine in engines.values():
                engine.close()
        for manifest in manifests:
            default = timed[(manifest.name, "default")]["median_ms"]
            table = {}
            for variant in variants:
                stats = timed[(manifest.name, variant)]
                table[variant] = {"settings": engines[(manifest.name, variant)].settings.to_dict(), **stats,
                                  "vs_default": default / stats["median_ms"]}
            rows[f"{manifest.name}_{threads}t"] = table
            line = ", ".join(f"{v} {t['median_ms']:.2f} ({t['vs_default']:.2f}x)" for v, t in table.items())
            print(f"{manifest.name} {threads}t: {line}", file=sys.stderr)
    return {
        "benchmark": "session_sweep",
        "command": command_line(argv, program="python -m streamavs.bench.session_sweep"),
        "date": now_iso(),
        "machine": machine,
        "mode": "every engine x variant loaded at once and timed interleaved, call by call; each its own cache",
        "engines": [{"name": m.name, "precision": m.precision, "sha256": m.sha256} for m in manifests],
        "inputs": f"{source}, cycled; cache carried between calls",
        "variants": variants,
        "results": rows,
        "load_average_at_end": list(os.getloadavg()),
    }


def main(argv: list[str] | None = None) -> int:
    p = engine_parser(__doc__, "session-sweep", repeats=150, warmup=15)
    p.add_argument("--variants", nargs="*", help=f"subset of {list(VARIANTS)} (default all; "
                   "'default' is always timed, the baseline of vs_default)")
    args = p.parse_args(argv)
    out = write_json(run(args, argv), args.out or default_out("session-sweep"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
