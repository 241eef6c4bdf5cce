"""Output of ``streamavs bench latency``: the rich tables and the latency figure of a report.

The report is what :func:`streamavs.bench.latency.run_latency` returns (rows keep their raw
``samples_ms`` for the figure's CDF).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from streamavs.bench.latency import STAGES
from streamavs.bench.report import fmt_cell, pyplot, save_figure

__all__ = ["console_for_logs", "print_table", "plot_latency"]


def console_for_logs() -> Any:
    """A rich console; 140 columns when not a terminal (logs, CI), so tables do not wrap."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=140)


def print_table(report: dict[str, Any], console: Any = None) -> None:
    """A summary table (one line per row) and a per-stage table for each measured row (rich)."""
    from rich.table import Table

    console = console or console_for_logs()
    summary = Table(title=f"streamavs bench latency: {report['config']['source']} source, "
                          f"{report['config']['seconds']:g} s after {report['config']['warmup']:g} s warm-up")  # fmt: skip
    for col in ("model", "backend", "fps", "done/offered", "dropped", "overflows",
                "infer p50", "e2e p50", "e2e p95", "e2e p99", "x eager"):  # fmt: skip
        summary.add_column(col, justify="left" if col in ("model", "backend") else "right")
    skipped = []
    for row in report["rows"]:
        if "skipped" in row:
            summary.add_row(row["model"], row["backend"], "skipped", *[""] * 8)
            skipped.append(f"{row['model']} / {row['backend']} skipped: {row['skipped']}")
            continue
        c, s = row["counters"], row["stages"]
        summary.add_row(
            row["model"], row["backend"], f"{row['fps']:.1f}", f"{c['processed']}/{c['offered']}", str(c["dropped"]),
            str(c["audio_overflows"]), fmt_cell(s["inference"]["p50"]), fmt_cell(s["end_to_end"]["p50"]),
            fmt_cell(s["end_to_end"]["p95"]), fmt_cell(s["end_to_end"]["p99"]),
            f"{row['inference_speedup_vs_torch']:.2f}" if "inference_speedup_vs_torch" in row else "-",
        )  # fmt: skip
    console.print(summary)
    for line in skipped:
        console.print(line)
    for row in report["rows"]:
        if "skipped" in row:
            continue
        table = Table(title=f"{row['model']} / {row['backend']} ({row['engine_from']}), ms")
        table.add_column("stage")
        for key in ("n", "mean", "p50", "p90", "p95", "p99", "max"):
            table.add_column(key, justify="right")
        for stage in STAGES:
            st = row["stages"][stage]
            table.add_row(stage, str(st["n"]), *[fmt_cell(st[k], 2) for k in ("mean", "p50", "p90", "p95", "p99", "max")])
        table.caption = f"temporal stage: {row['temporal_stage']}"
        console.print(table)


def plot_latency(report: dict[str, Any], path: str | Path) -> Path:
    """Left: median per-stage time per row (stacked bars). Right: end-to-end latency CDF per row."""
    plt = pyplot()
    rows = [r for r in report["rows"] if "stages" in r]
    fig, (ax_bar, ax_cdf) = plt.subplots(1, 2, figsize=(13, 0.6 * max(len(rows), 3) + 2))
    parts = ("capture_to_pairer", "preprocess", "inference", "postprocess", "publish")
    labels = [f"{r['model']}\n{r['backend']}" for r in rows]
    left = np.zeros(len(rows))
    p50 = lambda r, stage: np.nan_to_num(r["stages"][stage]["p50"])  # noqa: E731
    for stage in parts:
        widths = np.array([p50(r, stage) for r in rows])
        ax_bar.barh(labels, widths, left=left, label=stage)
        left += widths
    # publish_to_subscriber starts where publish does (before encoding): only what follows it is stacked
    rest = np.array([max(0.0, p50(r, "publish_to_subscriber") - p50(r, "publish")) for r in rows])
    ax_bar.barh(labels, rest, left=left, label="to the subscriber (publish_to_subscriber - publish)")
    ax_bar.set_xlabel("median ms per frame (stages stacked)")
    ax_bar.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3)
    ax_bar.invert_yaxis()
    for r in rows:
        e2e = np.sort(np.asarray(r.get("samples_ms", {}).get("end_to_end", []), dtype=np.float64))
        if e2e.size:
            ax_cdf.plot(e2e, np.arange(1, e2e.size + 1) / e2e.size, label=f"{r['model']} / {r['backend']}")
    ax_cdf.set_xlabel("end-to-end latency, capture -> mask received (ms)")
    ax_cdf.set_ylabel("fraction of frames")
    ax_cdf.grid(alpha=0.3)
    if rows:
        ax_cdf.legend(fontsize=7)
    fig.suptitle(f"{report['machine']['cpu']} ({report['machine']['cores']} cores), {report['date']}", fontsize=9)
    return save_figure(fig, path)
