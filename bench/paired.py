"""The temporal ablation's rows compared clip by clip (:func:`streamavs.metrics.paired_bootstrap`).

Every row of one run streams the same clips in the same order, so any two rows can be paired.
The pairs reported are the ones the issue's targets are about: each temporal row against
frame-only, and the full stage against the same stage without its uncertainty path.
"""

from __future__ import annotations

from streamavs.bench.report import fmt_cell
from streamavs.metrics import BETTER, DEFAULT_RESAMPLES, METRIC_UNITS, paired_bootstrap

__all__ = ["PAIRS", "paired_comparisons", "paired_table"]

PAIRS = (("full", "frame_only"), ("no_uncertainty", "frame_only"), ("engine", "frame_only"), ("full", "no_uncertainty"))
CONFIDENCE = 0.95


def paired_comparisons(results: dict, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """``{"A_vs_B": paired_bootstrap(...)}`` for each pair of :data:`PAIRS` whose rows are both in
    `results` (the ablation's results, each with "per_clip" at its main row)."""
    return {f"{a}_vs_{b}": paired_bootstrap(results[a]["per_clip"], results[b]["per_clip"], resamples, CONFIDENCE, seed)
            for a, b in PAIRS if a in results and b in results}


def paired_table(report: dict) -> list[str]:
    """Text lines: per pair and metric, the difference and its interval, and how often A and B won."""
    pairs = report.get("paired") or {}
    if not pairs:
        return []
    lines = [f"\npaired bootstrap over the clips ({report.get('paired_resamples')} resamples, "
             f"{100 * CONFIDENCE:.0f}% interval of A - B; each row at its main operating point):",
             f"  {'A vs B':30s} {'metric':13s} {'A':>9s} {'B':>9s} {'A - B':>9s} {'interval':>21s} "
             f"{'A better':>8s} {'B better':>8s}"]
    for pair, metrics in pairs.items():
        for name in BETTER:
            m, d = metrics[name], 2 if METRIC_UNITS[name] == "percent" else 5
            interval = f"[{fmt_cell(m['low'], d)}, {fmt_cell(m['high'], d)}]"
            lines.append(f"  {pair:30s} {name:13s} {fmt_cell(m['a'], d):>9s} {fmt_cell(m['b'], d):>9s} "
                         f"{fmt_cell(m['diff'], d):>9s} {interval:>21s} {_share(m['a_better']):>8s} {_share(m['b_better']):>8s}")
    return lines


def _share(fraction: float | None) -> str:
    """A share of resamples as a table cell in percent ('-' when undefined: null in a report read back)."""
    return fmt_cell(None if fraction is None else 100.0 * fraction, 1) + "%"
