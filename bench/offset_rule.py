"""A trained gated stage with the offset rule switched on (rule R13, bench/README.md "The offset rule").

The rule (:class:`streamavs.model.temporal.TemporalConfig` ``offset_gain``, module docstring of
:mod:`streamavs.model.temporal`) adds no weights: it changes how the stage uses its uncertainty
where the sounding probability has just fallen. This writes the same checkpoint with the rule's
gain set, so the temporal ablation streams it as any other stage:

    python -m streamavs.bench.offset_rule runs/shipped-real/recovered.pt --gain 4 --out runs/s8/real-g4.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamavs.bench.report import run_script
from streamavs.errors import InputError

__all__ = ["with_offset_rule", "main"]


def with_offset_rule(checkpoint: str | Path, out: str | Path, gain: float) -> Path:
    """Write `out`: the streaming checkpoint `checkpoint` with its stage's ``offset_gain`` set to
    `gain` (same weights). Raises InputError for a missing file, ConfigError for a stage without
    the uncertainty path or a gain that is not a finite number >= 0."""
    from streamavs.engine.manifest import file_sha256
    from streamavs.model.streaming import StreamingSegmenter, load_streaming, save_streaming_checkpoint
    from streamavs.model.temporal import TemporalConfig, TemporalStage

    if not Path(checkpoint).is_file():
        raise InputError(f"{checkpoint}: no such file; give a streaming checkpoint with a gated temporal stage")
    model, extra = load_streaming(checkpoint)
    if model.temporal is None:
        raise InputError(f"{checkpoint} has no temporal stage: the offset rule scales the stage's uncertainty")
    stage = TemporalStage(TemporalConfig.from_dict({**model.temporal.config.to_dict(), "offset_gain": gain}))
    stage.load_state_dict(model.temporal.state_dict())
    kept = {k: v for k, v in extra.items() if k not in ("temporal_config", "temporal_state_dict")}
    out = Path(out)
    save_streaming_checkpoint(out, StreamingSegmenter(model.segmenter, stage).eval(), {
        **kept, "offset_rule": {"stage_sha256": file_sha256(checkpoint), "gain": gain}})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamavs.bench.offset_rule", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a streaming checkpoint whose temporal stage has the uncertainty path")
    parser.add_argument("--gain", type=float, required=True, help="offset_gain: mask logits taken off per unit of u "
                        "where the sounding probability fell (0: the gate is only released there)")
    parser.add_argument("--out", required=True, help="the checkpoint to write (.pt)")
    args = parser.parse_args(argv)
    out = with_offset_rule(args.checkpoint, args.out, args.gain)
    print(f"wrote {out}: the stage of {args.checkpoint} with the offset rule at gain {args.gain}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
