"""The same trained gated stage with its uncertainty path disabled (a knockout).

Issue 16 asks that the full stage beat "the same stage with the uncertainty path disabled". Two
readings are measured (bench/README.md, "The gate knocked out"):

- a stage *trained* without the path (``[temporal] uncertainty = false``, the attention-only
  ablation): another network, which learns to do without the gate;
- *these* weights with the path disabled: the gate fixed at one value ``u`` everywhere and
  folded into the refinement (:meth:`streamavs.model.temporal.TemporalStage.fixed_gate_state`),
  written as an ungated stage. ``u = 0`` is what ``uncertainty = false`` means in the forward
  pass: the attended past enters the correction ungated. ``u = mean`` holds the gate at its
  average over clips that are not evaluated (validation clips from index 200 by default, past the
  200 that operating points are selected on): the past enters as strongly on average, and only
  where it enters is no longer decided per pixel.

The knockout asks whether the trained stage *uses* its gate, not whether a stage without one
could do as well: it is the weaker of the two readings, and is reported as such. Compare with
``python -m streamavs.bench.temporal_ablation --full STAGE.pt --no-uncertainty KNOCKOUT.pt``.

    python -m streamavs.bench.knockout runs/shipped-real/recovered.pt --u 0 --out runs/s7/real-u0.pt
    python -m streamavs.bench.knockout runs/shipped-real/recovered.pt --u mean --data real --out runs/s7/real-umean.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamavs.bench.report import run_script
from streamavs.errors import ConfigError, InputError

__all__ = ["MEAN_CLIPS", "MEAN_SEED_OFFSET", "knock_out_gate", "mean_uncertainty", "main"]

MEAN_CLIPS = 20  # validation clips the average gate is measured on
MEAN_SEED_OFFSET = 200  # their first index: past the 200 validation clips operating points are selected on


def knock_out_gate(checkpoint: str | Path, out: str | Path, u: float, recorded: str | None = None,
                   u_from: str = "given") -> Path:
    """Write `out`: the streaming checkpoint `checkpoint` with its stage's gate fixed at `u`, as an
    ungated stage (same segmenter, same shared weights). `recorded` names `checkpoint` in the new
    file (default: as given; pass one without a machine's layout); `u_from` says where `u` came
    from. Raises InputError for a missing file or a `u` outside [0, 1], ConfigError for a
    checkpoint without a gated stage."""
    from streamavs.engine.manifest import file_sha256
    from streamavs.model.streaming import StreamingSegmenter, save_streaming_checkpoint
    from streamavs.model.temporal import TemporalConfig, TemporalStage

    if isinstance(u, bool) or not isinstance(u, (int, float)) or not 0.0 <= u <= 1.0:  # NaN fails too
        raise InputError(f"--u must be a number in [0, 1] (the gate's fixed uncertainty; 0 lets the past in ungated) "
                         f"or 'mean', got {u!r}")
    model, extra = _gated(checkpoint)
    config = TemporalConfig.from_dict({**model.temporal.config.to_dict(), "uncertainty": False})
    stage = TemporalStage(config)
    stage.load_state_dict(model.temporal.fixed_gate_state(float(u)))
    kept = {k: v for k, v in extra.items() if k not in ("temporal_config", "temporal_state_dict")}
    out = Path(out)
    save_streaming_checkpoint(out, StreamingSegmenter(model.segmenter, stage).eval(), {
        **kept, "knockout": {
            "stage": recorded or str(checkpoint), "stage_sha256": file_sha256(checkpoint), "u": float(u), "u_from": u_from,
            "what": "the gate fixed at u and folded into the refinement (TemporalStage.fixed_gate_state); the other "
                    "keys (train_config, metrics, provenance) are the gated stage's"}})
    return out


def mean_uncertainty(checkpoint: str | Path, data: str, clips: int = MEAN_CLIPS,
                     seed_offset: int = MEAN_SEED_OFFSET, image_size: int | None = None) -> float:
    """The stage's u averaged over every pixel of every frame of `clips` validation clips of `data`
    (the temporal ablation's construction, at the model's frame size unless `image_size` is given),
    streamed as the runtime streams them."""
    from streamavs.bench.temporal_ablation import run_clip, warm_up
    from streamavs.datasets.streaming import streaming_test_split

    model, _ = _gated(checkpoint)
    warm_up(model)
    total, count = 0.0, 0
    size = image_size or model.image_size
    for clip in streaming_test_split(clips, seed_offset=seed_offset, image_size=size, data=data, split="val"):
        u = run_clip(model, clip)["uncertainty"]  # (T, H, W)
        total, count = total + float(u.sum(dtype="float64")), count + u.size
    return total / count


def _gated(checkpoint: str | Path):
    from streamavs.model.streaming import load_streaming

    if not Path(checkpoint).is_file():
        raise InputError(f"{checkpoint}: no such file; give a streaming checkpoint with a gated temporal stage "
                         "(a temporal run's temporal.pt, or a recovered engine's .pt)")
    model, extra = load_streaming(checkpoint)
    if model.temporal is None or not model.temporal.config.uncertainty:
        what = "no temporal stage" if model.temporal is None else "an ungated stage (uncertainty = false)"
        raise ConfigError(f"{checkpoint} holds {what}: nothing to knock out; give a checkpoint whose stage has the "
                          "uncertainty path")
    return model, extra


def _fixed_u(text: str) -> float | str:
    if text == "mean":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or 'mean', got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamavs.bench.knockout", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a streaming checkpoint whose temporal stage has the uncertainty path")
    parser.add_argument("--u", type=_fixed_u, default=0.0,
                        help="the gate's fixed value in [0, 1] (default 0: the past ungated), or 'mean': its average "
                             f"over {MEAN_CLIPS} validation clips of --data from index {MEAN_SEED_OFFSET}")
    parser.add_argument("--data", choices=("synthetic", "real"), help="the clips of --u mean")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for --u mean (default 1)")
    parser.add_argument("--out", required=True, help="the checkpoint to write (.pt)")
    args = parser.parse_args(argv)
    u, u_from = args.u, "given"
    if u == "mean":
        if args.data is None:
            raise InputError("--u mean needs --data synthetic or --data real: the clips the average is taken over")
        from streamavs.bench.temporal_ablation import set_threads

        set_threads(args.threads)
        u = mean_uncertainty(args.checkpoint, args.data)
        u_from = f"mean over {MEAN_CLIPS} {args.data} validation clips from index {MEAN_SEED_OFFSET}"
    out = knock_out_gate(args.checkpoint, args.out, u, u_from=u_from)
    print(f"wrote {out}: the stage of {args.checkpoint} with its gate fixed at u = {u:.4f} ({u_from})")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
