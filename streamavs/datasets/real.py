"""The real-media benchmark as training and test sets: the synthetic data sets over a :class:`RealBank`; numpy only.

Clips come from the one scene composer with the real-media bank of the split (cut-outs,
recordings and backgrounds of :mod:`streamavs.realmedia.bank`); everything downstream (the
per-second sample format, negatives, the four-condition test set) is the synthetic datasets'.

Off-screen sound is a real recording from a group that is not on screen:
training and validation draw from the training recordings; the test splits from the
training and held-out recordings; :func:`real_unseen_test_set` draws only from recordings the
model never heard (unseen stamps, GCompris sounds of classes without a cut-out): the paper's
unseen-audio protocol (A.1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamavs.datasets.conditions import NegativeMix, RobustTestSet
from streamavs.datasets.negatives import SAMPLE_RATE, NoiseConfig, OffscreenBank
from streamavs.datasets.synthetic import SyntheticClips, SyntheticFrames
from streamavs.realmedia.bank import RealBank, event_track, load_recording
from streamavs.synthetic import SceneConfig

__all__ = ["RecordingLoader", "real_offscreen_bank", "real_frames", "real_clips", "real_test_set", "real_unseen_test_set",
           "OFFSCREEN_ROLES"]

# Recording roles that off-screen sound may come from, per split.
OFFSCREEN_ROLES = {"train": ("train",), "val": ("train",), "test": ("train", "heldout"), "unseen": ("unseen",)}


class RecordingLoader:
    """load(key, rng, seconds) for an OffscreenBank: the recording as events over `seconds` (picklable)."""

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths

    def __call__(self, key: str, rng: np.random.Generator, seconds: float) -> np.ndarray:
        rec = load_recording(self.paths[key], SAMPLE_RATE)
        n = int(round(seconds * SAMPLE_RATE))
        return event_track(rec, rng, n, SAMPLE_RATE) * np.float32(10 ** (rng.uniform(-4, 4) / 20))


def real_offscreen_bank(bank: RealBank, roles: tuple[str, ...]) -> OffscreenBank:
    """Every recording with one of `roles`, as off-screen sources keyed by recording."""
    entries = bank.sound_entries(roles)
    return OffscreenBank(entries, RecordingLoader({k: bank.recording_path(k) for k, _ in entries}))


def _real_dataset(cls, split: str, size: int, scene_config: SceneConfig, media: str | Path | None,
                  **options) -> SyntheticFrames | SyntheticClips:
    """`cls` (SyntheticFrames or SyntheticClips) over the real-media bank of `split`, with its off-screen bank.

    Every test_* split takes its seeds from the test range; off-screen sound comes from the
    recording roles of OFFSCREEN_ROLES for the split.
    """
    bank = RealBank(split, media)
    seed_split = "test" if split.startswith("test") else split
    roles = OFFSCREEN_ROLES["test" if split.startswith("test") else split]
    return cls(seed_split, size, scene_config, bank=bank, offscreen=real_offscreen_bank(bank, roles), **options)


def real_frames(split: str, size: int, scene_config: SceneConfig, media: str | Path | None = None,
                mix: NegativeMix | None = None, seed: int = 0, cache_clips: int = 8) -> SyntheticFrames:
    """Per-second samples of `size` real-media clips of `split` (see RealBank's table of splits)."""
    return _real_dataset(SyntheticFrames, split, size, scene_config, media, mix=mix, seed=seed, cache_clips=cache_clips)


def real_clips(split: str, size: int, scene_config: SceneConfig, media: str | Path | None = None,
               mix: NegativeMix | None = None, seed: int = 0, cache_clips: int = 2) -> SyntheticClips:
    """Whole real-media clips of `split` (for the temporal stage), negatives per second from `mix`."""
    return _real_dataset(SyntheticClips, split, size, scene_config, media, mix=mix, seed=seed, cache_clips=cache_clips)


def real_test_set(split: str = "test", size: int = 200, scene_config: SceneConfig = SceneConfig(),
                  media: str | Path | None = None, per: str = "frame", seed: int = 0,
                  noise_config: NoiseConfig = NoiseConfig()) -> RobustTestSet:
    """The four-condition test set (25% each) of a real-media split."""
    cls = SyntheticFrames if per == "frame" else SyntheticClips
    return RobustTestSet(_real_dataset(cls, split, size, scene_config, media), seed=seed, noise=noise_config)


def real_unseen_test_set(size: int = 200, scene_config: SceneConfig = SceneConfig(),
                         media: str | Path | None = None, seed: int = 0) -> RobustTestSet:
    """Test-split scenes whose off-screen sound is only ever a recording never heard in training.

    The four conditions stay balanced; the off-screen rows measure FPR under unseen sounds.
    """
    bank = RealBank("test", media)
    data = SyntheticFrames("test", size, scene_config, bank=bank)
    return RobustTestSet(data, seed=seed, bank=real_offscreen_bank(bank, OFFSCREEN_ROLES["unseen"]))
