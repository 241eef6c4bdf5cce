""":class:`ClipWindowSampler`, the torch sampler that reads the synthetic frame set
(:class:`streamavs.datasets.synthetic.SyntheticFrames`, numpy only) clip by clip.
"""

from __future__ import annotations

import numpy as np
import torch

from streamavs.datasets.synthetic import SyntheticFrames
from streamavs.errors import ConfigError

__all__ = ["ClipWindowSampler"]


class ClipWindowSampler(torch.utils.data.Sampler):
    """Shuffled order over a SyntheticFrames that generates each clip once per epoch.

    Clips are shuffled and taken `window` at a time; the seconds of the clips in a window are
    shuffled together. With window <= the dataset's cache_clips every clip is generated once
    (about T times faster than a uniform shuffle) while a batch still mixes up to `window`
    clips. Meant for num_workers 0 or 1 (each worker process has its own clip cache).
    Call :meth:`set_epoch` each epoch.
    """

    def __init__(self, dataset: SyntheticFrames, window: int = 8, seed: int = 0) -> None:
        if not isinstance(dataset, SyntheticFrames):
            raise ConfigError(f"ClipWindowSampler needs a SyntheticFrames, got {type(dataset).__name__}")
        if window > dataset._cache_clips:
            raise ConfigError(f"window ({window}) must be <= the dataset's cache_clips ({dataset._cache_clips}), "
                              "or clips are generated more than once")
        self.size, self.seconds, self.window, self.seed, self.epoch = dataset.size, dataset.seconds, int(window), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.size * self.seconds

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch, 0x5A3])
        clips = rng.permutation(self.size)
        for start in range(0, self.size, self.window):
            group = clips[start:start + self.window]
            idx = (group[:, None] * self.seconds + np.arange(self.seconds)).ravel()  # (W*T,)
            yield from (int(i) for i in rng.permutation(idx))
