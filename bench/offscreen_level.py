"""Does an engine tell off-screen sound by its loudness? One test set, off-screen sound at three levels.

The benchmarks pan every on-screen source between the two channels with gains (1 - a, a), and
the front end hears the channels' mean: a source reaches it at half its amplitude. Off-screen
sound is drawn at the same gain (`mono_source_gain`, since 2026-11-30; before, it entered at its
own level, 6 dB louder, and engines trained then could learn "loud means off-screen"). This
runner evaluates an engine on one four-condition test set three times, with the same clips and
draws: off-screen sound as built, 6 dB quieter and 6 dB louder (the level of the benchmarks
before the fix), and reports the three robust tables.

    python -m streamavs.bench.offscreen_level --engine streamavs-real-lite-int8 --data real-test --clips 80
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from streamavs.bench.report import command_line, default_out, make_report, run_script, write_json

LEVELS = {"as_built": 1.0, "minus_6db": 0.5, "plus_6db": 2.0}  # off-screen amplitude factor per row


def evaluate_at(engine: str, data: str, clips: int, factor: float, threads: int) -> dict:
    """The engine's robust tables with every off-screen draw scaled by `factor`."""
    from streamavs.datasets import negatives
    from streamavs.evaluation import evaluate_engine_path

    draw = negatives.OffscreenBank.draw

    def scaled(self, *args, **kwargs):
        out = draw(self, *args, **kwargs)
        return dataclasses.replace(out, waveform=out.waveform * factor)

    negatives.OffscreenBank.draw = scaled
    try:
        return evaluate_engine_path(engine, data, clips=clips, progress=False, threads=threads)
    finally:
        negatives.OffscreenBank.draw = draw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="streamavs-real-lite-int8")
    parser.add_argument("--data", default="real-test")
    parser.add_argument("--clips", type=int, default=80)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = {name: evaluate_at(args.engine, args.data, args.clips, factor, args.threads)
            for name, factor in LEVELS.items()}
    report = make_report("offscreen_level", command_line(argv, "python -m streamavs.bench.offscreen_level"),
                         engine=args.engine, data=args.data, clips=args.clips, offscreen_amplitude=LEVELS,
                         results={name: {k: r[k] for k in ("gate_off", "gate_on")} for name, r in rows.items()})
    path = write_json(report, args.out or default_out("offscreen-level"))
    for name, r in rows.items():
        t = r["gate_off"]
        print(f"{name:10s} off-screen FPR {t['offscreen']['fpr']:.4f} mIoU {t['offscreen']['miou']:.2f} | "
              f"positive mIoU {t['positive']['miou']:.2f} | G-mIoU {t['global']['g_miou']:.2f} G-FPR {t['global']['g_fpr']:.4f}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
