"""Starting a temporal stage from a trained one (``[temporal] init_stage``).

A stage trained with the uncertainty path disabled (the ablation) may start a gated one. The
gated stage then starts as *exactly* that stage, and training can only move it away where that
lowers the loss, as the residual stage starts as frame-only:

- the shared layers (projection, attention, refinement, delta head) are copied;
- the Dirichlet head's weights start at zero and its bias at :data:`OPEN_GATE_EVIDENCE` for both
  classes, so ``u`` is one constant ``u0`` at every pixel (:func:`open_gate_uncertainty`), in
  the range where it still learns (with a much larger evidence ``u`` barely moves);
- the refinement's weights on the attended past are divided by ``1 - u0``, so
  ``(1 - u0) * mixed`` enters it as ``mixed`` entered the ablation.

Why (issue 16, runs/v26): every gated design trained from scratch on real media lost to its
ungated ablation just after silence; starting it at the ablation asks whether gating *added to
a good ungated stage* helps. Its control is the ablation fine-tuned by the same recipe.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from streamavs.errors import ConfigError
from streamavs.model.temporal import TemporalStage

__all__ = ["OPEN_GATE_EVIDENCE", "open_gate_uncertainty", "warm_start"]

OPEN_GATE_EVIDENCE = 5.0  # evidence per class at the start: u0 = 3 / (2 e + 3) = 0.23


def open_gate_uncertainty(evidence: float = OPEN_GATE_EVIDENCE) -> float:
    """u for alpha = (1 + e, 1 + e): 12 a^2 / ((2a)^2 (2a + 1)) = 3 / (2a + 1)."""
    return 3.0 / (2.0 * (1.0 + evidence) + 1.0)


def warm_start(stage: TemporalStage, path: str | Path, segmenter: torch.nn.Module) -> dict:
    """Load the stage of the temporal checkpoint `path` into `stage` (in place).

    `segmenter` is the frozen segmenter `stage` will train on: the checkpoint's stage must have
    been trained on the same weights. Returns what was done, for the run's log."""
    from streamavs.model.streaming import load_streaming

    source, _ = load_streaming(path)
    if source.temporal is None:
        raise ConfigError(f"[temporal] init_stage = {str(path)!r} holds no temporal stage; pass the temporal.pt "
                          "of a temporal run")
    _check_same_segmenter(source.segmenter, segmenter, path)
    src = source.temporal
    shape = lambda c: (c.in_channels, c.window, c.dim, c.heads)  # noqa: E731
    if shape(src.config) != shape(stage.config):
        raise ConfigError(f"[temporal] init_stage = {str(path)!r} has (in_channels, window, dim, heads) = "
                          f"{shape(src.config)}, this recipe {shape(stage.config)}: set the recipe's to match")
    if src.config.uncertainty and not stage.config.uncertainty:
        raise ConfigError(f"[temporal] init_stage = {str(path)!r} has the uncertainty path and this recipe does "
                          "not (uncertainty = false): start an ablation from an ablation")
    state = src.state_dict()
    if src.config.uncertainty or not stage.config.uncertainty:
        stage.load_state_dict(state)
        return {"init_stage": str(path), "open_gate": None}
    missing, unexpected = stage.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith(("evidence.", "alpha_head.")) for k in missing), (missing, unexpected)
    u0 = open_gate_uncertainty()
    with torch.no_grad():
        stage.alpha_head.weight.zero_()
        stage.alpha_head.bias.fill_(math.log(math.expm1(OPEN_GATE_EVIDENCE)))  # softplus^-1(e)
        d = stage.config.dim
        stage.refine[0].weight[:, d:2 * d] /= 1.0 - u0  # the refinement's input order: current, mixed, change
    return {"init_stage": str(path), "open_gate": {"evidence": OPEN_GATE_EVIDENCE, "u0": u0}}


def _check_same_segmenter(a: torch.nn.Module, b: torch.nn.Module, path: str | Path) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    same = sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k].to(sa[k].device))
                                          for k in sa)
    if not same:
        raise ConfigError(f"[temporal] init_stage = {str(path)!r} was trained on another segmenter than [model] "
                          "init_checkpoint: a stage reads its own segmenter's features; pass that segmenter")
