"""Negative audio: silence, controlled noise and off-screen sound, all as RAW 16 kHz waveforms.

Every negative is a float32 mono waveform at 16 kHz, nominally in [-1, 1], that then goes
through the SAME front end as positive audio (:func:`streamavs.audio.prepare_waveform` +
:class:`streamavs.audio.LogMel`). The published AVSBench-Robust code featurised negatives with
a different pipeline than positives, so a model could tell them apart by preprocessing
artefacts alone (docs/reference.md §4); nothing here returns features.

Levels are RMS in dBFS: ``20*log10(rms)`` with full scale 1.0, so a full-scale square wave is
0 dBFS and a full-scale sine -3.01 dBFS. Noise levels are exact (the waveform is rescaled to
the target RMS after shaping); peaks are held to 5x RMS (14 dB crest factor), so the
highest allowed level, -15 dBFS RMS, never clips.

Off-screen sound comes from a category group that is not on screen (AVSBench-Robust Table 1:
music; human voice; animals; devices/machines), never from the confusable pairs
music<->human and animal->human (the visible group first). The synthetic benchmark's groups
("voice", "machine") are aliases of "human" and "device".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from streamavs.errors import ConfigError, DataError, InputError

__all__ = [
    "SAMPLE_RATE", "GROUPS", "PAPER_GROUPS", "AVSBENCH_S4_GROUPS", "AVSBENCH_MS3_GROUPS", "FORBIDDEN_OFFSCREEN",
    "NOISE_TYPES", "NoiseConfig", "rms_dbfs", "silence", "make_noise", "canonical_group",
    "allowed_offscreen_groups", "OffscreenBank", "OffscreenDraw", "draw_noise", "fit_length",
]

SAMPLE_RATE = 16000
MAX_NOISE_DBFS = -15.0  # loudest noise level; with peaks <= _CREST x RMS it stays below full scale
_CREST = 5.0

# Canonical category groups of AVSBench-Robust (Table 1), then "nature" (rain, storms): the
# real-media benchmark's sounds that come from no object.
PAPER_GROUPS: tuple[str, ...] = ("music", "human", "animal", "device")
GROUPS: tuple[str, ...] = (*PAPER_GROUPS, "nature")
_ALIASES = {"voice": "human", "machine": "device", "vehicle": "device"}

# The 23 AVSBench S4 categories (folder names) and their group.
AVSBENCH_S4_GROUPS: dict[str, str] = {
    "playing_acoustic_guitar": "music", "playing_glockenspiel": "music", "playing_piano": "music",
    "playing_tabla": "music", "playing_ukulele": "music", "playing_violin": "music",
    "baby_laughter": "human", "female_singing": "human", "male_speech": "human",
    "cat_meowing": "animal", "coyote_howling": "animal", "dog_barking": "animal",
    "horse_clip-clop": "animal", "lions_roaring": "animal", "mynah_bird_singing": "animal",
    "ambulance_siren": "device", "cap_gun_shooting": "device", "chainsawing_trees": "device",
    "driving_buses": "device", "helicopter": "device", "lawn_mowing": "device", "race_car": "device",
    "typing_on_computer_keyboard": "device",
}

# MS3 object labels (AVSS metadata "a_obj", joined by "_") and their group. AVSS's
# "background" label is not a sound source and is left out on purpose (the published code
# maps it to "device", which would forbid device off-screen sound for almost every video).
AVSBENCH_MS3_GROUPS: dict[str, str] = {
    "guitar": "music", "tabla": "music", "violin": "music", "ukulele": "music", "piano": "music",
    "marimba": "music",
    "man": "human", "woman": "human", "baby": "human",
    "dog": "animal", "cat": "animal", "lion": "animal", "bird": "animal", "wolf": "animal",
    "mower": "device", "bus": "device", "car": "device", "gun": "device", "saw": "device",
    "emergency-car": "device", "keyboard": "device",
}

# (visible group, off-screen group) pairs that are too confusable to count as negatives.
FORBIDDEN_OFFSCREEN: frozenset[tuple[str, str]] = frozenset(
    {("music", "human"), ("human", "music"), ("animal", "human")}
)


def canonical_group(group: str) -> str:
    """The AVSBench-Robust group for `group` ("voice" -> "human", "machine" -> "device")."""
    g = _ALIASES.get(group, group)
    if g not in GROUPS:
        raise InputError(f"unknown category group {group!r}; expected one of {GROUPS} or aliases {sorted(_ALIASES)}")
    return g


def allowed_offscreen_groups(visible: Iterable[str], candidates: Iterable[str] = GROUPS) -> list[str]:
    """Candidate groups usable as off-screen sound for a frame showing the `visible` groups.

    A candidate is allowed when it differs from every visible group and no (visible, candidate)
    pair is in :data:`FORBIDDEN_OFFSCREEN`. Names are compared after :func:`canonical_group`;
    the candidates are returned in their own spelling, in their order.
    """
    seen = {canonical_group(g) for g in visible}
    out = []
    for cand in candidates:
        c = canonical_group(cand)
        if c not in seen and not any((v, c) in FORBIDDEN_OFFSCREEN for v in seen):
            out.append(cand)
    return out


# ----------------------------------------------------------------------------- levels, silence


def rms_dbfs(x: np.ndarray) -> float:
    """RMS level of a waveform in dBFS (full-scale square = 0 dBFS); -inf for digital silence."""
    r = float(np.sqrt(np.mean(np.square(np.asarray(x, dtype=np.float64))))) if np.size(x) else 0.0
    return 20.0 * np.log10(r) if r > 0 else float("-inf")


def _n_samples(seconds: float, sample_rate: int) -> int:
    if not seconds > 0:
        raise InputError(f"seconds must be > 0, got {seconds!r}")
    return int(round(seconds * sample_rate))


def silence(seconds: float, sample_rate: int = SAMPLE_RATE, dither_dbfs: float | None = None,
            rng: np.random.Generator | None = None) -> np.ndarray:
    """float32 (round(seconds*sample_rate),) of digital zeros, or Gaussian dither at `dither_dbfs` RMS.

    Zeros give the front end's floor exactly: every log-mel value equals log(0.01).
    A dither of e.g. -90 dBFS models a real, idle microphone; it needs `rng`.
    """
    n = _n_samples(seconds, sample_rate)
    if dither_dbfs is None:
        return np.zeros(n, dtype=np.float32)
    if rng is None:
        raise InputError("silence with dither needs rng (a numpy Generator) for reproducibility")
    return _at_level(rng.standard_normal(n), dither_dbfs)


def _at_level(x: np.ndarray, level_dbfs: float) -> np.ndarray:
    """Rescale `x` to exactly `level_dbfs` RMS, returned as float32."""
    x = np.asarray(x, dtype=np.float64)
    r = np.sqrt(np.mean(x * x))
    if not r > 0:
        raise InputError("cannot set the level of an all-zero signal")
    return (x * (10.0 ** (level_dbfs / 20.0) / r)).astype(np.float32)


# ----------------------------------------------------------------------------- noise generators


def _shaped(n: int, rng: np.random.Generator, sample_rate: int, exponent: float, f_lo: float = 20.0) -> np.ndarray:
    """Gaussian noise with power spectrum ~ f**-exponent above f_lo (flat below, DC removed)."""
    spec = np.fft.rfft(rng.standard_normal(n))  # (n//2+1,) complex
    f = np.fft.rfftfreq(n, 1.0 / sample_rate)
    gain = np.maximum(f, f_lo) ** (-exponent / 2.0)
    gain[0] = 0.0
    return np.fft.irfft(spec * gain, n)


def _lowpass(x: np.ndarray, sample_rate: int, f_hi: float, f_lo: float = 0.0) -> np.ndarray:
    """Brick-wall band-pass [f_lo, f_hi] Hz in the FFT domain (the clips are short, this is exact enough)."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(x.size, 1.0 / sample_rate)
    spec[(f > f_hi) | (f < f_lo)] = 0.0
    return np.fft.irfft(spec, x.size)


def _limit(x: np.ndarray, crest: float = 4.0) -> np.ndarray:
    """Soft-limit peaks to `crest` x RMS (tanh) for impulsive types, before the hard 5x RMS clip."""
    r = np.sqrt(np.mean(x * x)) + 1e-30
    return crest * r * np.tanh(x / (crest * r))


def _clicks(n: int, rng: np.random.Generator, sample_rate: int, rate_hz: float, decay_ms: float) -> np.ndarray:
    """Poisson train of short, exponentially decaying noise bursts with random amplitudes."""
    out = np.zeros(n)
    count = rng.poisson(rate_hz * n / sample_rate)
    length = max(8, int(decay_ms * 1e-3 * sample_rate * 5))
    env = np.exp(-np.arange(length) / (decay_ms * 1e-3 * sample_rate))
    for start in rng.integers(0, n, size=count):
        stop = min(n, start + length)
        out[start:stop] += rng.lognormal(0.0, 0.7) * env[: stop - start] * rng.standard_normal(stop - start)
    return out


def _white(n, rng, sr):
    return rng.standard_normal(n)


def _pink(n, rng, sr):
    return _shaped(n, rng, sr, 1.0)


def _brown(n, rng, sr):
    return _shaped(n, rng, sr, 2.0)


def _ambient(n, rng, sr):
    """Room tone: low rumble (20-250 Hz) + a pink bed 15 dB lower + sparse faint crackle."""
    rumble = _lowpass(_shaped(n, rng, sr, 2.0), sr, 250.0)
    bed = _pink(n, rng, sr)
    crackle = _clicks(n, rng, sr, rate_hz=3.0, decay_ms=2.0)
    parts = [_at_level(rumble, 0.0), _at_level(bed, -15.0)]
    if np.any(crackle):
        parts.append(_at_level(crackle, -22.0))
    return _limit(np.sum([p.astype(np.float64) for p in parts], axis=0))


def _hum(n, rng, sr):
    """Mains hum: 50 or 60 Hz with decaying (random) harmonics up to 1 kHz, over a faint white floor."""
    f0 = rng.choice([50.0, 60.0]) * rng.uniform(0.995, 1.005)
    t = np.arange(n) / sr
    x = np.zeros(n)
    for h in range(1, int(1000 // f0) + 1):
        x += rng.uniform(0.3, 1.0) / h * np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 2 * np.pi))
    return _at_level(x, 0.0).astype(np.float64) + _at_level(rng.standard_normal(n), -30.0)


def _rain(n, rng, sr):
    """Rain-like: dense crackle of tiny drops over a high-passed hiss bed."""
    drops = _clicks(n, rng, sr, rate_hz=400.0, decay_ms=1.5)
    hiss = _lowpass(rng.standard_normal(n), sr, sr / 2, f_lo=1500.0)
    return _limit(_at_level(drops, 0.0).astype(np.float64) + _at_level(hiss, -6.0))


# name -> generator(n_samples, rng, sample_rate) -> float64 signal of arbitrary level.
NOISE_TYPES: dict[str, Callable[[int, np.random.Generator, int], np.ndarray]] = {
    "white": _white,
    "pink": _pink,
    "brown": _brown,
    "ambient": _ambient,
    "hum": _hum,
    "rain": _rain,
}


@dataclass(frozen=True)
class NoiseConfig:
    """Which noise types are used where, and at which levels.

    train_types: types the training sampler may draw. eval_types: types reserved for the test
    set only (never drawn in training, so the test measures unseen noise too); the test set
    draws from train_types + eval_types. level_dbfs: (low, high) RMS level range, drawn
    uniformly. Both lists name keys of :data:`NOISE_TYPES` and must not overlap.
    """

    train_types: tuple[str, ...] = ("white", "pink", "brown", "ambient")
    eval_types: tuple[str, ...] = ("hum", "rain")
    level_dbfs: tuple[float, float] = (-40.0, -15.0)

    def __post_init__(self) -> None:
        unknown = [t for t in (*self.train_types, *self.eval_types) if t not in NOISE_TYPES]
        if unknown:
            raise ConfigError(f"unknown noise types {unknown}; valid: {sorted(NOISE_TYPES)}")
        if set(self.train_types) & set(self.eval_types):
            raise ConfigError(
                f"noise types {sorted(set(self.train_types) & set(self.eval_types))} are in both train_types "
                "and eval_types; an evaluation-only type must not be trained on: remove it from one list"
            )
        if not self.train_types:
            raise ConfigError("NoiseConfig.train_types is empty; give at least one type, e.g. ('white',)")
        lo, hi = self.level_dbfs
        if not -120.0 <= lo <= hi <= MAX_NOISE_DBFS:
            raise ConfigError(
                f"level_dbfs must satisfy -120 <= low <= high <= {MAX_NOISE_DBFS} dBFS RMS (louder noise can clip), "
                f"got {self.level_dbfs}"
            )

    def types(self, split: str) -> tuple[str, ...]:
        """Types drawable in `split`: "train" -> train_types; "eval" -> train_types + eval_types."""
        if split == "train":
            return self.train_types
        if split == "eval":
            return self.train_types + self.eval_types
        raise InputError(f"split must be 'train' or 'eval', got {split!r}")


def make_noise(kind: str, seconds: float, rng: np.random.Generator, level_dbfs: float,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float32 (round(seconds*sample_rate),) noise of type `kind` at exactly `level_dbfs` RMS."""
    if kind not in NOISE_TYPES:
        raise InputError(f"unknown noise type {kind!r}; valid: {sorted(NOISE_TYPES)}")
    if not level_dbfs <= MAX_NOISE_DBFS:
        raise InputError(f"noise level {level_dbfs} dBFS RMS could clip; use <= {MAX_NOISE_DBFS} dBFS")
    n = _n_samples(seconds, sample_rate)
    x = NOISE_TYPES[kind](n, rng, sample_rate)
    r = np.sqrt(np.mean(x * x))
    return _at_level(np.clip(x, -_CREST * r, _CREST * r), level_dbfs)  # rescaling after the clip keeps the level exact


def draw_noise(config: NoiseConfig, split: str, seconds: float, rng: np.random.Generator,
               sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, dict]:
    """Noise of a random type allowed in `split` ("train" | "eval") at a random level of `config`.

    Returns (float32 waveform, {"noise_type", "level_dbfs"}).
    """
    types = config.types(split)
    kind = types[int(rng.integers(len(types)))]
    level = float(rng.uniform(*config.level_dbfs))
    return make_noise(kind, seconds, rng, level, sample_rate), {"noise_type": kind, "level_dbfs": level}


# ----------------------------------------------------------------------------- off-screen sound


@dataclass(frozen=True)
class OffscreenDraw:
    """One off-screen sound: the float32 16 kHz waveform, the source key and the source's groups."""

    waveform: np.ndarray
    key: str
    groups: tuple[str, ...]


class OffscreenBank:
    """A pool of sounds with known groups to draw off-screen audio from.

    entries: (key, groups) pairs; groups is one group name or a tuple of them (a multi-source
    clip), e.g. ("dog_barking_0001", "animal"), ("ms3_clip", ("music", "human")) or
    ("bird", "animal") for a synthetic class. A source is allowed when ALL its groups are
    allowed for the visible groups (:func:`allowed_offscreen_groups`).
    load(key, rng, seconds) -> float32 mono 16 kHz waveform of that source, about `seconds`
    long (longer is trimmed, shorter zero-padded at the end).
    """

    def __init__(self, entries: Sequence[tuple[str, str | Sequence[str]]],
                 load: Callable[[str, np.random.Generator, float], np.ndarray]) -> None:
        self.entries: list[tuple[str, tuple[str, ...]]] = []
        for key, groups in entries:
            groups = (groups,) if isinstance(groups, str) else tuple(groups)
            if not groups:
                raise InputError(f"off-screen source {key!r} has no group; every source needs at least one")
            for g in groups:
                canonical_group(g)  # validates the name
            self.entries.append((str(key), groups))
        self._load = load

    def __len__(self) -> int:
        return len(self.entries)

    def candidates(self, visible_groups: Iterable[str], exclude: str | None = None) -> list[tuple[str, tuple[str, ...]]]:
        """Entries whose every group is allowed for the visible groups, minus the key `exclude`."""
        allowed = {canonical_group(g) for g in allowed_offscreen_groups(visible_groups)}
        return [(k, gs) for k, gs in self.entries
                if k != exclude and all(canonical_group(g) in allowed for g in gs)]

    def draw(self, visible_groups: Iterable[str], rng: np.random.Generator, seconds: float,
             exclude: str | None = None, sample_rate: int = SAMPLE_RATE) -> OffscreenDraw:
        """A random allowed source, loaded and cut to exactly `seconds` (float32, 16 kHz)."""
        visible = list(visible_groups)
        pool = self.candidates(visible, exclude)
        if not pool:
            have = sorted({g for _, gs in self.entries for g in gs})
            raise DataError(
                f"no off-screen sound is allowed for visible groups {sorted(visible)}: the bank holds groups "
                f"{have}, and off-screen sound must come from a group not on screen and not from the "
                f"confusable (visible, off-screen) pairs {sorted(FORBIDDEN_OFFSCREEN)}; add sources of other "
                "groups to the bank or use silence/noise for this video"
            )
        key, groups = pool[int(rng.integers(len(pool)))]
        wave = np.asarray(self._load(key, rng, seconds), dtype=np.float32)
        if wave.ndim != 1:
            raise InputError(f"off-screen source {key!r} gave shape {wave.shape}; the loader must return mono (n,)")
        return OffscreenDraw(fit_length(wave, _n_samples(seconds, sample_rate)), key, groups)


def fit_length(wave: np.ndarray, n: int) -> np.ndarray:
    """float32 (n,): `wave` trimmed at the end or zero-padded at the end to `n` samples."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.size >= n:
        return np.ascontiguousarray(wave[:n])
    return np.concatenate([wave, np.zeros(n - wave.size, dtype=np.float32)])
