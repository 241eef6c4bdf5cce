"""Data sets over the procedural benchmark (streamavs.synthetic), in the AVSBench sample format; numpy only.

:class:`SyntheticFrames` yields one (clip, second) per sample, :class:`SyntheticClips` whole
clips for the temporal stage (the real-media sets of :mod:`streamavs.datasets.real` are these
over a real-media bank). Both follow the clip dataset protocol of
:mod:`streamavs.datasets.conditions`, so the same
:class:`~streamavs.datasets.conditions.NegativeTraining` and
:class:`~streamavs.datasets.conditions.RobustTestSet` work on them as on AVSBench
(off-screen sound: a synthetic class whose group is not on screen, see
:func:`synthetic_offscreen_bank`). Clip audio (stereo) goes through the same front end
(``prepare_waveform`` downmixes and resamples) as every negative.

Targets: ``mask`` is the union of the objects sounding during that second (empty for
negatives), ``eval_mask`` the same union under the clip's own audio. ``label`` is 1 when the
audio is the clip's own AND a visible object sounds in that second (a second in which every
source is quiet is not a positive pair even though its condition is "positive").
Clips are regenerated from their seed (``split_seed(split, index)``); a small LRU cache
keeps the last few, so reading the seconds of one clip close together is ~T times cheaper.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import numpy as np

from streamavs.audio import LogMel, prepare_waveform
from streamavs.datasets.conditions import NegativeMix, NegativeTraining, RobustTestSet
from streamavs.datasets.negatives import SAMPLE_RATE, NoiseConfig, OffscreenBank, fit_length
from streamavs.datasets.samples import make_sample, stack_samples
from streamavs.errors import ConfigError, InputError
from streamavs.synthetic import CLASSES, SceneConfig, class_by_name, generate_clip, split_seed, synth_sound
from streamavs.synthetic.banks import PROCEDURAL, ObjectBank
from streamavs.synthetic.scenes import mono_source_gain

__all__ = ["SyntheticFrames", "SyntheticClips", "synthetic_offscreen_bank", "synthetic_test_set"]


def synthetic_offscreen_bank() -> OffscreenBank:
    """Every synthetic class as an off-screen source: synth_sound of that class (16 kHz, -26..-18 dBFS)."""
    return OffscreenBank([(c.name, c.group) for c in CLASSES], _synth_load)


def _synth_load(key: str, rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A sound of the synthetic class named `key` (module-level so that banks pickle for DataLoader workers)."""
    return synth_sound(class_by_name(key).id, rng, seconds, SAMPLE_RATE)


class _SyntheticBase:
    """Shared clip cache and protocol methods; `size` is the number of clips."""

    per = "frame"

    def __init__(self, split: str, size: int, scene_config: SceneConfig, negative_share: float,
                 noise_config: NoiseConfig, mix: NegativeMix | None, seed: int, cache_clips: int,
                 bank: ObjectBank = PROCEDURAL, offscreen: OffscreenBank | None = None) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"size (number of clips) must be a positive integer, got {size!r}")
        if not isinstance(scene_config, SceneConfig):
            raise ConfigError(f"scene_config must be a SceneConfig, got {type(scene_config).__name__}")
        split_seed(split, size - 1)  # validates split and size
        self.split, self.size, self.scene_config = split, size, scene_config
        self.bank, self._offscreen = bank, offscreen
        self.seconds = scene_config.seconds
        self._logmel = LogMel()
        self._cache: OrderedDict[int, tuple] = OrderedDict()
        self._cache_clips = max(1, int(cache_clips))
        # Negatives, when asked for, come from the shared training wrapper over this dataset.
        if mix is None:
            mix = NegativeMix(share=float(negative_share))
        elif negative_share:
            raise ConfigError("give either negative_share or mix (a NegativeMix with its own share), not both")
        self.mix = mix
        self._negatives = NegativeTraining(self, mix, noise_config, seed) if mix.share > 0 else None

    def clip(self, video: int):
        """The generated Clip of index `video` (cached)."""
        if not 0 <= video < self.size:
            raise InputError(f"clip index must be in 0..{self.size - 1}, got {video}")
        return self._cached(video)[0]

    def _cached(self, video: int) -> tuple:
        """(Clip, its 16 kHz mono waveform), generated on first use and kept in the LRU cache."""
        entry = self._cache.get(video)
        if entry is None:
            clip = generate_clip(split_seed(self.split, video), self.scene_config, self.bank)
            wave = fit_length(prepare_waveform(clip.audio, clip.sample_rate), self.seconds * SAMPLE_RATE)
            wave.setflags(write=False)
            entry = self._cache[video] = (clip, wave)
            if len(self._cache) > self._cache_clips:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(video)
        return entry

    @property
    def source_gain(self) -> float:
        """The clip protocol's level of off-screen sound: how loud a panned source reaches the front end."""
        return mono_source_gain(self.scene_config)

    @property
    def num_videos(self) -> int:
        return self.size

    def video_key(self, video: int) -> str:
        prefix = "synth" if self.bank is PROCEDURAL else self.bank.name
        return f"{prefix}_{self.split}_{video:07d}"

    def visible_groups(self, video: int) -> tuple[str, ...]:
        """Groups of every object in the clip (sounding or not): off-screen sound must avoid them all."""
        return self.clip(video).groups

    def waveform(self, video: int) -> np.ndarray:
        """float32 (T*16000,) mono 16 kHz clip audio (the stereo mix through prepare_waveform); read-only."""
        if not 0 <= video < self.size:
            raise InputError(f"clip index must be in 0..{self.size - 1}, got {video}")
        return self._cached(video)[1]

    def offscreen_bank(self) -> OffscreenBank:
        """The bank given at construction, else every synthetic class (the procedural bank's sounds)."""
        return self._offscreen if self._offscreen is not None else synthetic_offscreen_bank()

    def set_epoch(self, epoch: int) -> None:
        """Fresh negatives each epoch (when negative_share > 0)."""
        if self._negatives is not None:
            self._negatives.set_epoch(epoch)

    def _second(self, video: int, t: int, log_mel: np.ndarray, condition: str) -> dict:
        clip = self.clip(video)
        sample = make_sample(clip.frames[t], log_mel, clip.masks[t].astype(np.uint8), condition,
                             clip.category, self.video_key(video), t)
        sample["label"] = int(condition == "positive" and bool(clip.masks[t].any()))
        return sample

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._negatives[index] if self._negatives is not None else self.build(index)


class SyntheticFrames(_SyntheticBase):
    """Per-second samples (AVSBench dict format) of `size` synthetic clips: len = size * T.

    split: "train" | "val" | "test" (disjoint seed ranges). negative_share: share of samples
    whose audio is replaced by silence / off-screen / noise (NoiseConfig.train_types), equal
    weights; pass `mix` instead for other weights. seed: seeds the negatives (not the clips).
    """

    per = "frame"

    def __init__(self, split: str = "train", size: int = 1000, scene_config: SceneConfig = SceneConfig(),
                 negative_share: float = 0.0, noise_config: NoiseConfig = NoiseConfig(),
                 mix: NegativeMix | None = None, seed: int = 0, cache_clips: int = 8,
                 bank: ObjectBank = PROCEDURAL, offscreen: OffscreenBank | None = None) -> None:
        super().__init__(split, size, scene_config, negative_share, noise_config, mix, seed, cache_clips,
                         bank, offscreen)

    def __len__(self) -> int:
        return self.size * self.seconds

    def video_of(self, index: int) -> int:
        return index // self.seconds

    def build(self, index: int, waveform: np.ndarray | None = None, condition: str = "positive") -> dict:
        """Sample `index` with the clip's audio, or with `waveform` (16 kHz mono, T s) as `condition`."""
        video, t = divmod(index, self.seconds)
        if condition != "positive" and waveform is None:
            raise InputError("a negative condition needs its waveform (float32 16 kHz mono); see streamavs.datasets.conditions")
        wave = self.waveform(video) if waveform is None else fit_length(waveform, self.seconds * SAMPLE_RATE)
        log_mel = self._logmel.example_ending_at(wave, (t + 1) * SAMPLE_RATE)  # (96, 64)
        return self._second(video, t, log_mel, condition)


class SyntheticClips(_SyntheticBase):
    """Whole clips for the temporal stage: len = size; arrays have a leading T axis.

    Keys: frame (T,H,W,3) uint8, log_mel (T,96,64), mask / eval_mask (T,H,W) uint8, label (T,)
    int64, condition (list of T str), second (T,), mask_valid (T,) bool, sounding (T, n_obj)
    bool (False in negative seconds), class_ids (n_obj,) int64, and with
    ``object_masks=True`` object_masks (T, n_obj, H, W) uint8. negative_share is per SECOND.
    """

    per = "clip"

    def __init__(self, split: str = "train", size: int = 200, scene_config: SceneConfig = SceneConfig(),
                 negative_share: float = 0.0, noise_config: NoiseConfig = NoiseConfig(),
                 mix: NegativeMix | None = None, seed: int = 0, cache_clips: int = 2,
                 object_masks: bool = False, bank: ObjectBank = PROCEDURAL,
                 offscreen: OffscreenBank | None = None) -> None:
        super().__init__(split, size, scene_config, negative_share, noise_config, mix, seed, cache_clips,
                         bank, offscreen)
        self.object_masks = bool(object_masks)

    def __len__(self) -> int:
        return self.size

    def video_of(self, index: int) -> int:
        return index

    def build(self, index: int, waveform: np.ndarray | None = None,
              condition: str | Sequence[str] = "positive") -> dict:
        """Clip `index`; `condition` is one string or one per second (negatives spliced into `waveform`)."""
        clip = self.clip(index)
        conds = [condition] * self.seconds if isinstance(condition, str) else list(condition)
        if len(conds) != self.seconds:
            raise InputError(f"got {len(conds)} conditions for a {self.seconds} s clip; give one or one per second")
        if any(c != "positive" for c in conds) and waveform is None:
            raise InputError("negative seconds need the spliced waveform (float32 16 kHz mono); see streamavs.datasets.conditions")
        wave = self.waveform(index) if waveform is None else fit_length(waveform, self.seconds * SAMPLE_RATE)
        log_mels = self._logmel.examples_per_second(wave, self.seconds)  # (T, 96, 64)
        out = stack_samples([self._second(index, t, log_mels[t], c) for t, c in enumerate(conds)])
        positive = np.array([c == "positive" for c in conds])  # (T,)
        out["mask_valid"] = np.ones(self.seconds, dtype=bool)
        out["sounding"] = clip.sounding & positive[:, None]  # (T, n_obj)
        out["class_ids"] = clip.class_ids.astype(np.int64)
        if self.object_masks:
            out["object_masks"] = clip.object_masks.astype(np.uint8)
        return out


def synthetic_test_set(split: str = "test", size: int = 200, scene_config: SceneConfig = SceneConfig(),
                       per: str = "frame", seed: int = 0, noise_config: NoiseConfig = NoiseConfig()) -> RobustTestSet:
    """The four-condition synthetic test set: each clip gets one of positive/silence/noise/off-screen (25% each).

    Off-screen sound is a synthetic class whose group is not among the clip's objects' groups
    (and not a confusable pair); noise types include NoiseConfig.eval_types.
    """
    if per not in ("frame", "clip"):
        raise ConfigError(f"per must be 'frame' or 'clip', got {per!r}")
    cls = SyntheticFrames if per == "frame" else SyntheticClips
    return RobustTestSet(cls(split, size, scene_config), seed=seed, noise=noise_config)
