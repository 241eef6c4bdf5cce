"""The temporal ablation's uncertainty columns as text.

Per row: the error-detection AUROC of the stage's uncertainty on transition frames and on all
frames, the AUROC of the mask probability's own closeness to the threshold on transition frames
(``margin_auroc``, :func:`streamavs.metrics.threshold_margin`: the baseline an uncertainty must
beat to tell more than the mask does), and the calibration error of the mask probability.
"""

from __future__ import annotations

from streamavs.bench.report import fmt_cell

__all__ = ["uncertainty_table"]


def uncertainty_table(report: dict, rows: tuple[tuple[str, str], ...]) -> list[str]:
    """Text lines for the `rows` ((key, label) pairs) of `report["results"]` that have an "uncertainty"."""
    lines = [f"\n{'model':28s} {'err AUROC tr':>12s} {'err AUROC all':>13s} {'margin tr':>9s} {'ECE tr':>8s} {'ECE all':>8s}"]
    for key, label in rows:
        u = (report["results"].get(key) or {}).get("uncertainty")
        if u is None:
            continue
        tr, every = u["transition"], u["all"]
        lines.append(f"{label:28s} {fmt_cell(tr['error_auroc'], 3):>12s} {fmt_cell(every['error_auroc'], 3):>13s} "
                     f"{fmt_cell(tr.get('margin_auroc'), 3):>9s} {fmt_cell(tr['ece'], 4):>8s} {fmt_cell(every['ece'], 4):>8s}")
    return lines
