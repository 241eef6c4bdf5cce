"""Evaluation of a torch segmenter on a four-condition (positive / silence / noise / off-screen) set.

Produces the robust table of the paper's Table 2 twice: with the similarity gate off (the
model's mask as is) and on (the mask emptied when sigma(sounding_logit) < gate_threshold), plus
the similarity scores of positive and negative pairs (paper Fig. 4). The meters and their
updates are the engine evaluation's (:mod:`streamavs.evaluation`, numpy only): only the model
call differs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from streamavs.evaluation import MeterFeed
from streamavs.training.config import EvalSection

__all__ = ["evaluate"]


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
    """Run `model` over `dataset` (samples as in streamavs.datasets.samples) and return
    ``{"gate_off": table, "gate_on": table, "similarity": {...}}``."""
    from tqdm import tqdm

    from streamavs.training.data import collate

    model.eval()
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate)
    feed = MeterFeed(cfg.threshold, cfg.gate_threshold, fscore_mode, cfg.batch_size)
    sims: dict[str, list[np.ndarray]] = {"positive": [], "negative": []}
    for batch in tqdm(loader, desc="eval", disable=not progress, unit="batch"):
        out = model(batch["frame"].to(device), batch["log_mel"].to(device))
        prob = torch.sigmoid(out.mask_logits)[:, 0].float().cpu().numpy()  # (B, H, W)
        sounding = torch.sigmoid(out.sounding_logit).float().cpu().numpy()  # (B,)
        gt = batch["eval_mask"][:, 0].cpu().numpy() > 0.5  # (B, H, W) original object masks
        conditions = np.asarray(batch["condition"])
        for i in range(len(conditions)):
            feed.add(prob[i], sounding[i], gt[i], conditions[i], batch["name"][i])
        sim = out.similarity.float().cpu().numpy()
        sims["positive"].append(sim[conditions == "positive"])
        sims["negative"].append(sim[conditions != "positive"])
    result: dict[str, Any] = {name: m.table() for name, m in feed.close().items()}
    result["similarity"] = {k: np.concatenate(v).tolist() if v else [] for k, v in sims.items()}
    return result
