"""What a [temporal] recipe may hold, and where its stage trains: checked before any work starts.

The temporal stage trains on top of a frozen segmenter, on features cached once per run (see
:mod:`streamavs.training.temporal_trainer`). So, unlike a segmenter run:

- it reads only part of the recipe (:data:`READS`): a value given for any other key would be
  recorded in the checkpoint as if it had been used, so a non-default one is refused;
- its frames must have the segmenter's size (the cached maps and the engine's input follow it);
- it runs in one process: under torchrun every rank would train its own copy and write the same
  files;
- a run folder that already holds a stage is not written over.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from streamavs.engine.describe import STAGE_DATA_KEYS
from streamavs.errors import ConfigError
from streamavs.training.config import TrainConfig

__all__ = ["READS", "STAGE_FILE", "check_recipe", "check_run_folder", "check_segmenter_size"]

STAGE_FILE = "temporal.pt"
# The keys a temporal run reads besides its [temporal] section, per recipe section.
READS: dict[str, tuple[str, ...]] = {
    "model": ("init_checkpoint",),
    "data": ("media", *STAGE_DATA_KEYS),
    "optim": ("lr", "weight_decay", "batch_size", "epochs", "grad_clip"),
    "loss": (),
    "eval": (),
}


def check_recipe(cfg: TrainConfig) -> None:
    """ConfigError naming every key of `cfg` set to a non-default value that the temporal stage does not read."""
    unused = []
    for section, reads in READS.items():
        values = getattr(cfg, section)
        for f in dataclasses.fields(values):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if f.name not in reads and getattr(values, f.name) != default:
                unused.append(f"[{section}] {f.name} = {getattr(values, f.name)!r}")
    if unused:
        reads = "; ".join(f"[{s}] {', '.join(keys)}" for s, keys in READS.items() if keys)
        raise ConfigError(f"{', '.join(unused)}: no effect on a temporal stage, which reads {reads} and its "
                          "[temporal] section (its negatives: [temporal] clip_negative_share): remove "
                          f"{'it' if len(unused) == 1 else 'them'} from the recipe")


def check_run_folder(out: Path) -> None:
    """ConfigError if `out` already holds a stage, or if this process is one of several (torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        raise ConfigError(f"the temporal stage trains in one process (its features are cached per process), but "
                          f"this is one of {world} (torchrun): run `streamavs train` without torchrun")
    if (out / STAGE_FILE).exists():
        raise ConfigError(f"{out} already holds a temporal stage ({STAGE_FILE}); choose another --out, or delete "
                          f"{out / STAGE_FILE} to train it again")


def check_segmenter_size(cfg: TrainConfig, segmenter_size: int) -> None:
    """ConfigError if the recipe's frames are not the segmenter's size."""
    if cfg.data.image_size != segmenter_size:
        raise ConfigError(f"[data] image_size {cfg.data.image_size} differs from the segmenter's {segmenter_size} "
                          f"({cfg.model.init_checkpoint}): the stage trains on the segmenter's maps and the engine "
                          f"feeds it {segmenter_size} px frames: set image_size = {segmenter_size}")
