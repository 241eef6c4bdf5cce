"""Engine evaluation: the robust table (paper Table 2) of an engine, numpy only (no torch).

Each sample of a four-condition test set (:mod:`streamavs.datasets`) is one stream start: the
engine runs the sample's frame and log-mel example from a fresh cache
(``engine.initial_cache()``), so the table scores single frames, as for a checkpoint. The
table comes twice: with the similarity gate off (the engine's ``mask_prob`` as is) and on
(the mask emptied when the engine's sounding probability is below the gate threshold).
Thresholds default to the engine manifest's ``thresholds`` (mask pixels, gate).

Result: ``{"gate_off": table, "gate_on": table, "similarity": {"positive": [], "negative": []}}``
with tables as :meth:`streamavs.metrics.RobustMeter.table` (mIoU and F in percent, FPR as a
fraction). Engines output the gate probability, not the raw audio-visual cosine, so the
similarity lists stay empty; ``streamavs eval --checkpoint`` fills them from a .pt file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from streamavs.errors import InputError
from streamavs.metrics import RobustMeter

__all__ = ["BATCH_SIZE", "MeterFeed", "evaluate_engine", "evaluate_engine_path", "update_meters", "format_table"]

# Samples per meter update in "set" mode, whose F-scores do not depend on it. "avsbench" F-scores
# are means over batches, and AVSBench's test batches are whole videos: that mode updates per video.
BATCH_SIZE = 16


def evaluate_engine(
    engine,
    dataset,
    *,
    threshold: float | None = None,
    gate_threshold: float | None = None,
    fscore_mode: str = "set",
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
) -> dict[str, Any]:
    """Run `engine` (any backend, see streamavs.engine) over the per-frame samples of `dataset`.

    dataset: a map-style set of per-frame sample dicts (streamavs.datasets.samples) with
    ``frame`` (H, W, 3) uint8 at the engine's frame size. threshold, gate_threshold: mask
    pixel and sounding-gate probabilities (default: the manifest's thresholds).
    """
    from tqdm import tqdm

    limits = engine.manifest.thresholds
    threshold = limits.mask if threshold is None else float(threshold)
    gate_threshold = limits.gate if gate_threshold is None else float(gate_threshold)
    feed = MeterFeed(threshold, gate_threshold, fscore_mode, batch_size)
    for index in tqdm(range(len(dataset)), desc="eval", disable=not progress, unit="frame"):
        sample = dataset[index]
        if np.ndim(sample["frame"]) != 3:
            raise InputError(f"engine evaluation takes per-frame samples (frame (H, W, 3)); got a frame of shape "
                             f"{np.shape(sample['frame'])}: build the test set with per='frame'")  # fmt: skip
        out = engine.run(sample["frame"], sample["log_mel"], engine.initial_cache())  # a stream start
        feed.add(out.mask_prob, out.sounding, sample["eval_mask"] > 0.5, sample["condition"], sample["name"])
    result: dict[str, Any] = {name: m.table() for name, m in feed.close().items()}
    result["similarity"] = {"positive": [], "negative": []}
    return result


def update_meters(meters: dict[str, RobustMeter], prob: np.ndarray, sounding: np.ndarray, gt: np.ndarray,
                  conditions: np.ndarray, gate_threshold: float) -> None:
    """Add one batch to the gate-off and gate-on meters, one update per condition present (sorted).

    prob: (B, H, W) mask probabilities; sounding: (B,) sounding probabilities; gt: (B, H, W)
    bool original object masks; conditions: (B,) str. Shared with the checkpoint evaluation.
    """
    gated = prob * (sounding >= gate_threshold)[:, None, None]  # the mask emptied where the gate closes
    for cond in np.unique(conditions):
        sel = conditions == cond
        meters["gate_off"].update(str(cond), prob[sel], gt[sel])
        meters["gate_on"].update(str(cond), gated[sel], gt[sel])


class MeterFeed:
    """Per-frame results into the gate-off and gate-on meters, in the batches the F-score mode
    needs: `batch_size` frames for "set", one whole video (consecutive frames of one ``name``) per
    update for "avsbench", as AVSBench's test batches are. Shared with the checkpoint evaluation."""

    def __init__(self, threshold: float, gate_threshold: float, fscore_mode: str = "set",
                 batch_size: int = BATCH_SIZE) -> None:
        self.meters = {"gate_off": RobustMeter(threshold, fscore_mode), "gate_on": RobustMeter(threshold, fscore_mode)}
        self.gate_threshold, self.per_video, self.batch_size = gate_threshold, fscore_mode == "avsbench", batch_size
        self._batch: list[tuple[np.ndarray, float, np.ndarray, str]] = []
        self._video: str | None = None

    def add(self, prob: np.ndarray, sounding: float, gt: np.ndarray, condition: str, video: str) -> None:
        """prob: (H, W) mask probabilities; sounding: the sounding probability; gt: (H, W) bool object mask."""
        if self.per_video and video != self._video:
            self._flush()
        self._video = video
        self._batch.append((prob, float(sounding), gt, condition))
        if not self.per_video and len(self._batch) == self.batch_size:
            self._flush()

    def close(self) -> dict[str, RobustMeter]:
        """Flush what is left; returns the meters."""
        self._flush()
        return self.meters

    def _flush(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        update_meters(self.meters, np.stack([b[0] for b in batch]), np.array([b[1] for b in batch]),
                      np.stack([b[2] for b in batch]), np.asarray([b[3] for b in batch]), self.gate_threshold)


def evaluate_engine_path(path: str | Path, data: str, *, clips: int = 80, fscore_mode: str = "set",
                         progress: bool = True, seed: int = 0, **engine_options: Any) -> dict[str, Any]:  # fmt: skip
    """Load the engine named by `path` (a .json manifest, a model file beside its manifest or an
    engine name, see streamavs.engine.load_engine) and evaluate it on the test set `data`
    (streamavs.datasets.specs) of `clips` clips at the engine's frame size."""
    from streamavs.datasets.specs import check_spec, robust_test_set
    from streamavs.engine import load_engine

    check_spec(data)
    with load_engine(path, **engine_options) as engine:
        height, width = engine.frame_size
        if height != width:
            raise InputError(f"engine {engine.name!r} takes {height}x{width} frames; the test sets are square, "
                             "so evaluate an engine exported at a square frame size")  # fmt: skip
        dataset = robust_test_set(data, clips, height, seed=seed)
        return evaluate_engine(engine, dataset, fscore_mode=fscore_mode, progress=progress)


def format_table(table: dict[str, Any]) -> str:
    """The paper's Table 2 layout as text: positive mIoU/F; each negative's mIoU/F/FPR; globals."""
    lines = [f"{'condition':<10} {'mIoU':>7} {'F':>7} {'FPR':>7} {'n':>6}"]
    for cond in ("positive", "silence", "noise", "offscreen", "negative"):
        r = table[cond]
        lines.append(f"{cond:<10} {r['miou']:7.2f} {r['fscore']:7.2f} {r['fpr']:7.4f} {int(r['n']):6d}")
    g = table["global"]
    lines.append(f"G-mIoU {g['g_miou']:.2f}   G-F {g['g_f']:.2f}   G-FPR {g['g_fpr']:.4f}")
    return "\n".join(lines)
