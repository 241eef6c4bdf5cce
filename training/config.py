"""Training recipes: one small frozen dataclass per stage, read from a TOML file.

A recipe file has the sections ``[model]``, ``[data]``, ``[loss]``, ``[optim]``, ``[eval]`` and
optionally ``[temporal]``; every key is a field of the dataclass of its section, and unknown
keys are errors (so a typo never silently falls back to a default). The parsed recipe is saved
inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamavs.errors import ConfigError


def _build(cls, section: str, data: dict[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)} in [{section}]; valid keys: {sorted(names)}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"bad [{section}] section: {exc}") from exc


@dataclass(frozen=True)
class ModelSection:
    name: str = "avs_lite"
    overrides: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields to change
    init_checkpoint: str | None = None  # start from these weights (e.g. the segmenter for [temporal])


@dataclass(frozen=True)
class DataSection:
    kind: str = "synthetic"  # "synthetic" | "real" | "avsbench_s4" | "avsbench_ms3"
    root: str | None = None  # AVSBench root folder (kind avsbench_*)
    media: str | None = None  # kind "real": the media cache of `streamavs data fetch` (None: its default)
    setting: str = "single"  # synthetic: "single" | "multi"
    image_size: int = 224
    train_clips: int = 400  # synthetic: clips drawn from the train seed range per epoch
    val_clips: int = 60  # synthetic: clips of the four-condition validation set
    state_change_prob: float = 0.0
    distractor_share: float = 0.5
    negative_share: float = 0.10  # share of training samples whose audio is replaced by a negative
    negative_kinds: tuple[str, ...] = ("silence", "offscreen")  # paper: 5% off-screen + 5% silence
    num_workers: int = 0

    def __post_init__(self) -> None:
        kinds = ("synthetic", "real", "avsbench_s4", "avsbench_ms3")
        if self.kind not in kinds:
            raise ConfigError(f"[data] kind must be one of {kinds}, got {self.kind!r}")
        if self.kind.startswith("avsbench") and not self.root:
            raise ConfigError(f"[data] kind {self.kind!r} needs root = the AVSBench folder")
        if not 0.0 <= self.negative_share < 1.0:
            raise ConfigError(f"[data] negative_share must be in [0, 1), got {self.negative_share}")
        object.__setattr__(self, "negative_kinds", tuple(self.negative_kinds))


@dataclass(frozen=True)
class LossSection:
    lambda_sim: float = 1.0  # weight of the classifier-guided similarity BCE (paper eq. 7); 0 disables
    dice_weight: float = 0.0  # soft-IoU term defined on empty masks


@dataclass(frozen=True)
class OptimSection:
    optimizer: str = "adamw"  # "adam" | "adamw"
    lr: float = 3e-4
    backbone_lr_scale: float = 0.1  # pretrained visual encoder learns slower; 0 freezes it (BN stats too)
    weight_decay: float = 1e-4
    batch_size: int = 16  # per process
    epochs: int = 4
    grad_clip: float = 1.0
    amp: bool = True  # mixed precision, used only on CUDA
    lr_schedule: str = "constant"  # "constant" | "cosine" (decays to lr_final_scale * lr at the last step)
    lr_final_scale: float = 0.01
    warmup_steps: int = 0  # linear warm-up from 0 (either schedule)

    def __post_init__(self) -> None:
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"[optim] lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if not 0.0 <= self.lr_final_scale <= 1.0 or self.warmup_steps < 0:
            raise ConfigError(
                f"[optim] needs 0 <= lr_final_scale <= 1 and warmup_steps >= 0, got "
                f"{self.lr_final_scale} and {self.warmup_steps}"
            )
        if self.backbone_lr_scale < 0:
            raise ConfigError(f"[optim] backbone_lr_scale must be >= 0 (0 freezes), got {self.backbone_lr_scale}")
        if self.optimizer not in ("adam", "adamw"):
            raise ConfigError(f"[optim] optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")


def lr_factor(optim: OptimSection, step: int, total_steps: int) -> float:
    """Multiplier of the base learning rate for optimizer step `step` (0-based) of `total_steps`.

    A function of the step alone, so a resumed run continues the schedule exactly.
    """
    warm = min(1.0, (step + 1) / optim.warmup_steps) if optim.warmup_steps else 1.0
    if optim.lr_schedule == "constant" or total_steps <= 1:
        return warm
    progress = min(1.0, step / (total_steps - 1))
    final = optim.lr_final_scale
    return warm * (final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress)))


@dataclass(frozen=True)
class EvalSection:
    every_epochs: int = 1
    batch_size: int = 16
    threshold: float = 0.5
    gate_threshold: float = 0.5  # similarity gate: mask emptied when sigma(sounding_logit) < this


@dataclass(frozen=True)
class TemporalSection:
    """Present: train the temporal stage on top of the (frozen) segmenter of [model].init_checkpoint."""

    window: int = 5
    dim: int = 32
    heads: int = 4
    uncertainty: bool = True
    edl_weight: float = 0.5  # evidential loss on the Dirichlet parameters
    clip_negative_share: float = 0.3  # share of clip-seconds given negative audio


@dataclass(frozen=True)
class TrainConfig:
    model: ModelSection
    data: DataSection
    loss: LossSection
    optim: OptimSection
    eval: EvalSection
    temporal: TemporalSection | None = None
    seed: int = 0
    name: str = "run"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        sections = {
            "model": ModelSection,
            "data": DataSection,
            "loss": LossSection,
            "optim": OptimSection,
            "eval": EvalSection,
            "temporal": TemporalSection,
        }
        top = {"seed", "name"}
        unknown = set(data) - set(sections) - top
        if unknown:
            raise ConfigError(
                f"unknown section(s) {sorted(unknown)}; valid: {sorted(sections)} and keys {sorted(top)}"
            )
        built = {k: _build(cls_, k, dict(data.get(k, {}))) for k, cls_ in sections.items() if k != "temporal"}
        if "temporal" in data:
            built["temporal"] = _build(TemporalSection, "temporal", dict(data["temporal"]))
        return cls(**built, **{k: data[k] for k in top if k in data})


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a TOML recipe. `overrides` maps "section.key" to a value (from the CLI's --set)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found; recipes are in training/configs/")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.rpartition(".")
        target = data.setdefault(section, {}) if section else data
        target[key] = value
    return TrainConfig.from_dict(data)


def parse_set(items: list[str]) -> dict[str, Any]:
    """Parse CLI `--set section.key=value` items; values are TOML literals (bare words are strings)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        try:
            out[key] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = raw
    return out
