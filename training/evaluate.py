"""Evaluation of a segmenter on a four-condition (positive / silence / noise / off-screen) set.

Produces the robust table of the paper's Table 2 twice: with the similarity gate off (the
model's mask as is) and on (the mask emptied when sigma(sounding_logit) < gate_threshold), plus
the similarity scores of positive and negative pairs (paper Fig. 4).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from streamavs.metrics import RobustMeter
from streamavs.training.config import EvalSection


def format_table(table: dict[str, Any]) -> str:
    """The paper's Table 2 layout as text: positive mIoU/F; each negative's mIoU/F/FPR; globals."""
    lines = [f"{'condition':<10} {'mIoU':>7} {'F':>7} {'FPR':>7} {'n':>6}"]
    for cond in ("positive", "silence", "noise", "offscreen", "negative"):
        r = table[cond]
        lines.append(f"{cond:<10} {r['miou']:7.2f} {r['fscore']:7.2f} {r['fpr']:7.4f} {int(r['n']):6d}")
    g = table["global"]
    lines.append(f"G-mIoU {g['g_miou']:.2f}   G-F {g['g_f']:.2f}   G-FPR {g['g_fpr']:.4f}")
    return "\n".join(lines)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    dataset,
    cfg: EvalSection,
    *,
    device: torch.device | str = "cpu",
    progress: bool = True,
    fscore_mode: str = "set",
) -> dict[str, Any]:
    """Run `model` over `dataset` (samples as in streamavs.training.data) and return
    ``{"gate_off": table, "gate_on": table, "similarity": {...}}``."""
    from tqdm import tqdm

    from streamavs.training.data import collate

    model.eval()
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate)
    meters = {
        "gate_off": RobustMeter(cfg.threshold, fscore_mode),
        "gate_on": RobustMeter(cfg.threshold, fscore_mode),
    }
    sims: dict[str, list[np.ndarray]] = {"positive": [], "negative": []}
    for batch in tqdm(loader, desc="eval", disable=not progress, unit="batch"):
        out = model(batch["frame"].to(device), batch["log_mel"].to(device))
        prob = torch.sigmoid(out.mask_logits)[:, 0].float().cpu().numpy()  # (B, H, W)
        sounding = torch.sigmoid(out.sounding_logit).float().cpu().numpy()  # (B,)
        gated = prob * (sounding >= cfg.gate_threshold)[:, None, None]
        gt = batch["eval_mask"][:, 0].cpu().numpy() > 0.5  # (B, H, W) original object masks
        conditions = np.asarray(batch["condition"])
        for cond in np.unique(conditions):
            sel = conditions == cond
            meters["gate_off"].update(str(cond), prob[sel], gt[sel])
            meters["gate_on"].update(str(cond), gated[sel], gt[sel])
        sim = out.similarity.float().cpu().numpy()
        sims["positive"].append(sim[conditions == "positive"])
        sims["negative"].append(sim[conditions != "positive"])
    result: dict[str, Any] = {name: m.table() for name, m in meters.items()}
    result["similarity"] = {k: np.concatenate(v).tolist() if v else [] for k, v in sims.items()}
    return result
