"""The tiny segmenter recipe the training tests run real steps with (64 px, 2 clips, random backbone)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEGMENTER_RECIPE = REPO / "training" / "configs" / "synthetic_single_full.toml"
TINY = {  # --set overrides of a segmenter recipe
    "data.image_size": 64,
    "data.train_clips": 2,  # 10 samples
    "data.val_clips": 4,  # 20 samples, the four conditions
    "optim.batch_size": 2,
    "optim.epochs": 2,
    "eval.batch_size": 10,
    "model.overrides": {"backbone_pretrained": False},
}
