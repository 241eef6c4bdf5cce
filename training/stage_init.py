"""Starting a temporal stage from a trained one (``[temporal] init_stage``).

A stage trained with the uncertainty path disabled (the ablation) may start a gated one. The
gated stage then produces that stage's mask logits (to float rounding) at step 0, and training
can only move it away where that lowers the loss, as the residual stage starts as frame-only:
the shared layers are copied, the Dirichlet head starts at :data:`OPEN_GATE_EVIDENCE` per class
everywhere (so ``u`` starts as one constant u0 = 0.23, in the range where it still learns; with a
much larger evidence it barely moves), and the refinement compensates for ``1 - u0``
(:meth:`streamavs.model.temporal.TemporalStage.start_from_ablation`). Its uncertainty output
starts at u0, not at the ablation's zeros.

Why (issue 16, runs/v26-v27): every gated design trained from scratch on real media lost to its
ungated ablation on a transition metric; starting it at the ablation asks whether gating *added
to a good ungated stage* helps. Its control is the ablation fine-tuned by the same recipe
(measured: it does not; bench/README.md, "The gate added to a trained ungated stage").
"""

from __future__ import annotations

from pathlib import Path

import torch

from streamavs.errors import ConfigError
from streamavs.model.temporal import TemporalStage

__all__ = ["OPEN_GATE_EVIDENCE", "warm_start"]

OPEN_GATE_EVIDENCE = 5.0  # evidence per class at the start: u0 = 3 / (2 (1 + e) + 1) = 0.23
_SHAPE_KEYS = ("window", "dim", "heads")  # the [temporal] keys that fix a stage's weights' shapes


def warm_start(stage: TemporalStage, path: str | Path, segmenter: torch.nn.Module, recorded: str) -> dict:
    """Load the stage of the temporal checkpoint `path` into `stage` (in place).

    `segmenter` is the frozen segmenter `stage` will train on: the checkpoint's stage must have
    been trained on the same weights. `recorded` is how the run names `path` (no machine's
    layout). Returns what was done, for the run's log and checkpoint."""
    from streamavs.model.streaming import load_streaming

    where = f"[temporal] init_stage = {str(path)!r}"
    if not Path(path).is_file():
        raise ConfigError(f"{where}: no such file; give the temporal.pt of a temporal run, or omit the key")
    source, extra = load_streaming(path)
    if source.temporal is None:
        raise ConfigError(f"{where} holds no temporal stage (a segmenter checkpoint?); give the temporal.pt of a "
                          "temporal run")
    if not _same_weights(source.segmenter, segmenter):
        trained_on = extra.get("segmenter_checkpoint", "another segmenter")
        raise ConfigError(f"{where} was trained on {trained_on}, whose weights differ from [model] init_checkpoint's; "
                          f"a stage reads its own segmenter's features: set [model] init_checkpoint to {trained_on}")
    src, own = source.temporal.config, stage.config
    differ = [k for k in _SHAPE_KEYS if getattr(src, k) != getattr(own, k)]
    if differ:
        raise ConfigError(f"{where} has another shape than this recipe's: set "
                          + ", ".join(f"[temporal] {k} = {getattr(src, k)} (not {getattr(own, k)})" for k in differ))
    if src.uncertainty and not own.uncertainty:
        raise ConfigError(f"{where} has the uncertainty path and this recipe does not: set [temporal] uncertainty = "
                          "true, or start this ablation from an ablation")
    record = {"init_stage": recorded, "open_gate": None}
    if src.uncertainty == own.uncertainty:
        stage.load_state_dict(source.temporal.state_dict())
    else:
        u0 = stage.start_from_ablation(source.temporal.state_dict(), OPEN_GATE_EVIDENCE)
        record["open_gate"] = {"evidence": OPEN_GATE_EVIDENCE, "u0": u0}
    return record


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k].to(sa[k].device))
                                          for k in sa)
