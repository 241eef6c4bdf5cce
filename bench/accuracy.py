"""Accuracy under the four audio conditions: the paper's Table 2, as a table, JSON and plots.

This is ``streamavs eval`` (``streamavs bench accuracy`` is its alias): :func:`main_command`
evaluates an engine or a checkpoint over a four-condition test set (positive / silence /
noise / off-screen audio), giving the robust table with the similarity gate off and on. An
engine runs in the numpy loop of :mod:`streamavs.evaluation` (no torch); a .pt checkpoint's
segmenter runs in torch (``streamavs.training.evaluate_checkpoint``) and also gives the similarity
scores of positive and negative pairs. This module lays the result out:

* the text table of :func:`streamavs.evaluation.format_table`, gate off and on;
* :func:`plot_conditions`: mIoU, F and FPR per condition, gate off and on side by side.
* :func:`plot_similarity`: histograms of the similarity score for positive and negative
  pairs (the paper's Fig. 4).

Units (streamavs.metrics): mIoU, F, G-mIoU, G-F in percent; FPR and G-FPR as fractions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from streamavs.bench.report import command_line, fmt_cell, make_report, pyplot, save_figure, write_json
from streamavs.datasets.conditions import BENCHMARK_REVISION
from streamavs.errors import InputError, require

__all__ = [
    "CONDITIONS", "NEGATIVES", "evaluate", "similarity_summary", "accuracy_report", "plot_conditions",
    "plot_similarity", "write_plots", "main_command",
]  # fmt: skip

CONDITIONS = ("positive", "silence", "noise", "offscreen")
NEGATIVES = ("silence", "noise", "offscreen")
GATES = (("gate_off", "gate off"), ("gate_on", "gate on"))
SIM_BINS = np.linspace(-1.0, 1.0, 41)  # cosine similarity lies in [-1, 1]


def evaluate(path: str | Path, data: str = "synthetic-single", clips: int = 80, fscore_mode: str = "set",
             *, engine: bool = False, progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Evaluate a .pt checkpoint in torch, or an engine (.json/.onnx, an engine name; any path
    when `engine` is True) in the numpy loop, which needs no torch.

    Returns ``{"gate_off": table, "gate_on": table, "similarity": {"positive": [...], "negative": [...]}}``.
    """
    if clips < 1:
        raise InputError(f"--clips must be a positive number of test clips, got {clips}")
    if Path(path).suffix == ".pt" and not engine:
        require("torch", "train", f"evaluating the checkpoint {path} (an exported engine needs no torch: --engine)")
        from streamavs.training.evaluate_checkpoint import evaluate_checkpoint

        return evaluate_checkpoint(path, data, clips=clips, fscore_mode=fscore_mode, progress=progress)
    from streamavs.evaluation import evaluate_engine_path

    return evaluate_engine_path(path, data, clips=clips, fscore_mode=fscore_mode, progress=progress)


def similarity_summary(scores: Mapping[str, list[float]]) -> dict[str, Any]:
    """Per pair kind (positive / negative): n, mean, std, p5/p50/p95 and the histogram counts
    over :data:`SIM_BINS`; plus the separation of the two (difference of the means)."""
    out: dict[str, Any] = {"bins": SIM_BINS.tolist()}
    for kind in ("positive", "negative"):
        a = _finite(scores.get(kind, []))
        if a.size == 0:  # engines publish the gate probability, not the raw cosine: NaN there
            out[kind] = {"n": 0, "note": "no similarity scores (engines do not output the cosine)"}
            continue
        p5, p50, p95 = np.percentile(a, [5, 50, 95])
        out[kind] = {
            "n": int(a.size), "mean": float(a.mean()), "std": float(a.std()),
            "p5": float(p5), "p50": float(p50), "p95": float(p95),
            "histogram": np.histogram(np.clip(a, -1, 1), SIM_BINS)[0].tolist(),
        }  # fmt: skip
    if out["positive"].get("n") and out["negative"].get("n"):
        out["mean_gap"] = out["positive"]["mean"] - out["negative"]["mean"]
    return out


def _finite(values: Any) -> np.ndarray:
    a = np.asarray(values if values is not None else [], dtype=np.float64).reshape(-1)
    return a[np.isfinite(a)]


def accuracy_report(result: Mapping[str, Any], source: str, data: str, clips: int, fscore_mode: str,
                    command: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The JSON report: command, machine, date, what was evaluated, both tables, similarity summary."""
    return make_report(
        "accuracy", command or command_line(program="streamavs eval"),
        evaluated=str(source), data=data, clips=clips, fscore_mode=fscore_mode, benchmark_revision=BENCHMARK_REVISION,
        units={"miou": "percent", "fscore": "percent", "fpr": "fraction", "g_miou": "percent", "g_f": "percent",
               "g_fpr": "fraction"},
        gate_off=result["gate_off"], gate_on=result["gate_on"],
        similarity=similarity_summary(result.get("similarity", {})),
    )  # fmt: skip


def _pct(x: float) -> str:
    return fmt_cell(x, 2)


def _frac(x: float) -> str:
    return fmt_cell(x, 3)


def plot_conditions(result: Mapping[str, Any], path: str | Path) -> Path:
    """Three panels (mIoU %, F %, FPR): one pair of bars (gate off / on) per audio condition."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    x = np.arange(len(CONDITIONS))
    for ax, (key, label) in zip(axes, (("miou", "mIoU (%)"), ("fscore", "F-score (%)"), ("fpr", "FPR (fraction)"))):
        for k, (gate, gate_label) in enumerate(GATES):
            values = [np.nan_to_num(result[gate][c][key]) for c in CONDITIONS]
            bars = ax.bar(x + (k - 0.5) * 0.38, values, width=0.38, label=gate_label)
            ax.bar_label(bars, fmt="%.3f" if key == "fpr" else "%.1f", fontsize=7)
        ax.set_xticks(x, CONDITIONS)
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    g_off, g_on = result["gate_off"]["global"], result["gate_on"]["global"]
    fig.suptitle(
        f"gate off: G-mIoU {_pct(g_off['g_miou'])}  G-F {_pct(g_off['g_f'])}  G-FPR {_frac(g_off['g_fpr'])}   |   "
        f"gate on: G-mIoU {_pct(g_on['g_miou'])}  G-F {_pct(g_on['g_f'])}  G-FPR {_frac(g_on['g_fpr'])}",
        fontsize=9,
    )
    return save_figure(fig, path)


def plot_similarity(result: Mapping[str, Any], path: str | Path) -> Path:
    """Histograms (density) of the similarity score for positive and negative pairs (paper Fig. 4)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    scores = result.get("similarity", {})
    for kind, color in (("positive", "tab:green"), ("negative", "tab:red")):
        a = np.clip(_finite(scores.get(kind, [])), -1, 1)
        if a.size:
            ax.hist(a, bins=SIM_BINS, density=True, alpha=0.55, color=color, label=f"{kind} pairs (n={a.size})")
    if not any(_finite(scores.get(k, [])).size for k in ("positive", "negative")):
        ax.text(0, 0.5, "no similarity scores\n(engines do not output the cosine;\nevaluate the .pt checkpoint)",
                ha="center", va="center", transform=ax.get_xaxis_transform())
    ax.set_xlabel("similarity score: cos(audio, visual)")
    ax.set_ylabel("density")
    ax.set_xlim(-1, 1)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def write_plots(result: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """conditions.png and similarity.png in `out_dir`."""
    out_dir = Path(out_dir)
    return [plot_conditions(result, out_dir / "conditions.png"), plot_similarity(result, out_dir / "similarity.png")]


def main_command(
    path: Path, data: str, clips: int, fscore_mode: str = "set", json_out: Path | None = None,
    plots: Path | None = None, command: str | None = None, *, engine: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """`streamavs eval`: evaluate (see :func:`evaluate`), print the tables, write JSON and plots;
    returns the report."""
    from streamavs.evaluation import format_table

    result = evaluate(path, data, clips, fscore_mode, engine=engine)
    report = accuracy_report(result, str(path), data, clips, fscore_mode, command)
    for gate, label in GATES:
        print(f"similarity {label}:")
        print(format_table(result[gate]))
    if json_out is not None:
        print(f"wrote {write_json(report, json_out)}")
    if plots is not None:
        for p in write_plots(result, plots):
            print(f"wrote {p}")
    return report
