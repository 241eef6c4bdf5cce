"""The streaming test split: whole clips with sounding-state changes and negative seconds; numpy only.

What the temporal ablation streams through a model frame by frame and what its figure draws.
Clip i of a run is the TEST split's ``split_seed("test", seed_offset + i)``, with frequent
sounding-state changes (``state_change_prob``, default 0.5: sources start and stop between
seconds). On top of that a ``negative_second_share`` of the seconds get negative audio
(silence / noise / off-screen, drawn by :func:`streamavs.datasets.conditions.make_negative`
with the evaluation noise types, spliced into whole seconds; ``split="val"`` builds the same
clips from the validation split with the training noise types only), so negatives pass through the
same front end and rules as in training. The ground truth of a second is the union of the
visible objects that sound in it under the audio actually played: empty in negative seconds
and in seconds whose source is quiet.

For :class:`~streamavs.metrics.RobustMeter`, a positive-audio second in which no source sounds
(the object went quiet) counts as "silence" with the sources' visible mask as ``gt_eval``;
negative seconds use the sounding mask of the clip's own audio, or the sources' visible mask
when that is empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from streamavs.datasets.conditions import make_negative, splice_seconds
from streamavs.datasets.negatives import NoiseConfig
from streamavs.datasets.real import real_clips
from streamavs.datasets.synthetic import SyntheticClips
from streamavs.errors import ConfigError
from streamavs.metrics import transition_flags
from streamavs.synthetic import SceneConfig

__all__ = ["STREAM_SPLITS", "NOISE_SPLIT", "NEGATIVES", "StreamClip", "scene_config", "streaming_test_split"]

STREAM_SPLITS = ("test", "val")  # the benchmark, and the same construction on the split training selects on
NOISE_SPLIT = {"test": "eval", "val": "train"}  # noise kinds per split: held-out kinds stay out of validation
NEGATIVES = {split: f"silence / noise ({'train + eval' if kinds == 'eval' else 'train'} types) / off-screen, one kind "
                    "per negative second" for split, kinds in NOISE_SPLIT.items()}  # what a report says about them

_NEGATIVE_SEED = 0x7E3A  # seeds the negative seconds of clip i: default_rng([_NEGATIVE_SEED, seed_offset + i])


@dataclass
class StreamClip:
    """One test clip as the stream sees it. T seconds, H = W = image size.

    frames (T, H, W, 3) uint8 RGB; log_mel (T, 96, 64) float32, example t ends at the frame;
    audio (T,) str: the audio played in second t ("positive" = the clip's own, or a negative
    condition); gt (T, H, W) bool: visible objects sounding under that audio (the target);
    eval_condition (T,) str: the RobustMeter condition ("silence" for a quiet source);
    gt_eval (T, H, W) bool: the mask RobustMeter scores against; sounding (T, n_obj) bool:
    visible and sounding under the played audio; started / silenced (T,) bool
    (:func:`~streamavs.metrics.transition_flags`); negatives: what was drawn for each negative
    kind played ({kind: make_negative's record}, e.g. the noise type).
    """

    index: int
    seed: int
    frames: np.ndarray
    log_mel: np.ndarray
    audio: list[str]
    gt: np.ndarray
    eval_condition: list[str]
    gt_eval: np.ndarray
    sounding: np.ndarray
    started: np.ndarray
    silenced: np.ndarray
    negatives: dict[str, dict]


def scene_config(state_change_prob: float = 0.5, image_size: int = 224, seconds: int = 10) -> SceneConfig:
    """The SceneConfig of the test split: single source (+ distractors), frequent state changes."""
    return SceneConfig(image_size=image_size, seconds=seconds, setting="single", state_change_prob=state_change_prob)


def _check_args(clips: int, seed_offset: int, negative_second_share: float) -> None:
    if isinstance(clips, bool) or not isinstance(clips, int) or clips < 1:
        raise ConfigError(f"clips must be a positive integer, got {clips!r}")
    if isinstance(seed_offset, bool) or not isinstance(seed_offset, int) or seed_offset < 0:
        raise ConfigError(f"seed_offset must be a non-negative integer (first test clip index), got {seed_offset!r}")
    if not 0.0 <= float(negative_second_share) <= 1.0:
        raise ConfigError(f"negative_second_share must be a probability in [0, 1], got {negative_second_share!r}")


def streaming_test_split(clips: int, seed_offset: int = 0, state_change_prob: float = 0.5,
                         negative_second_share: float = 0.25, image_size: int = 224, seconds: int = 10,
                         data: str = "synthetic", split: str = "test") -> Iterator[StreamClip]:
    """The deterministic streaming test split: yields `clips` StreamClips (generated lazily).

    data: "synthetic" (procedural bank) or "real" (the real-media test split: held-out
    backgrounds and recordings, media from $STREAMAVS_MEDIA or the default cache).
    split: "test" (the benchmark) or "val" (the same construction on the validation split, the
    one training selects on: to see whether validation shows what the test split shows).
    """
    _check_args(clips, seed_offset, negative_second_share)
    if split not in STREAM_SPLITS:
        raise ConfigError(f"split must be one of {STREAM_SPLITS}, got {split!r}")
    scenes = scene_config(state_change_prob, image_size, seconds)
    if data == "real":
        data = real_clips(split, seed_offset + clips, scenes, cache_clips=1)
    elif data == "synthetic":
        data = SyntheticClips(split, seed_offset + clips, scenes, cache_clips=1)
    else:
        raise ConfigError(f"data must be 'synthetic' or 'real', got {data!r}")
    bank, noise = data.offscreen_bank(), NoiseConfig()
    for index in range(seed_offset, seed_offset + clips):
        rng = np.random.default_rng([_NEGATIVE_SEED, index])
        negative = rng.random(seconds) < negative_second_share  # (T,)
        kinds = ["silence", "noise"]
        if bank.candidates(data.visible_groups(index), exclude=data.video_key(index)):
            kinds.append("offscreen")
        audio = [kinds[int(rng.integers(len(kinds)))] if neg else "positive" for neg in negative]
        wave = data.waveform(index)
        drawn: dict[str, dict] = {}
        for kind in sorted(set(audio) - {"positive"}):  # one negative waveform per kind, spliced into its seconds
            neg_wave, drawn[kind] = make_negative(kind, data, index, rng, noise=noise, split=NOISE_SPLIT[split], bank=bank)
            wave = splice_seconds(wave, neg_wave, np.array([a == kind for a in audio]))
        sample = data.build(index, wave if negative.any() else None, audio)
        clip = data.clip(index)
        played = np.array([a == "positive" for a in audio])  # (T,)
        visible = clip.object_masks.any(axis=(2, 3))  # (T, n_obj)
        sounding = clip.sounding & visible & played[:, None]  # (T, n_obj)
        gt = sample["mask"].astype(bool)  # (T, H, W): empty in negative seconds
        own = sample["eval_mask"].astype(bool)  # sounding mask under the clip's own audio
        sources = clip.object_masks[:, clip.is_source].any(axis=1)  # (T, H, W) visible source pixels
        eval_condition, gt_eval = [], np.empty_like(gt)
        for t, a in enumerate(audio):
            quiet = not own[t].any()
            eval_condition.append("silence" if a == "positive" and quiet else a)
            gt_eval[t] = sources[t] if quiet else own[t]
        started, silenced = transition_flags(sounding)
        yield StreamClip(index, int(clip.seed), sample["frame"], sample["log_mel"], audio, gt, eval_condition,
                         gt_eval, sounding, started, silenced, drawn)
