"""One streamed test clip, frame-only vs the full temporal stage (in the manner of RAVS Fig. 6).

Rows: the frame with its ground truth (green; a visible source that is silent in that second
outlined white), the frame-only prediction (red), the full
stage's prediction (red), the full stage's uncertainty map (colour map, colour bar 0..1).
Columns: the seconds of the clip. Each column is headed by the second, the audio played
(own sound or a negative condition) and the sounding state of the ground truth ("sounding",
"quiet", with "started" / "stopped" on transitions); each prediction panel shows the
similarity head's sounding score ``s`` and the frame's IoU (or FPR when the GT is empty).

The clip comes from the same streaming test split as :mod:`.temporal_ablation`; by default
the first clip (from ``seed_offset``) in which an object both starts and stops sounding under
its own audio and that has a negative second.

    python -m streamavs.bench.temporal_figure --frame-only F.pt --full U.pt \\
        --out bench/results/temporal-figure-<date>.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from streamavs.bench.report import default_out, run_script
from streamavs.bench.temporal_ablation import run_clip, set_threads
from streamavs.datasets.streaming import StreamClip, streaming_test_split
from streamavs.bench.operating_curve import parse_band, parse_threshold
from streamavs.engine.hysteresis import hysteresis_clip
from streamavs.engine.thresholds import Thresholds
from streamavs.errors import ConfigError, DataError, require

__all__ = ["has_both_transitions", "find_transition_clip", "render_temporal_figure", "main"]

_GT_RGB = np.array([40, 220, 60], dtype=np.float32)
_PRED_RGB = np.array([255, 40, 40], dtype=np.float32)
_SILENT_RGB = np.array([255, 255, 255], dtype=np.float32)


def has_both_transitions(clip: StreamClip, need_negative: bool = True) -> bool:
    """True when, under the clip's own audio, an object starts sounding and an object stops
    sounding (GT becomes empty), and (with `need_negative`) some second has negative audio."""
    own = np.array([a == "positive" for a in clip.audio])  # (T,)
    before = np.concatenate([[False], own[:-1]])  # (T,) second t-1 played the clip's own audio
    starts = bool((clip.started & own & before).any())
    stops = bool((clip.silenced & own & before).any())
    return starts and stops and (not need_negative or not own.all())


def find_transition_clip(seed_offset: int = 0, limit: int = 200, **split) -> StreamClip:
    """The first test clip from `seed_offset` with both transitions (and a negative second, else
    without that condition); `split` is passed to streaming_test_split (image_size, seconds, ...)."""
    for need_negative in (True, False):
        for clip in streaming_test_split(limit, seed_offset, **split):
            if has_both_transitions(clip, need_negative):
                return clip
    raise DataError(f"no test clip in {seed_offset}..{seed_offset + limit - 1} has an object that starts and stops "
                    "sounding; raise the limit or state_change_prob, or use longer clips (seconds)")


def _tint(frame: np.ndarray, mask: np.ndarray, rgb: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """(H, W, 3) uint8 with `mask` (H, W) bool blended toward `rgb`."""
    out = frame.astype(np.float32)
    out[mask] = (1.0 - alpha) * out[mask] + alpha * rgb
    return out.astype(np.uint8)


def _outline(image: np.ndarray, mask: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """`image` (H, W, 3) uint8 with the 1-pixel boundary of `mask` (H, W) bool painted `rgb`."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    out = image.copy()
    out[mask & ~inner] = rgb.astype(np.uint8)
    return out


def _state(clip: StreamClip, t: int) -> str:
    if clip.started[t]:
        return "started"
    if clip.silenced[t]:
        return "stopped"
    return "sounding" if clip.gt[t].any() else "quiet"


def _score(pred: np.ndarray, gt: np.ndarray, threshold: float) -> str:
    fg = pred > threshold
    if not gt.any():
        return f"FPR {fg.mean():.2f}"
    union = (fg | gt).sum()
    return f"IoU {(fg & gt).sum() / union:.2f}"


def render_temporal_figure(frame_only: str | Path, full: str | Path, out: str | Path, clip: StreamClip | None = None,
                           *, seed_offset: int = 0, image_size: int = 224, seconds: int = 10,
                           state_change_prob: float = 0.5, negative_second_share: float = 0.25,
                           threshold: float = Thresholds.mask, full_threshold: float | None = None,
                           full_hysteresis: float = 0.0, dpi: int = 110, data: str = "synthetic") -> dict:
    """Stream one clip through both checkpoints and write the PNG figure to `out`.

    `frame_only` is evaluated without a temporal stage, `full` with it; each row's mask is cut at
    its own operating point: `threshold` for frame-only, `full_threshold` (default `threshold`)
    for the full stage, as in the engine's manifest (``thresholds.mask``), the full stage's with
    its engine's mask hysteresis `full_hysteresis` (``thresholds.hysteresis``). `clip` defaults to
    :func:`find_transition_clip` on the `data` benchmark ("synthetic" or "real"). Returns ``{"path", "clip_index", "seed", "audio", "state",
    "sounding_frame_only", "sounding_full", "thresholds": {"frame_only", "full"}, "hysteresis", "mask_pixels":
    {"frame_only", "full"} (pixels drawn red over the clip)}``.
    """
    FigureCanvasAgg = require("matplotlib.backends.backend_agg", "train", "the temporal figure").FigureCanvasAgg
    Figure = require("matplotlib.figure", "train", "the temporal figure").Figure
    from streamavs.model.streaming import load_streaming

    base, _ = load_streaming(frame_only, use_temporal=False)
    model, _ = load_streaming(full, use_temporal=True)
    if model.temporal is None:
        raise ConfigError(f"{full} has no temporal stage; pass the full-stage checkpoint of the temporal trainer as --full")
    if clip is None:
        clip = find_transition_clip(seed_offset, image_size=image_size, seconds=seconds,
                                    state_change_prob=state_change_prob, negative_second_share=negative_second_share,
                                    data=data)
    a, b = run_clip(base, clip), run_clip(model, clip)
    cut = {1: threshold, 2: threshold if full_threshold is None else full_threshold}  # row -> mask threshold
    b["prob"] = hysteresis_clip(b["prob"], b["sounding"], cut[2], full_hysteresis)  # as the runtime publishes it
    t_len = clip.frames.shape[0]
    fig = Figure(figsize=(1.3 * t_len + 1.6, 6.4), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(4, t_len, squeeze=False, gridspec_kw={"wspace": 0.04, "hspace": 0.12})
    held = f", band {full_hysteresis:g}" if full_hysteresis else ""
    labels = ("frame + GT", f"frame-only\n(p > {threshold:g})", f"full stage\n(p > {cut[2]:g}{held})",
              "uncertainty\n(full stage)")
    image = None
    for t in range(t_len):
        frame = clip.frames[t]
        # Row 1: the sounding GT tinted and outlined green; a visible but silent source outlined white.
        gt = _outline(_tint(frame, clip.gt[t], _GT_RGB), clip.gt[t], _GT_RGB)
        if not clip.gt[t].any():
            gt = _outline(gt, clip.gt_eval[t], _SILENT_RGB)
        panels = (gt, _tint(frame, a["prob"][t] > cut[1], _PRED_RGB), _tint(frame, b["prob"][t] > cut[2], _PRED_RGB))
        for row, panel in enumerate(panels):
            axes[row, t].imshow(panel)
        image = axes[3, t].imshow(b["uncertainty"][t], cmap="magma", vmin=0.0, vmax=1.0)
        audio = "own audio" if clip.audio[t] == "positive" else clip.audio[t]
        axes[0, t].set_title(f"t={t + 1} s\n{audio}\n{_state(clip, t)}", fontsize=7)
        for row, out_ in ((1, a), (2, b)):
            axes[row, t].text(2, 2, f"s={out_['sounding'][t]:.2f}\n{_score(out_['prob'][t], clip.gt[t], cut[row])}",
                              fontsize=6, color="white", va="top", ha="left",
                              bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0})
        for row in range(4):
            axes[row, t].set_xticks([])
            axes[row, t].set_yticks([])
    for row, label in enumerate(labels):
        axes[row, 0].set_ylabel(label, fontsize=8)
    fig.colorbar(image, ax=list(axes[3]), fraction=0.02, pad=0.01, label="uncertainty")
    fig.suptitle(f"test clip {clip.index} (seed {clip.seed}): green = sounding GT, white outline = visible silent "
                 f"source, red = predicted mask (p > each row's threshold), s = sounding score", fontsize=9)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    return {"path": str(out), "clip_index": clip.index, "seed": clip.seed, "audio": list(clip.audio),
            "state": [_state(clip, t) for t in range(t_len)],
            "sounding_frame_only": a["sounding"].tolist(), "sounding_full": b["sounding"].tolist(),
            "thresholds": {"frame_only": cut[1], "full": cut[2]}, "hysteresis": full_hysteresis,
            "mask_pixels": {"frame_only": int((a["prob"] > cut[1]).sum()), "full": int((b["prob"] > cut[2]).sum())}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamavs.bench.temporal_figure", description=__doc__.split("\n")[0])
    parser.add_argument("--frame-only", required=True, help="segmenter checkpoint (run without a temporal stage)")
    parser.add_argument("--full", required=True, help="temporal checkpoint with the uncertainty head")
    parser.add_argument("--clip", type=int, help="test clip index to draw (default: search from --seed-offset)")
    parser.add_argument("--seed-offset", type=int, default=0)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--state-change-prob", type=float, default=0.5)
    parser.add_argument("--negative-second-share", type=float, default=0.25)
    parser.add_argument("--data", choices=("synthetic", "real"), default="synthetic",
                        help="test clips: the procedural benchmark or the real-media one (fetched media)")
    parser.add_argument("--threshold", type=parse_threshold, default=Thresholds.mask, help="frame-only's mask threshold")
    parser.add_argument("--full-threshold", type=parse_threshold,
                        help="the full stage's mask threshold (its engine's thresholds.mask; default --threshold)")
    parser.add_argument("--full-hysteresis", type=parse_band, default=0.0,
                        help="the full stage's mask-hysteresis band (its engine's thresholds.hysteresis; default 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, help="PNG path (default bench/results/temporal-figure-<date>.png)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    split = dict(image_size=args.image_size, seconds=args.seconds, state_change_prob=args.state_change_prob,
                 negative_second_share=args.negative_second_share, data=args.data)
    clip = next(iter(streaming_test_split(1, args.clip, **split))) if args.clip is not None else None
    out = args.out or default_out("temporal-figure", "png")
    info = render_temporal_figure(args.frame_only, args.full, out, clip, seed_offset=args.seed_offset,
                                  threshold=args.threshold, full_threshold=args.full_threshold,
                                  full_hysteresis=args.full_hysteresis, **split)
    print(f"wrote {info['path']} (test clip {info['clip_index']}: {' '.join(info['state'])})")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
