"""Temporal-stage ablation: frame-only vs temporal attention vs attention + uncertainty, streamed.

Every model is run the way the live pipeline runs it: FRAME BY FRAME through
:class:`~streamavs.model.streaming.StreamingSegmenter`, the feature cache carried from one
call to the next (zeros at the start of each clip), never the batch ``forward_clip``.

Test data (deterministic): synthetic single-source clips of the TEST split, clip i of the run
is ``split_seed("test", seed_offset + i)``, with frequent sounding-state changes
(``state_change_prob``, default 0.5: sources start and stop between seconds). On top of that a
``negative_second_share`` of the seconds get negative audio (silence / noise / off-screen, drawn
by :func:`streamavs.datasets.conditions.make_negative` with the evaluation noise types, spliced
into whole seconds) so negatives pass through the same front end and rules as in training.
The ground truth of a second is the union of the visible objects that sound in it under the
audio actually played: empty in negative seconds and in seconds whose source is quiet.

Metrics (each row cut at its main threshold: 0.5 for frame-only, ``--at`` for the stages, the
manifest's for an engine):

- :class:`~streamavs.metrics.TemporalMeter`: mIoU on just-started frames (percent), FPR on
  just-silenced frames (fraction), flicker on GT-stable pixels (fraction).
- :class:`~streamavs.metrics.ErrorDetectionMeter` / :class:`~streamavs.metrics.CalibrationMeter`
  (``uncertainty``): AUROC of the per-pixel uncertainty for detecting the pixels where the
  thresholded mask is wrong, on transition frames (just started or just silenced) and on all
  frames, beside the AUROC of the probability's own closeness to the threshold
  (``margin_auroc``, :func:`~streamavs.metrics.threshold_margin`: what an uncertainty must beat
  to tell more than the mask already does); expected calibration error of the mask probability
  on the same two sets (frame-only's is "before the stage", the full stage's "after").
- FPR just after silence split by the audio played in that second (``silenced_by_audio``:
  the source went quiet under its own sound, silence, noise, off-screen sound).
- :class:`~streamavs.metrics.RobustMeter`: per audio condition and G-mIoU / G-F / G-FPR. A
  positive-audio second in which no source sounds (the object went quiet) counts as
  "silence" with the sources' visible mask as ``gt_eval``; negative seconds use the sounding
  mask of the clip's own audio, or the sources' visible mask when that is empty.
  ``state_silent`` repeats the quiet-object seconds alone.

CLI (writes JSON and prints the table with the targets, full vs frame-only)::

    python -m streamavs.bench.temporal_ablation --frame-only F.pt --no-uncertainty N.pt \\
        --full U.pt --clips 60 --out bench/results/temporal-ablation-<date>.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from streamavs.audio import LogMelParams
from streamavs.bench.report import command_line, default_out, fmt_cell, make_report, run_script, write_json
from streamavs.datasets.streaming import NEGATIVES, STREAM_SPLITS, StreamClip, scene_config, streaming_test_split
from streamavs.bench.operating_curve import (SELECTION_RULES, OperatingPoint, curve_table, operating_points, parse_bands,
                                             parse_point, parse_thresholds, select_operating_point, silenced_table)
from streamavs.bench.paired import paired_comparisons, paired_table
from streamavs.bench.uncertainty_table import uncertainty_table
from streamavs.bench.temporal_targets import TARGET_ERROR_AUROC, TARGET_G_MIOU_DROP, compare, compare_uncertainty
from streamavs.engine.thresholds import DEFAULT_RESET, Thresholds
from streamavs.errors import ConfigError, InputError
from streamavs.files import jsonable
from streamavs.metrics import DEFAULT_RESAMPLES

__all__ = ["StreamClip", "scene_config", "streaming_test_split", "run_clip", "run_clip_engine", "warm_up", "set_threads",
           "evaluate_streaming", "evaluate_engine_streaming",
           "OperatingPoint", "operating_points", "select_operating_point", "format_table", "compare", "compare_uncertainty",
           "TARGET_G_MIOU_DROP", "TARGET_ERROR_AUROC", "main"]

FRAME_ONLY_THRESHOLD = Thresholds.mask  # the mask threshold of every main row; the targets compare with frame-only here


def run_clip(model, clip: StreamClip) -> dict[str, np.ndarray]:
    """Stream `clip` through `model` (a StreamingSegmenter in eval mode) frame by frame.

    The cache starts at ``model.initial_cache()`` and is carried between frames. Returns
    ``{"prob", "uncertainty": (T, H, W) float32 in [0, 1], "sounding": (T,) float32,
    "ms": (T,) float64 forward time per frame}``.
    """
    import torch

    if clip.frames.shape[1] != model.image_size:
        raise ConfigError(f"the model takes {model.image_size}x{model.image_size} frames, the test clips are "
                          f"{clip.frames.shape[1]}x{clip.frames.shape[2]}; pass image_size={model.image_size}")

    def step(frame: np.ndarray, log_mel: np.ndarray, cache):
        prob, unc, sounding, cache = model(torch.from_numpy(np.ascontiguousarray(frame))[None],  # (1, H, W, 3) uint8
                                           torch.from_numpy(np.ascontiguousarray(log_mel))[None, None], cache)
        return prob[0, 0].numpy(), unc[0, 0].numpy(), float(sounding[0]), cache

    with torch.inference_mode():
        return _stream(clip, step, model.initial_cache())


def _stream(clip: StreamClip, step, cache) -> dict[str, np.ndarray]:
    """The frame-by-frame loop of :func:`run_clip` and :func:`run_clip_engine`: `step(frame,
    log_mel, cache) -> (prob (H, W), uncertainty (H, W), sounding, new cache)`, timed per call."""
    probs, uncs, snd, ms = [], [], [], []
    for t in range(clip.frames.shape[0]):
        start = time.perf_counter()
        prob, unc, sounding, cache = step(clip.frames[t], clip.log_mel[t], cache)
        ms.append(1e3 * (time.perf_counter() - start))
        probs.append(prob)
        uncs.append(unc)
        snd.append(sounding)
    return {"prob": np.clip(np.stack(probs), 0.0, 1.0).astype(np.float32), "uncertainty": np.stack(uncs),
            "sounding": np.asarray(snd, dtype=np.float32), "ms": np.asarray(ms)}


def warm_up(model, calls: int = 2) -> None:
    """A few forwards on a black frame and silence, so one-off allocation is not timed."""
    import torch

    size = model.image_size
    with torch.inference_mode():
        for _ in range(calls):
            model(torch.zeros(1, size, size, 3, dtype=torch.uint8), torch.zeros(1, 1, *LogMelParams().example_shape), model.initial_cache())


def set_threads(threads: int) -> None:
    """torch intra-op threads for the run (the CLIs call this; importing does not)."""
    import torch

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive integer, got {threads!r}")
    torch.set_num_threads(threads)


def evaluate_streaming(checkpoint: str | Path, use_temporal: bool, clips: int, seed_offset: int = 0,
                       state_change_prob: float = 0.5, negative_second_share: float = 0.25,
                       image_size: int = 224, seconds: int = 10, threshold: float = FRAME_ONLY_THRESHOLD,
                       data: str = "synthetic", split: str = "test", sweep: tuple[float, ...] = (),
                       bands: tuple[float, ...] = (), band: float = 0.0) -> dict:
    """Stream the test split (or, ``split="val"``, the validation clips built the same way)
    through the checkpoint's model and score it.

    Returns ``{"checkpoint", "use_temporal", "temporal_config" (or None), "temporal":
    TemporalMeter.result(), "silenced_by_audio": OperatingPoint.silenced_by_audio(), "robust":
    RobustMeter.table(), "state_silent":
    SegmentationMeter.result() of the quiet-source seconds, "counts": {"frames", "audio":
    {condition: seconds}, "eval": {condition: seconds}}, "ms_per_frame": {"mean", "p50"},
    "mean_sounding": {"sounding_gt", "empty_gt"}, "uncertainty": {"transition" | "all":
    {"error_auroc", "error_rate", "margin_auroc", "ece"}}, "area": {"predicted", "gt"}, "sweep": [{"threshold",
    "band", "temporal", "g_miou", "area"} per (threshold, band) of `sweep` x `bands`],
    "main_row": {"threshold", "band", "reset"}, "per_clip": each clip's
    CLIP_COLUMNS at it (paired_bootstrap)}`` with NaN as None. The main row is cut at `threshold` with the mask
    hysteresis `band` (default 0, none). The sweep is the model's operating curve: the same streamed probabilities cut at
    other mask thresholds, each with each mask-hysteresis band of `bands` (default: 0, none;
    :mod:`streamavs.engine.hysteresis`, reset by the streamed sounding probability). Units: mIoU, F, G-mIoU, G-F in
    percent; FPR, G-FPR, flicker, AUROC, error rate and ECE as fractions.
    """
    from streamavs.model.streaming import load_streaming

    model, extra = load_streaming(checkpoint, use_temporal=use_temporal)
    if use_temporal and model.temporal is None:
        raise ConfigError(f"{checkpoint} has no temporal stage (no 'temporal_config' in the file); evaluate it "
                          "with use_temporal=False (--frame-only), or pass a checkpoint of the temporal trainer")
    warm_up(model)
    stream = dict(clips=clips, seed_offset=seed_offset, state_change_prob=state_change_prob,
                  negative_second_share=negative_second_share, image_size=image_size, seconds=seconds, data=data,
                  split=split)
    return _score(lambda clip: run_clip(model, clip), stream, (threshold, band, DEFAULT_RESET), sweep, bands, {
        "checkpoint": str(checkpoint), "use_temporal": bool(use_temporal),
        "temporal_config": extra.get("temporal_config") if use_temporal else None})


def evaluate_engine_streaming(engine: str | Path, clips: int, sweep: tuple[float, ...] = (),
                              bands: tuple[float, ...] = (), threads: int = 1, **stream) -> dict:
    """Stream the clips through an ENGINE as shipped (any backend, e.g. the INT8 ONNX Runtime
    engine), its main row at the manifest's operating point (``thresholds.mask``, with
    ``thresholds.hysteresis`` and its reset applied per clip as the runtime applies them per
    stream); `stream`: the keywords of :func:`evaluate_streaming` that choose the clips (the
    image size defaults to the engine's frame size); `threads`: ONNX Runtime threads. The same
    result as :func:`evaluate_streaming` with ``"engine"`` and ``"operating_point"`` instead of
    the checkpoint keys; the uncertainty metrics and ``state_silent`` use the engine's
    probabilities before the band."""
    from streamavs.engine import load_engine

    with load_engine(engine, threads=threads) as eng:
        size = stream.setdefault("image_size", eng.frame_size[0])
        if tuple(eng.frame_size) != (size, size):
            raise ConfigError(f"engine {eng.name!r} takes {eng.frame_size[0]}x{eng.frame_size[1]} frames, the clips are "
                              f"{size}x{size}; pass --image-size {eng.frame_size[0]}")
        limits = eng.manifest.thresholds
        return _score(lambda clip: run_clip_engine(eng, clip), {"clips": clips, **stream},
                      (limits.mask, limits.hysteresis, limits.hysteresis_reset), sweep, bands,
                      {"engine": eng.name, "precision": eng.manifest.precision, "backend": eng.backend,
                       "operating_point": limits.to_dict()})


def run_clip_engine(engine, clip: StreamClip) -> dict[str, np.ndarray]:
    """:func:`run_clip` for an engine (streamavs.engine): the cache carried from frame to frame."""

    def step(frame: np.ndarray, log_mel: np.ndarray, cache):
        out = engine.run(frame, log_mel, cache)
        return out.mask_prob, out.uncertainty, float(out.sounding), out.cache

    return _stream(clip, step, engine.initial_cache())


def _score(run, stream: dict, main: tuple[float, float, float], sweep: tuple[float, ...], bands: tuple[float, ...],
           about: dict) -> dict:
    """The metrics of :func:`evaluate_streaming` for `run(clip) -> outputs` over the clips of
    `stream` (the keywords of streaming_test_split); `main`: (threshold, band, reset) of the
    main row; `about` heads the result."""
    from streamavs.metrics import CalibrationMeter, ErrorDetectionMeter, SegmentationMeter, threshold_margin

    threshold, band, reset = main
    curve_thresholds = sweep or ((threshold,) if bands else ())  # bands alone: measured at `threshold`
    grid = [(float(t), float(b)) for t in curve_thresholds for b in (bands or (0.0,))]
    points = {(float(threshold), float(band)): OperatingPoint(float(threshold), float(band), reset)}
    for key in grid:  # each point measured once, with the main row's reset
        points.setdefault(key, OperatingPoint(*key, reset))
    point, curve, quiet = points[(float(threshold), float(band))], [points[key] for key in grid], SegmentationMeter(threshold)
    errors = {k: ErrorDetectionMeter(threshold) for k in ("transition", "all")}
    margins = {k: ErrorDetectionMeter(threshold) for k in ("transition", "all")}  # the baseline u must beat
    calibration = {k: CalibrationMeter() for k in ("transition", "all")}
    audio_counts: dict[str, int] = {}
    eval_counts: dict[str, int] = {}
    ms, snd_pos, snd_neg, frames = [], [], [], 0
    for clip in streaming_test_split(**stream):
        out = run(clip)
        for p in points.values():
            p.update(out["prob"], clip, out["sounding"])
        for key, sel in (("transition", clip.started | clip.silenced), ("all", slice(None))):
            errors[key].update(out["prob"][sel], clip.gt[sel], np.clip(out["uncertainty"][sel], 0.0, 1.0))
            margins[key].update(out["prob"][sel], clip.gt[sel], threshold_margin(out["prob"][sel], threshold))
            calibration[key].update(out["prob"][sel], clip.gt[sel])
        conds = np.array(clip.eval_condition)
        for cond in sorted(set(clip.eval_condition)):
            eval_counts[cond] = eval_counts.get(cond, 0) + int((conds == cond).sum())
        state_quiet = np.array([a == "positive" for a in clip.audio]) & (conds == "silence")
        if state_quiet.any():
            quiet.update(out["prob"][state_quiet], clip.gt_eval[state_quiet])
        for a in clip.audio:
            audio_counts[a] = audio_counts.get(a, 0) + 1
        has_gt = clip.gt.any(axis=(1, 2))
        snd_pos += out["sounding"][has_gt].tolist()
        snd_neg += out["sounding"][~has_gt].tolist()
        ms += out["ms"].tolist()
        frames += clip.frames.shape[0]
    mean = lambda xs: float(np.mean(xs)) if xs else float("nan")  # noqa: E731
    return jsonable({  # NaN/inf -> None: strict JSON, and 'not measured' in the targets
        **about,
        "temporal": point.temporal.result(),
        "silenced_by_audio": point.silenced_by_audio(),
        "uncertainty": {k: _uncertainty(errors[k].result(), margins[k].result(), calibration[k].result()) for k in errors},
        "robust": point.robust.table(),
        "state_silent": quiet.result(),
        "counts": {"frames": frames, "audio": audio_counts, "eval": eval_counts},
        "ms_per_frame": {"mean": mean(ms), "p50": float(np.median(ms)) if ms else float("nan")},
        "mean_sounding": {"sounding_gt": mean(snd_pos), "empty_gt": mean(snd_neg)},
        "area": point.area(),
        "main_row": {"threshold": point.threshold, "band": point.band, "reset": point.reset},
        "per_clip": point.per_clip().tolist(),
        "sweep": [{"threshold": p.threshold, "band": p.band, "temporal": p.temporal.result(),
                   "g_miou": p.robust.table()["global"]["g_miou"], "area": p.area()} for p in curve],
    })


def _uncertainty(errors: dict, margin: dict, calibration: dict) -> dict:
    """One "uncertainty" entry of the result from its three meters' results."""
    return {"error_auroc": errors["auroc"], "error_rate": errors["error_rate"], "margin_auroc": margin["auroc"], "ece": calibration["ece"]}


# ----------------------------------------------------------------------------- report

_ROWS = (("frame_only", "frame-only"), ("no_uncertainty", "attention, no uncertainty"), ("full", "full stage"),
         ("engine", "engine at manifest point"))


def format_table(report: dict) -> str:
    """The rows present, their uncertainty, operating curves, paired comparisons and targets as text."""
    head = f"{'model':28s} {'mIoU start%':>11s} {'FPR silenc':>10s} {'flicker':>8s} {'mIoU_P%':>8s} " \
           f"{'G-mIoU%':>8s} {'G-F%':>7s} {'G-FPR':>7s} {'ms/frame':>8s}"
    lines = [head, "-" * len(head)]
    for key, label in _ROWS:
        r = report["results"].get(key)
        if r is None:
            continue
        t, g = r["temporal"], r["robust"]["global"]
        lines.append(f"{label:28s} {fmt_cell(t['miou_started'], 2):>11s} {fmt_cell(t['fpr_silenced'], 4):>10s} "
                     f"{fmt_cell(t['flicker'], 4):>8s} {fmt_cell(r['robust']['positive']['miou'], 2):>8s} "
                     f"{fmt_cell(g['g_miou'], 2):>8s} {fmt_cell(g['g_f'], 2):>7s} {fmt_cell(g['g_fpr'], 4):>7s} "
                     f"{fmt_cell(r['ms_per_frame']['mean'], 1):>8s}")
    lines += silenced_table(report, _ROWS)
    lines += uncertainty_table(report, _ROWS)
    lines += curve_table(report, _ROWS)
    lines += paired_table(report)
    titles = {"full": "full stage vs frame-only", "no_uncertainty": "attention, no uncertainty vs frame-only",
              "uncertainty": "full stage vs the same stage without uncertainty (base = no-uncertainty row / target)",
              "engine": "the engine at its manifest's point vs frame-only"}
    for key in ("full", "no_uncertainty", "engine", "uncertainty"):
        targets = report["targets"].get(key)
        if not targets:
            continue
        lines.append(f"\ntargets, {titles[key]}:")
        for name, row in targets.items():
            met = {True: "MET", False: "not met", None: "n/a"}[row["met"]]
            lines.append(f"  {name:22s} {fmt_cell(row['candidate'], 4):>9s} vs {fmt_cell(row['frame_only'], 4):>9s}  {met}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamavs.bench.temporal_ablation", description=__doc__.split("\n")[0])
    parser.add_argument("--frame-only", required=True, help="segmenter checkpoint, evaluated without a temporal stage")
    parser.add_argument("--no-uncertainty", help="temporal checkpoint trained without the uncertainty head")
    parser.add_argument("--full", help="temporal checkpoint with the uncertainty head")
    parser.add_argument("--engine", help="an engine as shipped (name or manifest), streamed at its manifest's "
                        "operating point (mask threshold and hysteresis): e.g. streamavs-real-lite-int8")
    parser.add_argument("--clips", type=int, default=60)
    parser.add_argument("--seconds", type=int, default=10, help="clip length (frames per clip)")
    parser.add_argument("--seed-offset", type=int, default=0, help="first test clip index")
    parser.add_argument("--state-change-prob", type=float, default=0.5)
    parser.add_argument("--negative-second-share", type=float, default=0.25)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--data", choices=("synthetic", "real"), default="synthetic",
                        help="test clips: the procedural benchmark or the real-media one (fetched media)")
    parser.add_argument("--split", choices=STREAM_SPLITS, default="test",
                        help="test (the benchmark) or val (the same clips from the validation split)")
    parser.add_argument("--sweep", type=parse_thresholds, default=(),
                        help="comma-separated mask thresholds: each model's operating curve, e.g. 0.4,0.5,0.6,0.7")
    parser.add_argument("--hysteresis", type=parse_bands, default=(),
                        help="comma-separated mask-hysteresis bands, each measured at every --sweep threshold, e.g. 0,0.1,0.2")
    parser.add_argument("--at", type=parse_point, default=(FRAME_ONLY_THRESHOLD, 0.0), metavar="THRESHOLD,BAND",
                        help="the operating point of the --full and --no-uncertainty rows (default 0.5,0: frame-only's); "
                             "frame-only is always at 0.5 without a band, an --engine at its manifest's point")
    parser.add_argument("--select", choices=SELECTION_RULES, default="flicker",
                        help="--split val: the point each stage ships at, among those meeting every target: lowest "
                             "flicker, or the largest smallest margin over the four targets (operating_curve.select_operating_point)")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES,
                        help="paired bootstrap resamples of the clips for the row-vs-row intervals (0: none)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads, and ONNX Runtime threads for --engine (default 1: on a shared CPU more "
                             "threads can be 10-100x slower)")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/temporal-ablation-<date>.json)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if args.no_uncertainty is None and args.full is None and args.engine is None:
        raise InputError("give at least one temporal model: --full, --no-uncertainty and/or --engine")
    split = dict(clips=args.clips, seed_offset=args.seed_offset, state_change_prob=args.state_change_prob,
                 negative_second_share=args.negative_second_share, image_size=args.image_size, seconds=args.seconds,
                 data=args.data, split=args.split)
    results = {}
    for key, path, temporal in (("frame_only", args.frame_only, False), ("no_uncertainty", args.no_uncertainty, True),
                                ("full", args.full, True)):
        if path is not None:
            print(f"streaming {key}: {path}", file=sys.stderr)
            threshold, band = args.at if temporal else (FRAME_ONLY_THRESHOLD, 0.0)
            results[key] = evaluate_streaming(path, temporal, **split, sweep=args.sweep, bands=args.hysteresis,
                                              threshold=threshold, band=band)
    if args.engine is not None:
        print(f"streaming the engine {args.engine}", file=sys.stderr)
        results["engine"] = evaluate_engine_streaming(args.engine, **split, sweep=args.sweep, bands=args.hysteresis,
                                                      threads=args.threads)
    stages = [k for k in ("full", "no_uncertainty", "engine") if k in results]
    targets = {k: compare(results[k], results["frame_only"]) for k in stages}
    points = {k: operating_points(results[k], results["frame_only"])
              for k in stages if args.sweep or args.hysteresis}
    if "full" in results and "no_uncertainty" in results:
        targets["uncertainty"] = compare_uncertainty(results["full"], results["no_uncertainty"])
    report = make_report(
        "temporal_ablation",
        command_line(argv, "python -m streamavs.bench.temporal_ablation"),
        torch_threads=args.threads,
        test_split={**split, "setting": "single", "threshold": FRAME_ONLY_THRESHOLD, "stage_point": list(args.at),
                    "sweep": list(args.sweep),
                    "hysteresis": list(args.hysteresis),
                    "scene_config": scene_config(args.state_change_prob, args.image_size, args.seconds).to_dict(),
                    "negatives": NEGATIVES[args.split]},
        units={"miou_started": "percent", "fpr_silenced": "fraction", "flicker": "fraction", "miou": "percent",
               "g_miou": "percent", "g_f": "percent", "fpr": "fraction", "g_fpr": "fraction",
               "error_auroc": "fraction", "error_rate": "fraction", "margin_auroc": "fraction", "ece": "fraction"},
        results=results,
        targets=targets,
        operating_points=points,
        paired=paired_comparisons(results, args.resamples) if args.resamples > 0 else {},
        paired_resamples=args.resamples,
    )
    if args.split == "val":  # an operating point is only ever selected on validation
        report["selected"] = {k: select_operating_point(points[k], args.select) for k in points}
        report["selection_rule"] = args.select
        if not points:
            print("no --sweep or --hysteresis: no operating curve, so no operating point was selected "
                  "(add e.g. --sweep 0.5,0.55,0.6,0.65,0.7 --hysteresis 0,0.1,0.2,0.3)", file=sys.stderr)
    out = write_json(report, args.out or default_out("temporal-ablation"))
    print(format_table(report))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
