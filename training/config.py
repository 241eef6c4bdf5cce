"""Training recipes: one small frozen dataclass per stage, read from a TOML file.

A recipe file has the sections ``[model]``, ``[data]``, ``[loss]``, ``[optim]``, ``[eval]`` and
optionally ``[temporal]``; every key is a field of the dataclass of its section, and unknown
keys are errors (so a typo never silently falls back to a default). The parsed recipe is saved
inside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamavs.engine.manifest import Thresholds
from streamavs.errors import ConfigError, InputError
from streamavs.evaluation import BATCH_SIZE


def _build(cls, section: str, data: dict[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)} in [{section}]; valid keys: {sorted(names)}")
    data = {key: check_value(cls, section, key, value) for key, value in data.items()}
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"bad [{section}] section: {exc}") from exc


# -- types: the dataclasses' type hints are the single source of truth ------------------------
def _expected(hint: Any) -> str:
    """A type hint in a recipe writer's words ("an integer", "a list of strings")."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_expected(a) for a in args)
    if typing.get_origin(hint) is tuple:
        plural = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
        return f"a list of {plural.get(args[0], 'values')}"
    if typing.get_origin(hint) is dict or hint is dict:
        return "a table"
    names = {bool: "a boolean (true or false)", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, f"a {getattr(hint, '__name__', hint)}")


def _arrived(value: Any) -> str:
    """What a recipe value is, for an error message ("the string 'abc'")."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    kinds = {int: "integer", float: "number", str: "string", list: "list", tuple: "list", dict: "table"}
    return f"the {kinds.get(type(value), type(value).__name__)} {value!r}"


def _coerce(value: Any, hint: Any) -> tuple[bool, Any]:
    """(matches, value) for `value` against `hint`; an int where a float is expected becomes a float,
    a TOML list where a tuple is expected becomes a tuple. bool is not an int."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            ok, out = _coerce(value, arg)
            if ok:
                return True, out
        return False, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False, value
        (item,) = typing.get_args(hint)[:1]
        items = [_coerce(v, item) for v in value]
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    if origin is dict or hint is dict:
        return isinstance(value, dict), value
    return isinstance(value, hint), value


def toml_literal(value: Any) -> str:
    """A TOML literal for the advice (`lr = 0.0003`, `--set optim.lr=0.0003`)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}" if not value else "{ " + ", ".join(f"{k} = {toml_literal(v)}" for k, v in value.items()) + " }"
    return repr(value)


def check_value(cls: type, section: str, key: str, value: Any, *, from_set: bool = False) -> Any:
    """`value` for field `key` of dataclass `cls` (recipe section `section`, "" for top-level keys),
    checked against its type hint (an int becomes a float, a list a tuple where the hint says so).

    Raises ConfigError naming the section, the key, what was expected, what arrived and the fix;
    from_set: the value came from the CLI's ``--set section.key=value`` (the advice says so).
    """
    hint = typing.get_type_hints(cls)[key]
    ok, out = _coerce(value, hint)
    if ok:
        return out
    fld = {f.name: f for f in dataclasses.fields(cls)}[key]
    default = None if fld.default is dataclasses.MISSING else fld.default
    if fld.default_factory is not dataclasses.MISSING:
        default = fld.default_factory()
    dotted = f"{section}.{key}" if section else key
    problem = f"[{section}] {key}" if section else key
    problem = f"{problem} must be {_expected(hint)}, got {_arrived(value)}"
    if from_set:
        example = f"e.g. --set {dotted}={toml_literal(default)}" if default is not None else f"e.g. --set {dotted}=..."
        raise ConfigError(f"--set {dotted}: {problem}; values are TOML literals, {example}")
    example = f", e.g. {key} = {toml_literal(default)}" if default is not None else ""
    raise ConfigError(f"{problem}; fix the value{example}")


def _check(section_obj: Any, section: str, key: str, ok: bool, expected: str) -> None:
    """Raise the recipe's range error for `key` unless `ok`: what was expected, what arrived, the default."""
    if not ok:
        default = {f.name: f.default for f in dataclasses.fields(section_obj)}[key]
        raise ConfigError(
            f"[{section}] {key} must be {expected}, got {getattr(section_obj, key)}; "
            f"fix the value, e.g. {key} = {toml_literal(default)}"
        )


def _positive(section_obj: Any, section: str, *keys: str) -> None:
    """Fields of a section that must be > 0 (zero epochs or a negative rate trains nothing, or diverges)."""
    for key in keys:
        _check(section_obj, section, key, getattr(section_obj, key) > 0, "> 0")


def _non_negative(section_obj: Any, section: str, *keys: str) -> None:
    """Fields of a section that must be >= 0 (a negative weight decay grows the weights)."""
    for key in keys:
        _check(section_obj, section, key, getattr(section_obj, key) >= 0, ">= 0")


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
        _positive(self, "data", "image_size", "train_clips", "val_clips")
        _non_negative(self, "data", "num_workers")
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
        _positive(self, "optim", "lr", "batch_size", "epochs", "grad_clip")  # grad_clip = inf: no clipping
        _non_negative(self, "optim", "weight_decay")
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
    """Defaults: the engine evaluation's batch size and an engine manifest's default thresholds, so a
    checkpoint (``streamavs eval --checkpoint``) is scored as its exported engine is."""

    every_epochs: int = 1
    batch_size: int = BATCH_SIZE
    threshold: float = Thresholds.mask  # mask pixels: probability >= this
    gate_threshold: float = Thresholds.gate  # similarity gate: mask emptied when sigma(sounding_logit) < this

    def __post_init__(self) -> None:
        _positive(self, "eval", "batch_size", "every_epochs")
        # a mask threshold of 0 or 1 keeps every pixel or none; the gate's ends mean "never gate" and "gate all"
        _check(self, "eval", "threshold", 0.0 < self.threshold < 1.0, "in (0, 1)")
        _check(self, "eval", "gate_threshold", 0.0 <= self.gate_threshold <= 1.0, "in [0, 1]")


TEMPORAL_KEEP_RULES = ("best_score", "no_worse", "last")
TEMPORAL_RESOLUTIONS = ("fused", "full")  # where the stage's mask loss and validation are computed


@dataclass(frozen=True)
class TemporalSection:
    """Present: train the temporal stage on top of the (frozen) segmenter of [model].init_checkpoint."""

    window: int = 5
    dim: int = 32
    heads: int = 4
    uncertainty: bool = True
    edl_weight: float = 0.5  # evidential loss on the Dirichlet parameters
    transition_weight: float = 3.0  # loss weight of frames where the sounding state changed (starts, stops)
    consistency_weight: float = 2.0  # frame-to-frame probability change on target-stable pixels (flicker)
    clip_negative_share: float = 0.3  # share of clip-seconds given negative audio
    clip_seconds: int = 5  # length of the training and validation clips (the streaming benchmark streams 10 s)
    keep: str = "best_score"  # which epoch is saved: "best_score" | "no_worse" | "last" (see training/temporal_trainer.py)
    # where the mask loss and the validation metrics are computed: "fused" (the 1/4-resolution map the stage
    # works on, targets area-downsampled) or "full" (the stage's logits upsampled to the frame, as the engine
    # outputs them and the benchmark measures them)
    resolution: str = "fused"
    # start the stage from this temporal checkpoint's stage (trained on the same segmenter); an ungated one may
    # start a gated stage, which then starts as exactly that stage (training/stage_init.py)
    init_stage: str | None = None
    # also read how far the sound moved from the past (1 - cosine of a learned code of the audio embedding):
    # off-screen sound after an object's own sound barely moves the sounding probability (bench/README.md, R13);
    # measured in R14, not used by any shipped recipe
    audio_change: bool = False

    def __post_init__(self) -> None:
        _positive(self, "temporal", "window", "dim", "heads", "clip_seconds")
        if self.keep not in TEMPORAL_KEEP_RULES:
            raise ConfigError(f"[temporal] keep must be one of {TEMPORAL_KEEP_RULES}, got {self.keep!r}")
        if self.resolution not in TEMPORAL_RESOLUTIONS:
            raise ConfigError(f"[temporal] resolution must be one of {TEMPORAL_RESOLUTIONS}, got {self.resolution!r}")
        if self.init_stage is not None and not str(self.init_stage).strip():
            raise ConfigError("[temporal] init_stage is empty: give the temporal.pt of a temporal run, or omit the key")


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
        top = {"seed", "name"}
        unknown = set(data) - set(SECTIONS) - top
        if unknown:
            raise ConfigError(
                f"unknown section(s) {sorted(unknown)}; valid: {sorted(SECTIONS)} and keys {sorted(top)}"
            )
        for name in SECTIONS:
            if data.get(name) is not None and not isinstance(data[name], dict):
                raise ConfigError(
                    f"[{name}] must be a table of keys, got {_arrived(data[name])}; write it as a [{name}] section"
                )
        built = {k: _build(cls_, k, dict(data.get(k, {}))) for k, cls_ in SECTIONS.items() if k != "temporal"}
        if data.get("temporal") is not None:  # absent, or None in a saved TrainConfig.to_dict()
            built["temporal"] = _build(TemporalSection, "temporal", dict(data["temporal"]))
        return cls(**built, **{k: check_value(cls, "", k, data[k]) for k in top if k in data})


SECTIONS: dict[str, type] = {
    "model": ModelSection,
    "data": DataSection,
    "loss": LossSection,
    "optim": OptimSection,
    "eval": EvalSection,
    "temporal": TemporalSection,
}


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a TOML recipe. `overrides` maps "section.key" to a value (from the CLI's --set).

    Every value is checked against its field's type hint here, before any work starts; errors
    name the recipe file (and the --set items), the section and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found; recipes are in training/configs/")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    overrides = overrides or {}
    for dotted, value in overrides.items():
        section, _, key = dotted.rpartition(".")
        owner = SECTIONS.get(section) if section else TrainConfig
        if owner is not None and key in {f.name for f in dataclasses.fields(owner)} and key not in SECTIONS:
            value = check_value(owner, section, key, value, from_set=True)
        target = data.setdefault(section, {}) if section else data
        if not isinstance(target, dict):
            raise ConfigError(f"--set {dotted}: [{section}] is not a section of the recipe; valid: {sorted(SECTIONS)}")
        target[key] = value
    try:
        return TrainConfig.from_dict(data)
    except ConfigError as exc:
        given = " with " + " ".join(f"--set {k}={toml_literal(v)}" for k, v in overrides.items()) if overrides else ""
        raise ConfigError(f"{path}{given}: {exc}") from exc


DEVICES = "auto, cpu, cuda or cuda:N"  # the devices a run trains on (N: a GPU index)


def check_device(device: str) -> str:
    """`device` when it is one of DEVICES, else InputError; checked without torch (the CLI does it first)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise InputError(f"--device must be {DEVICES}, got {device!r}; e.g. --device cpu")
    return device


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
