"""Clip generation: objects placed, moved, painted and made to sound, with per-second ground truth.

Timing follows AVSBench (docs/reference.md §1): a clip of T seconds has T frames; frame t
shows the scene at the END of second t (time t + 1 s) and is paired with the audio of
[t, t + 1) s. Objects move linearly over the clip, so positions at any time are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamavs.errors import InputError
from streamavs.synthetic.banks import PROCEDURAL, BankClass, ObjectBank
from streamavs.synthetic.config import SceneConfig
from streamavs.synthetic.sounds import pink_noise

__all__ = ["Clip", "generate_clip", "mono_source_gain"]


@dataclass
class Clip:
    """One synthetic clip and its ground truth. T = config.seconds, H = W = config.image_size.

    frames: (T, H, W, 3) uint8 RGB; frame t is the scene at time t + 1 s.
    audio: (T * sample_rate, 2) float32 in [-1, 1], channels-last (left, right).
    masks: (T, H, W) bool, the visible pixels of every object sounding during second t.
    object_masks: (T, n_obj, H, W) bool, each object's visible pixels (after occlusion).
    sounding: (T, n_obj) bool, whether object i sounds during second t.
    class_ids: (n_obj,) int64 class of each object (index into `classes`); objects are listed
    back to front (object n_obj - 1 is drawn last, on top).
    is_source: (n_obj,) bool, objects that have a sound track (distractors never sound).
    centres: (T, n_obj, 2) float32 (x, y) pixel centre of each object in frame t.
    classes: the bank's classes (name, group). object_keys: (n_obj,) what each object is (a
    shape, a stamp). sound_keys: (n_obj,) the recording or sound family of each source ("" for
    distractors).
    """

    seed: int
    frames: np.ndarray
    audio: np.ndarray
    sample_rate: int
    masks: np.ndarray
    object_masks: np.ndarray
    sounding: np.ndarray
    class_ids: np.ndarray
    is_source: np.ndarray
    centres: np.ndarray
    config: SceneConfig = field(default_factory=SceneConfig)
    classes: tuple[BankClass, ...] = PROCEDURAL.classes
    object_keys: tuple[str, ...] = ()
    sound_keys: tuple[str, ...] = ()

    @property
    def seconds(self) -> int:
        return int(self.frames.shape[0])

    @property
    def n_objects(self) -> int:
        return int(self.class_ids.shape[0])

    @property
    def category(self) -> str:
        """Class name of the first source object (the AVSBench S4 category of a single-source clip)."""
        return self.classes[int(self.class_ids[np.flatnonzero(self.is_source)[0]])].name

    @property
    def groups(self) -> tuple[str, ...]:
        """Sorted groups of every object in the clip, sounding or not (off-screen sound must avoid them all)."""
        return tuple(sorted({self.classes[int(i)].group for i in self.class_ids}))

    def sounding_class_ids(self, t: int) -> list[int]:
        """Sorted class ids of the objects sounding during second `t` (0 <= t < T)."""
        if not 0 <= t < self.seconds:
            raise InputError(f"second t must be in 0..{self.seconds - 1}, got {t}")
        return sorted(int(c) for c in self.class_ids[self.sounding[t]])


@dataclass(frozen=True)
class _Object:
    class_id: int
    radius: float  # px
    start: tuple[float, float]  # (x, y) px at time 0
    end: tuple[float, float]  # (x, y) px at time T
    angle0: float  # rad at time 0
    spin: float  # rad/s
    look: Any  # the bank's appearance of this object

    def at(self, time_s: float, seconds: int) -> tuple[float, float, float]:
        """(cx, cy, angle) at `time_s` seconds."""
        f = time_s / seconds
        return (self.start[0] + f * (self.end[0] - self.start[0]),
                self.start[1] + f * (self.end[1] - self.start[1]),
                self.angle0 + self.spin * time_s)


def _choose_classes(rng: np.random.Generator, cfg: SceneConfig, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(class_ids, is_source), all classes distinct, shuffled into drawing order."""
    if cfg.setting == "single":
        n_src = 1
        n_dis = int(rng.integers(1, cfg.max_distractors + 1)) if cfg.max_distractors and rng.random() < cfg.distractor_share else 0
    else:
        n_src = int(rng.integers(cfg.multi_sources[0], cfg.multi_sources[1] + 1))
        n_dis = int(rng.integers(0, cfg.max_distractors + 1))
    n_dis = min(n_dis, n_classes - n_src)  # a bank with few classes (a test split) gets fewer distractors
    class_ids = rng.choice(n_classes, size=n_src + n_dis, replace=False).astype(np.int64)
    is_source = np.arange(n_src + n_dis) < n_src
    order = rng.permutation(n_src + n_dis)
    return class_ids[order], is_source[order]


def _place(rng: np.random.Generator, cfg: SceneConfig, class_ids: np.ndarray, bank: ObjectBank) -> list[_Object]:
    """Objects inside the frame, apart enough that occlusion is partial, moving slowly."""
    size, seconds = cfg.image_size, cfg.seconds
    objects: list[_Object] = []
    for cid in class_ids:
        r = float(rng.uniform(*cfg.radius_range) * size)
        lo, hi = r, size - r
        best, best_gap = None, -np.inf
        for _ in range(30):  # rejection sampling: keep the candidate farthest from the others
            p = rng.uniform(lo, hi, 2)
            gap = min((np.hypot(*(p - np.asarray(o.start))) / (0.75 * (r + o.radius)) for o in objects), default=np.inf)
            if gap > best_gap:
                best, best_gap = p, gap
            if gap >= 1.0:
                break
        direction = rng.uniform(0, 2 * np.pi)
        speed = rng.uniform(0, cfg.max_speed) * size
        end = np.clip(best + speed * seconds * np.array([np.cos(direction), np.sin(direction)]), lo, hi)
        objects.append(_Object(
            class_id=int(cid), radius=r, start=(float(best[0]), float(best[1])), end=(float(end[0]), float(end[1])),
            angle0=float(rng.uniform(0, 2 * np.pi)), spin=float(rng.uniform(-0.15, 0.15)),
            look=bank.new_look(rng, int(cid), r),
        ))
    return objects


def _sounding_states(rng: np.random.Generator, cfg: SceneConfig, is_source: np.ndarray) -> np.ndarray:
    """(T, n_obj) bool: sources start on (or, when states change, off with probability p/2) and flip with probability p."""
    p = cfg.state_change_prob
    states = np.zeros((cfg.seconds, is_source.size), dtype=bool)
    for i in np.flatnonzero(is_source):
        on = p == 0.0 or rng.random() >= p / 2
        for t in range(cfg.seconds):
            if t > 0 and p > 0.0 and rng.random() < p:
                on = not on
            states[t, i] = on
    return states


def _gate(states: np.ndarray, sr: int, fade: int) -> np.ndarray:
    """(T * sr,) float gain: 1 in sounding seconds, 0 otherwise, with ramps kept inside the sounding seconds."""
    gain = np.repeat(states.astype(np.float64), sr)
    if fade <= 0:
        return gain
    ramp = np.linspace(0.0, 1.0, fade + 2)[1:-1]
    for t in range(states.size):
        if not states[t]:
            continue
        if t == 0 or not states[t - 1]:  # starts sounding at t
            gain[t * sr : t * sr + fade] = ramp
        if t + 1 < states.size and not states[t + 1]:  # stops sounding at t + 1
            gain[(t + 1) * sr - fade : (t + 1) * sr] = ramp[::-1]
    return gain


def _render(rng: np.random.Generator, cfg: SceneConfig, objects: list[_Object],
            bank: ObjectBank) -> tuple[np.ndarray, ...]:
    """frames (T, H, W, 3) uint8, object_masks (T, n, H, W) bool, centres (T, n, 2) float32."""
    size, seconds, n = cfg.image_size, cfg.seconds, len(objects)
    background = bank.background(rng, size)
    frames = np.empty((seconds, size, size, 3), dtype=np.uint8)
    visible = np.zeros((seconds, n, size, size), dtype=bool)
    centres = np.zeros((seconds, n, 2), dtype=np.float32)
    # Sensor noise: one field per clip, a different random crop of it per frame (cheaper than fresh noise).
    pad = 16
    noise = rng.standard_normal((size + pad, size + pad, 3), dtype=np.float32) * np.float32(rng.uniform(1.0, 4.0))
    for t in range(seconds):
        image = background.copy()
        covered = np.zeros((size, size), dtype=bool)
        full = []
        for i, obj in enumerate(objects):  # back to front
            cx, cy, angle = obj.at(t + 1.0, seconds)
            centres[t, i] = (cx, cy)
            full.append(bank.draw(image, obj.look, cx, cy, obj.radius, angle))
        for i in range(n - 1, -1, -1):  # front to back: what is not yet covered is visible
            visible[t, i] = full[i] & ~covered
            covered |= full[i]
        oy, ox = rng.integers(0, pad + 1, 2)
        image += noise[oy : oy + size, ox : ox + size]
        frames[t] = np.clip(image, 0, 255).astype(np.uint8)  # (H, W, 3)
    return frames, visible, centres


def mono_source_gain(config: SceneConfig) -> float:
    """Amplitude at which a source of a `config` scene reaches the front end, relative to its waveform.

    The front end hears the mean of the two channels (:func:`streamavs.audio.prepare_waveform`).
    A panned source enters them with gains (1 - a, a), whose mean is 1/2 wherever the object is;
    without stereo it enters both at 1. Off-screen sound is drawn at this gain
    (:func:`streamavs.datasets.conditions.make_negative`), so loudness does not tell it from a
    sounding object (before 2026-11-30 it was 6 dB louder; bench/README.md, "Off-screen sound").
    """
    return 0.5 if config.stereo else 1.0


def _mix(rng: np.random.Generator, cfg: SceneConfig, objects: list[_Object], is_source: np.ndarray,
         states: np.ndarray, bank: ObjectBank) -> np.ndarray:
    """(T * sr, 2) float32 in [-1, 1]: each source gated by its states and panned by its centre x."""
    sr, seconds, size = cfg.sample_rate, cfg.seconds, cfg.image_size
    n = seconds * sr
    out = np.zeros((n, 2), dtype=np.float64)
    fade = int(round(cfg.fade_ms * sr / 1000.0))
    time_s = (np.arange(n) + 0.5) / sr
    for i in np.flatnonzero(is_source):
        obj = objects[i]
        x = bank.sound(obj.look, rng, float(seconds), sr).astype(np.float64) * _gate(states[:, i], sr, fade)
        if cfg.stereo:  # alpha = c_x / W, linear in time because the motion is (docs/reference.md §7)
            alpha = (obj.start[0] + (obj.end[0] - obj.start[0]) * time_s / seconds) / size
            out[:, 0] += (1.0 - alpha) * x
            out[:, 1] += alpha * x
        else:
            out += x[:, None]
    if cfg.ambient_dbfs is not None:
        level = 10.0 ** (cfg.ambient_dbfs / 20.0)
        out += level * np.stack([pink_noise(rng, n, sr), pink_noise(rng, n, sr)], axis=1)  # (n, 2)
    peak = np.abs(out).max(initial=0.0)
    if peak > 0.99:
        out *= 0.99 / peak
    return out.astype(np.float32)


def generate_clip(seed: int, config: SceneConfig = SceneConfig(), bank: ObjectBank = PROCEDURAL) -> Clip:
    """The clip of `seed` under `config` with objects from `bank`; the same seed, config and bank give identical bytes.

    All randomness comes from ``np.random.default_rng(seed)``; no global state is touched.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative integer (see split_seed), got {seed!r}")
    if not isinstance(config, SceneConfig):
        raise InputError(f"config must be a SceneConfig, got {type(config).__name__}")
    rng = np.random.default_rng(int(seed))
    n_sources = 1 if config.setting == "single" else config.multi_sources[1]
    if len(bank.classes) < n_sources:
        raise InputError(f"the {bank.name} bank has {len(bank.classes)} classes; a {config.setting}-source scene needs {n_sources}")
    class_ids, is_source = _choose_classes(rng, config, len(bank.classes))
    objects = _place(rng, config, class_ids, bank)
    states = _sounding_states(rng, config, is_source)
    frames, visible, centres = _render(rng, config, objects, bank)
    audio = _mix(rng, config, objects, is_source, states, bank)
    masks = (visible & states[:, :, None, None]).any(axis=1)  # (T, H, W)
    return Clip(
        seed=int(seed), frames=frames, audio=audio, sample_rate=config.sample_rate, masks=masks,
        object_masks=visible, sounding=states, class_ids=class_ids, is_source=is_source, centres=centres,
        config=config, classes=bank.classes, object_keys=tuple(bank.look_key(o.look) for o in objects),
        sound_keys=tuple(bank.sound_key(o.look) if src else "" for o, src in zip(objects, is_source)),
    )
