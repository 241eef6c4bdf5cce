"""The paper's ablation (robust-AVS Table 4) on the synthetic or the real-media single-source benchmark, one command.

    python -m streamavs.bench.robust_ablation --out bench/results/robust-ablation-<date>.json
    python -m streamavs.bench.robust_ablation --data real --out bench/results/real-media-ablation-<date>.json

With ``--data real`` (media fetched by `streamavs data fetch`) the rows are the real_single_*
recipes (baseline / negatives / full, 30% negatives, the same budget each), the robust table is
scored on the real-media TEST split (held-out backgrounds, held-out recordings where a class
has one), and each row adds: the FPR under off-screen sounds never heard in training
(``real-unseen_offscreen``), positive mIoU of the classes with a second recording under their
training recordings (``real-test_seen_rec``) and under the held-out ones
(``real-test_heldout_rec``), and mIoU on novel sounding objects (``real-test_novel``).

Rows (recipes in training/configs/): baseline (no negatives, no similarity loss), negatives
only (10% negative audio, no similarity loss), full method (negatives + classifier-guided
similarity loss, lambda 1). Further rows change one recipe value (`--rows` picks them):
full_r20 / full_r30 are the negative-ratio sweep of the paper's Table 3 (20% / 30% negative
audio instead of 10%), full_learnable learns the cosine's scale, full_long is the
recipe of the shipped engine's segmenter (30%, 15 epochs, cosine decay) and baseline_long the
baseline with the same training budget (15 epochs, cosine decay). Each row is trained into
<runs>/<run> (--runs, default runs; or reused with --reuse, which needs every row's
<runs>/<run>/best.pt), then its best checkpoint (chosen on the validation split) is scored on
the held-out TEST split: the four-condition robust table with the similarity gate off and on,
and the FPR on noise of the types reserved for evaluation (never seen in training). Wall time per row is recorded.

The same run by hand: streamavs train --config training/configs/<recipe>.toml --set name=<run>
--set <override> --out runs/<run>.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamavs.bench.report import command_line, default_out, make_report, run_script, write_json
from streamavs.errors import InputError


@dataclass(frozen=True)
class Row:
    """One ablation row: a recipe, the values it changes, and the run folder it trains into."""

    recipe: str  # training/configs/<recipe>.toml
    overrides: tuple[tuple[str, Any], ...] = ()  # ("section.key", value) applied to the recipe
    run: str = ""  # run folder name (default: the recipe's)

    @property
    def run_name(self) -> str:
        return self.run or self.recipe


ROWS = {
    "baseline": Row("synthetic_single_baseline"),
    "negatives": Row("synthetic_single_negatives"),
    "full": Row("synthetic_single_full"),
    "full_r20": Row("synthetic_single_full", (("data.negative_share", 0.2),), "synthetic_single_full_r20"),
    "full_r30": Row("synthetic_single_full", (("data.negative_share", 0.3),), "synthetic_single_full_r30"),
    "full_learnable": Row("synthetic_single_full", (("model.overrides", {"sim_learnable": True}),),
                          "synthetic_single_full_learnable"),
    "full_long": Row("synthetic_single_full_long"),
    "baseline_long": Row("synthetic_single_baseline", (("optim.epochs", 15), ("optim.lr_schedule", "cosine"),
                                                      ("optim.warmup_steps", 50)), "synthetic_single_baseline_long"),
}
REAL_ROWS = {
    "baseline": Row("real_single_baseline"),
    "negatives": Row("real_single_negatives"),
    "full": Row("real_single_full"),
    "full_distractors": Row("real_single_full_distractors"),  # the engine's segmenter: distractors in every scene
}
REAL_EXTRA_SPECS = ("real-unseen_offscreen", "real-test_seen_rec", "real-test_heldout_rec", "real-test_novel")
TABLE4 = ("baseline", "negatives", "full")
REAL_TARGETS = ("baseline: G-FPR >= 0.05 and negative mIoU >= half the positive mIoU; full: G-FPR <= 0.005, "
                "positive mIoU within 3 points of the baseline, FPR <= 0.005 under unseen off-screen sounds")
TARGETS = "baseline: G-FPR >= 0.05 and negative mIoU >= half the positive mIoU; full: G-FPR <= 0.005, " \
          "positive mIoU within 3 points of the baseline, FPR <= 0.01 on evaluation-only noise"


def eval_noise_fpr(checkpoint: Path, clips: int, image_size: int = 224, seed: int = 7,
                   data: str = "synthetic") -> dict[str, Any]:
    """FPR per evaluation-only noise type: every second of `clips` test clips (synthetic or real) under that noise."""
    import torch

    from streamavs.model.checkpoint import load_model
    from streamavs.synthetic import SceneConfig
    from streamavs.datasets.negatives import NoiseConfig, make_noise
    from streamavs.training.data import collate
    from streamavs.datasets.synthetic import SyntheticFrames

    model, _ = load_model(checkpoint)
    if data == "real":
        from streamavs.datasets.real import real_frames

        frames = real_frames("test", clips, SceneConfig(image_size=image_size))
    else:
        frames = SyntheticFrames("test", clips, SceneConfig(image_size=image_size))
    noise = NoiseConfig()
    out: dict[str, Any] = {}
    with torch.no_grad():
        for kind in noise.eval_types:
            rng = np.random.default_rng([seed, sum(map(ord, kind))])
            fpr = []
            for video in range(clips):
                wave = make_noise(kind, frames.seconds, rng, float(rng.uniform(*noise.level_dbfs)))
                batch = collate([frames.build(video * frames.seconds + t, wave, "noise") for t in range(frames.seconds)])
                prob = torch.sigmoid(model(batch["frame"], batch["log_mel"]).mask_logits)
                fpr.extend((prob >= 0.5).float().mean(dim=(1, 2, 3)).tolist())
            out[kind] = {"fpr": float(np.mean(fpr)), "n": len(fpr)}
    return out


def _headline(spec: str, table: dict) -> dict[str, float]:
    """The number each generalisation spec is for: FPR under unseen off-screen sound, else positive mIoU."""
    if spec == "real-unseen_offscreen":
        return {"offscreen_fpr": table["offscreen"]["fpr"], "g_fpr": table["global"]["g_fpr"]}
    return {"positive_miou": table["positive"]["miou"]}


def check_reusable(rows: list[Row], runs: Path) -> None:
    """With --reuse, InputError naming the rows whose <runs>/<run>/best.pt is missing (before any work)."""
    missing = [str(runs / r.run_name / "best.pt") for r in rows if not (runs / r.run_name / "best.pt").is_file()]
    if missing:
        raise InputError(f"--reuse needs a trained run per row, but {', '.join(missing)} is missing; "
                         "check --runs, or leave out --reuse to train them")


def run_row(row: Row, runs: Path, reuse: bool) -> tuple[Path, float | None]:
    """Train `row` into <runs>/<run> (unless reused); returns (best.pt, wall seconds or None)."""
    from streamavs.training.config import load_config
    from streamavs.training.trainer import train

    repo = Path(__file__).resolve().parents[1]
    out = runs / row.run_name
    best = out / "best.pt"
    if reuse:
        check_reusable([row], runs)
        return best, None
    overrides = {"name": row.run_name, **dict(row.overrides)}
    t0 = time.perf_counter()
    train(load_config(repo / "training" / "configs" / f"{row.recipe}.toml", overrides), out)
    return best, time.perf_counter() - t0


def wall_from_log(run: Path) -> float | None:
    """Training wall time recorded in a run's log.jsonl (start to done), for reused rows; None when the
    run has no log or the log lacks either event (wall time unknown)."""
    import json

    log = run / "log.jsonl"
    if not log.is_file():
        return None
    times = {}
    for line in log.read_text().splitlines():
        event = json.loads(line)
        times.setdefault(event["event"], event["time"])
        if event["event"] == "done":
            times["done"] = event["time"]
    return times["done"] - times["start"] if {"start", "done"} <= set(times) else None


def main(argv: list[str] | None = None) -> int:
    from streamavs.evaluation import format_table
    from streamavs.training.evaluate_checkpoint import evaluate_path

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default bench/results/robust-ablation-<date>.json, with --data real "
                             "real-media-ablation-<date>.json)")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="folder of the training runs")
    parser.add_argument("--clips", type=int, default=80, help="test clips (x5 seconds) for the robust table")
    parser.add_argument("--noise-clips", type=int, default=20, help="test clips per evaluation-only noise type")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse <runs>/<run>/best.pt instead of training (refused when one is missing)")
    parser.add_argument("--rows", default=",".join(TABLE4), help="comma-separated rows of " + ",".join(ROWS))
    parser.add_argument("--data", choices=("synthetic", "real"), default="synthetic",
                        help="benchmark: the procedural one or the real-media one (fetched media)")
    args = parser.parse_args(argv)

    table_rows = ROWS if args.data == "synthetic" else REAL_ROWS
    test_spec = "synthetic-single" if args.data == "synthetic" else "real-test"
    names = args.rows.split(",")
    unknown = [n for n in names if n not in table_rows]
    if unknown:
        parser.error(f"unknown row(s) {unknown}; choose from {','.join(table_rows)}")
    if args.reuse:
        check_reusable([table_rows[n] for n in names], args.runs)
    rows: dict[str, Any] = {}
    for row in names:
        spec = table_rows[row]
        best, wall = run_row(spec, args.runs, args.reuse)
        table = evaluate_path(best, test_spec, clips=args.clips)
        rows[row] = {
            "recipe": f"training/configs/{spec.recipe}.toml",
            "overrides": dict(spec.overrides),
            "run": str(args.runs / spec.run_name),
            "train_wall_s": wall if wall is not None else wall_from_log(args.runs / spec.run_name),
            "test": {k: table[k] for k in ("gate_off", "gate_on")},
            "eval_only_noise": eval_noise_fpr(best, args.noise_clips, data=args.data),
        }
        if args.data == "real":
            rows[row]["generalisation"] = {
                spec: evaluate_path(best, spec, clips=args.clips, progress=False)["gate_off"] for spec in REAL_EXTRA_SPECS
            }
            summary = {spec: _headline(spec, t) for spec, t in rows[row]["generalisation"].items()}
            print(f"generalisation: {summary}")
        print(f"\n== {row} ({spec.recipe} {dict(spec.overrides)}), similarity gate off:\n{format_table(table['gate_off'])}")
        print(f"evaluation-only noise FPR: {rows[row]['eval_only_noise']}")
    data = (f"synthetic-single test split, {args.clips} clips x 5 s, four conditions 25% each" if args.data == "synthetic"
            else f"real-media test split (held-out backgrounds and recordings), {args.clips} clips x 5 s, four "
                 f"conditions 25% each; generalisation specs {list(REAL_EXTRA_SPECS)} with {args.clips} clips each")
    extra = {}
    if args.data == "real":
        from streamavs.realmedia.fetch import provenance

        extra["media"] = provenance()
    report = make_report("robust_ablation", command_line(argv, "python -m streamavs.bench.robust_ablation"),
                         data=data, targets=TARGETS if args.data == "synthetic" else REAL_TARGETS, rows=rows, **extra)
    out = write_json(report, args.out or default_out("robust-ablation" if args.data == "synthetic" else "real-media-ablation"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
