"""From a recipe's [data] section to datasets and samplers: the one place the trainer asks.

Training set: per-frame samples with `negative_share` of them given negative audio
(silence / off-screen / noise of the training noise types, weights from `negative_kinds`).
Evaluation set: the four-condition robust set (positive / silence / noise / off-screen, 25%
each, noise including the evaluation-only types), so every epoch reports the paper's table.
"""

from __future__ import annotations

import torch
from torch.utils.data import DistributedSampler, Sampler

from streamavs.datasets.conditions import NegativeMix, NegativeTraining, RobustTestSet
from streamavs.errors import ConfigError
from streamavs.training.avsbench import collate
from streamavs.training.config import DataSection, TrainConfig

__all__ = ["build_datasets", "build_sampler", "negative_mix", "scene_config", "collate"]

_KINDS = ("silence", "offscreen", "noise")


def negative_mix(data: DataSection) -> NegativeMix:
    unknown = set(data.negative_kinds) - set(_KINDS)
    if unknown:
        raise ConfigError(f"[data] negative_kinds has {sorted(unknown)}; valid kinds: {list(_KINDS)}")
    weights = {k: float(k in data.negative_kinds) for k in _KINDS}
    return NegativeMix(share=data.negative_share, **weights)


def scene_config(data: DataSection):
    from streamavs.synthetic import SceneConfig

    return SceneConfig(
        image_size=data.image_size,
        setting=data.setting,
        state_change_prob=data.state_change_prob,
        distractor_share=data.distractor_share,
    )


def build_datasets(cfg: TrainConfig) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset]:
    """(training set with negatives, four-condition evaluation set) for the recipe."""
    data = cfg.data
    mix = negative_mix(data)
    if data.kind == "synthetic":
        from streamavs.datasets.synthetic import SyntheticFrames, synthetic_test_set

        scenes = scene_config(data)
        train = SyntheticFrames("train", data.train_clips, scenes, mix=mix if mix.share > 0 else None,
                                seed=cfg.seed, cache_clips=8)
        return train, synthetic_test_set("val", data.val_clips, scenes, seed=cfg.seed)
    if data.kind == "real":
        from streamavs.datasets.real import real_frames, real_test_set

        scenes = scene_config(data)
        train = real_frames("train", data.train_clips, scenes, data.media, mix=mix if mix.share > 0 else None,
                            seed=cfg.seed)
        return train, real_test_set("val", data.val_clips, scenes, data.media, seed=cfg.seed)
    from streamavs.training.avsbench import AVSBench

    subset = "s4" if data.kind == "avsbench_s4" else "ms3"
    train = AVSBench(data.root, subset, "train", image_size=data.image_size)
    if mix.share > 0:
        train = NegativeTraining(train, mix, seed=cfg.seed)
    return train, RobustTestSet(AVSBench(data.root, subset, "val", image_size=data.image_size), seed=cfg.seed)


def build_sampler(dataset, world_size: int, rank: int, seed: int) -> Sampler:
    """A sampler whose order depends only on (seed, epoch), so a resumed run sees the same batches.

    One process on the synthetic set: ClipWindowSampler, which generates each clip once per
    epoch instead of once per second. Otherwise DistributedSampler (one shard per process)."""
    from streamavs.datasets.synthetic import SyntheticFrames
    from streamavs.training.synthetic_data import ClipWindowSampler

    if world_size == 1 and isinstance(dataset, SyntheticFrames):
        return ClipWindowSampler(dataset, window=8, seed=seed)
    return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
