"""One-off attempt (validation only): the uncertainty sets where the mask hysteresis may hold the past.

Rule fixed before it ran (2026-11-30): the full stage's published probability goes through the
runtime mask hysteresis (:mod:`streamavs.engine.hysteresis`) with a per-pixel band set by the
stage's uncertainty u, so that where u is high the frame passes through and where it is low the
past mask state holds:

- ``cut u0``: the band applies only where u < u0 (u0 in 0.7, 0.8, 0.85, 0.9, 0.95);
- ``scale``: the band is ``band * (1 - u)``.

Grid: threshold 0.6-0.75 x band 0.1-0.3. The stage without its uncertainty path runs the plain
band on the same grid. A full-stage point is a candidate when it meets the four targets against
frame-only (from the recorded paired-val200 report), beats the ablation at its shipped point
(0.7, 0.2) on both transition metrics, and no ablation point is at least as good on onsets, FPR
just after silence and flicker together. No candidate: nothing runs on test.

    python -m streamavs.bench.uncertainty_band --full runs/v10/real_full/temporal.pt \\
        --no-uncertainty runs/v10/real_att/temporal.pt --clips 200 \\
        --out bench/results/real-media-temporal-uncertainty-band-val200-2026-11-30.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from streamavs.bench.operating_curve import OperatingPoint
from streamavs.bench.report import command_line, make_report, write_json
from streamavs.bench.temporal_ablation import run_clip, set_threads, warm_up
from streamavs.datasets.streaming import streaming_test_split
from streamavs.engine.thresholds import DEFAULT_RESET

THRESHOLDS, BANDS = (0.6, 0.65, 0.7, 0.75), (0.1, 0.2, 0.3)
RULES = ("0.7", "0.8", "0.85", "0.9", "0.95", "scale")
SHIPPED = (0.7, 0.2)
FRAME_ONLY_REPORT = "bench/results/real-media-temporal-paired-val200-2026-11-30.json"


def banded(prob: np.ndarray, sounding: np.ndarray, unc: np.ndarray, threshold: float, band: float,
           rule: str) -> np.ndarray:
    """:func:`~streamavs.engine.hysteresis.hysteresis_clip` with a per-pixel band set by `rule`."""
    out, on, prev = [], None, None
    for t in range(len(prob)):
        p = prob[t]
        if on is None or not abs(sounding[t] - prev) <= DEFAULT_RESET:
            o = p
        else:
            if rule == "plain":
                b = np.float32(band)
            elif rule == "scale":
                b = np.float32(band) * (1.0 - unc[t])
            else:
                b = np.where(unc[t] < float(rule), np.float32(band), np.float32(0.0))
            o = np.clip(p + np.where(on, b, -b), 0.0, 1.0).astype(np.float32)
        on, prev = o >= threshold, sounding[t]
        out.append(o)
    return np.stack(out)


def stream(checkpoint: str, clips: int) -> list[dict]:
    from streamavs.model.streaming import load_streaming

    model, _ = load_streaming(checkpoint, use_temporal=True)
    warm_up(model)
    return [run_clip(model, clip) for clip in streaming_test_split(clips=clips, data="real", split="val")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", required=True)
    ap.add_argument("--no-uncertainty", required=True)
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    set_threads(1)
    full, att = stream(args.full, args.clips), stream(args.no_uncertainty, args.clips)
    points = {}
    for t in THRESHOLDS:
        for b in BANDS:
            points[("no_uncertainty", "plain", t, b)] = OperatingPoint(t)
            for rule in ("plain", *RULES):
                points[("full", rule, t, b)] = OperatingPoint(t)
    for i, clip in enumerate(streaming_test_split(clips=args.clips, data="real", split="val")):
        for (row, rule, t, b), point in points.items():
            out = full[i] if row == "full" else att[i]
            point.update(banded(out["prob"], out["sounding"], full[i]["uncertainty"], t, b, rule), clip)
    res = []
    for (row, rule, t, b), point in points.items():
        m = point.temporal.result()
        res.append({"row": row, "rule": rule, "threshold": t, "band": b, "miou_started": m["miou_started"],
                    "fpr_silenced": m["fpr_silenced"], "flicker": m["flicker"],
                    "g_miou": point.robust.table()["global"]["g_miou"]})
    fo = json.loads(Path(FRAME_ONLY_REPORT).read_text())["results"]["frame_only"]
    fo = {**fo["temporal"], "g_miou": fo["robust"]["global"]["g_miou"]}
    ref = next(r for r in res if r["row"] == "no_uncertainty" and (r["threshold"], r["band"]) == SHIPPED)
    ablation = [r for r in res if r["row"] == "no_uncertainty"]
    for r in res:
        r["targets_met"] = (r["fpr_silenced"] < fo["fpr_silenced"] and r["miou_started"] > fo["miou_started"]
                            and r["flicker"] < fo["flicker"] and r["g_miou"] >= fo["g_miou"] - 0.3)
        r["beats_shipped_ablation"] = (r["miou_started"] > ref["miou_started"]
                                       and r["fpr_silenced"] < ref["fpr_silenced"])
        r["dominated_by_ablation"] = any(a["miou_started"] >= r["miou_started"] and a["fpr_silenced"] <= r["fpr_silenced"]
                                         and a["flicker"] <= r["flicker"] for a in ablation)
    candidates = [r for r in res if r["row"] == "full" and r["rule"] != "plain" and r["targets_met"]
                  and r["beats_shipped_ablation"] and not r["dominated_by_ablation"]]
    best = min(candidates, key=lambda r: r["flicker"]) if candidates else None
    write_json(make_report("temporal-uncertainty-band", command_line(argv, "python -m streamavs.bench.uncertainty_band"),
                           split="val", clips=args.clips, frame_only=fo, points=res, selected=best), args.out)
    print(f"candidates: {len(candidates)}; selected: {best}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
