"""The four audio conditions: a balanced robust test set and the training negative sampler (numpy only).

Both wrap a base dataset that follows the *clip dataset protocol* shared by the synthetic and
real-media sets (:mod:`streamavs.datasets.synthetic`) and AVSBench (``streamavs.training.avsbench``):

* ``per`` ("frame" | "clip"), ``seconds`` (clip length T), ``num_videos``, ``len()``
* ``video_of(index) -> video``, ``video_key(video) -> str``, ``visible_groups(video) -> groups``
* ``waveform(video) -> float32 (T*16000,)`` the positive audio, 16 kHz mono
* ``offscreen_bank() -> OffscreenBank``
* ``source_gain`` float: the amplitude at which a sounding source reaches ``waveform`` relative to
  its own recording (1/2 in the panned synthetic and real-media scenes, 1 for AVSBench); off-screen
  sound is scaled by it, so that it is as loud as a sounding object
* ``build(index, waveform=None, condition="positive") -> sample dict`` (for clips `condition`
  may be one string per second)

Negatives are RAW 16 kHz waveforms (:mod:`streamavs.datasets.negatives`) handed to ``build``, so every condition
passes through the same front end as the positives. A negative sample carries an empty
``mask`` (training target) and the original ``eval_mask``.

Seconds of a clip are independent for the front end: the log-mel example of second k reads
only samples [16000 k + 400, 16000 (k + 1)), so splicing a negative into whole seconds changes
exactly those seconds' examples.

Both are plain map-style datasets (``len`` and ``[index]``): the trainer hands them to a torch
DataLoader as they are, and the engine evaluation (:mod:`streamavs.evaluation`) reads them
without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamavs.datasets.negatives import SAMPLE_RATE, NoiseConfig, OffscreenBank, draw_noise, silence
from streamavs.errors import ConfigError, DataError
from streamavs.metrics import CONDITIONS, NEGATIVE_CONDITIONS

__all__ = ["BENCHMARK_REVISION", "CONDITIONS", "NEGATIVE_CONDITIONS", "NegativeMix", "assign_conditions", "make_negative",
           "splice_seconds", "RobustTestSet", "NegativeTraining"]

# What the negatives of both benchmarks are, recorded with every evaluation (eval reports, engine
# manifests) so that numbers from different revisions are never compared unknowingly.
# 1: off-screen sound at its own level, 6 dB louder than a panned sounding source (until 2026-11-30).
# 2: off-screen sound scaled by the dataset's source_gain, as loud as a sounding source.
BENCHMARK_REVISION = 2


@dataclass(frozen=True)
class NegativeMix:
    """Share of training samples (per-frame datasets) or seconds (clip datasets) given negative audio.

    share: probability that a sample/second is negative (default 0.10, as the paper).
    silence, offscreen, noise: relative weights of the negative kinds (normalised here);
    noise draws from NoiseConfig.train_types only. dither_dbfs: None = digital-zero silence,
    else Gaussian dither at that RMS level. The paper's code is :meth:`paper` (5% + 5%, no noise).
    """

    share: float = 0.10
    silence: float = 1.0
    offscreen: float = 1.0
    noise: float = 1.0
    dither_dbfs: float | None = None

    def __post_init__(self) -> None:
        weights = (self.silence, self.offscreen, self.noise)
        if not 0.0 <= self.share <= 1.0:
            raise ConfigError(f"NegativeMix.share must be a probability in [0, 1], got {self.share!r}")
        if any(w < 0 for w in weights) or (self.share > 0 and sum(weights) <= 0):
            raise ConfigError(f"NegativeMix weights (silence, offscreen, noise) must be >= 0 with a positive sum, got {weights}")

    @classmethod
    def paper(cls) -> "NegativeMix":
        """The published recipe: 5% off-screen + 5% silence, no noise."""
        return cls(share=0.10, silence=1.0, offscreen=1.0, noise=0.0)

    def probabilities(self) -> dict[str, float]:
        """P(condition) for one sample: {"positive", "silence", "offscreen", "noise"}, summing to 1."""
        total = self.silence + self.offscreen + self.noise
        w = {"silence": self.silence, "offscreen": self.offscreen, "noise": self.noise}
        out = {"positive": 1.0 - self.share}
        out.update({k: (self.share * v / total if total > 0 else 0.0) for k, v in w.items()})
        return out


def assign_conditions(n_videos: int, seed: int) -> list[str]:
    """One condition per video, 25% each: counts differ by at most one, order shuffled by `seed`."""
    rng = np.random.default_rng([int(seed), 0xC0DE])
    # The remainder (n % 4 videos) goes to conditions picked at random, not always the first ones.
    order = list(rng.permutation(len(CONDITIONS)))
    base = [CONDITIONS[order[i % len(CONDITIONS)]] for i in range(n_videos)]
    return [base[i] for i in rng.permutation(n_videos)]


def make_negative(condition: str, dataset, video: int, rng: np.random.Generator, *, noise: NoiseConfig,
                  split: str, bank: OffscreenBank | None, dither_dbfs: float | None = None) -> tuple[np.ndarray, dict]:
    """float32 (T*16000,) waveform of negative `condition` for `video`, and a record of what was drawn.

    split: "train" (noise from train_types only) or "eval" (train_types + eval_types).
    """
    seconds = dataset.seconds
    if condition == "silence":
        return silence(seconds, SAMPLE_RATE, dither_dbfs, rng), {"condition": "silence", "dither_dbfs": dither_dbfs}
    if condition == "noise":
        wave, info = draw_noise(noise, split, seconds, rng)
        return wave, {"condition": "noise", **info}
    if condition == "offscreen":
        if bank is None:
            raise ConfigError("off-screen negatives need an OffscreenBank (dataset.offscreen_bank())")
        draw = bank.draw(dataset.visible_groups(video), rng, seconds, exclude=dataset.video_key(video))
        gain = float(dataset.source_gain)
        return draw.waveform * np.float32(gain), {"condition": "offscreen", "source": draw.key,
                                                  "source_groups": list(draw.groups), "gain": gain}
    raise ConfigError(f"negative condition must be one of {NEGATIVE_CONDITIONS}, got {condition!r}")


def splice_seconds(positive: np.ndarray, negative: np.ndarray, which: np.ndarray) -> np.ndarray:
    """Copy of `positive` whose seconds k with which[k] True come from `negative` (both 16 kHz, same length)."""
    out = positive.copy()
    for k in np.flatnonzero(which):
        out[k * SAMPLE_RATE:(k + 1) * SAMPLE_RATE] = negative[k * SAMPLE_RATE:(k + 1) * SAMPLE_RATE]
    return out


class RobustTestSet:
    """The four-condition test set over `dataset`: each VIDEO gets one condition, 25% each.

    Deterministic in `seed`: the assignment and every negative (noise type and level, off-screen
    source) are drawn from generators seeded by (seed, video). Videos with no allowed off-screen
    source (every group is on screen) swap their condition with another video, which keeps the
    counts balanced. Noise uses NoiseConfig.train_types + eval_types. Samples carry
    ``condition``, ``label`` 0 for negatives, an empty ``mask`` and the original ``eval_mask``.
    """

    def __init__(self, dataset, seed: int = 0, noise: NoiseConfig = NoiseConfig(),
                 bank: OffscreenBank | None = None, dither_dbfs: float | None = None) -> None:
        self.dataset, self.seed, self.noise, self.dither_dbfs = dataset, int(seed), noise, dither_dbfs
        self.bank = bank if bank is not None else dataset.offscreen_bank()
        self.conditions = self._balanced_with_offscreen(assign_conditions(dataset.num_videos, self.seed))
        self._cache: tuple[int, np.ndarray, dict] | None = None

    def _can_offscreen(self, video: int) -> bool:
        groups = self.dataset.visible_groups(video)
        return bool(self.bank.candidates(groups, exclude=self.dataset.video_key(video)))

    def _balanced_with_offscreen(self, conds: list[str]) -> list[str]:
        rng = np.random.default_rng([self.seed, 0x0FF5])
        partners = [int(u) for u in rng.permutation(len(conds))]
        for v, c in enumerate(conds):
            if c != "offscreen" or self._can_offscreen(v):
                continue
            for u in partners:
                if conds[u] != "offscreen" and self._can_offscreen(u):
                    conds[u], conds[v] = "offscreen", conds[u]
                    break
            else:
                raise DataError("no video of this set can take off-screen audio: every video shows all sound "
                                "groups, or the bank holds no other group; add off-screen sources to the bank")
        return conds

    def __len__(self) -> int:
        return len(self.dataset)

    def negative(self, video: int) -> tuple[np.ndarray, dict] | None:
        """(waveform, record) of the video's negative audio, or None for a positive video."""
        cond = self.conditions[video]
        if cond == "positive":
            return None
        if self._cache is None or self._cache[0] != video:  # consecutive frames share a video
            rng = np.random.default_rng([self.seed, 0xA0D10, video])
            wave, info = make_negative(cond, self.dataset, video, rng, noise=self.noise, split="eval",
                                       bank=self.bank, dither_dbfs=self.dither_dbfs)
            self._cache = (video, wave, info)
        return self._cache[1], self._cache[2]

    def __getitem__(self, index: int) -> dict:
        video = self.dataset.video_of(index)
        neg = self.negative(video)
        if neg is None:
            return self.dataset.build(index)
        return self.dataset.build(index, neg[0], self.conditions[video])


class NegativeTraining:
    """Training wrapper: replaces the audio of a `mix.share` of samples by a negative, emptying the target.

    Per-frame datasets: each sample is negative with probability mix.share. Clip datasets: each
    second is negative with probability mix.share; one negative waveform per clip is spliced
    into the chosen seconds (so the temporal stage sees sounding-state transitions).
    Draws come from a generator seeded by (seed, epoch, index): call :meth:`set_epoch` each
    epoch for fresh negatives; the same (seed, epoch, index) always gives the same sample.
    Noise uses NoiseConfig.train_types only. A video that admits no off-screen source gets
    silence or noise instead (by their weights; silence if both are zero).
    """

    def __init__(self, dataset, mix: NegativeMix = NegativeMix(), noise: NoiseConfig = NoiseConfig(),
                 seed: int = 0, bank: OffscreenBank | None = None) -> None:
        self.dataset, self.mix, self.noise, self.seed = dataset, mix, noise, int(seed)
        self.bank = bank if bank is not None or mix.offscreen == 0 else dataset.offscreen_bank()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def _kind(self, rng: np.random.Generator, video: int) -> str:
        m = self.mix
        weights = {"silence": m.silence, "offscreen": m.offscreen, "noise": m.noise}
        if weights["offscreen"] > 0:
            groups = self.dataset.visible_groups(video)
            if not self.bank.candidates(groups, exclude=self.dataset.video_key(video)):
                weights["offscreen"] = 0.0
        if sum(weights.values()) <= 0:
            weights["silence"] = 1.0
        names = list(weights)
        p = np.array([weights[k] for k in names]) / sum(weights.values())
        return names[int(rng.choice(len(names), p=p))]

    def draw(self, index: int) -> tuple[list[str], np.ndarray | None, dict | None]:
        """What sample `index` gets this epoch: (condition per second, negative waveform or None, record).

        Per-frame datasets give one condition. The waveform is the whole clip's negative audio
        (T s, 16 kHz); for clips it is spliced into the negative seconds by __getitem__.
        """
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        video = self.dataset.video_of(index)
        n = 1 if self.dataset.per == "frame" else self.dataset.seconds
        which = rng.random(n) < self.mix.share  # (n,) negative seconds
        if not which.any():
            return ["positive"] * n, None, None
        kind = self._kind(rng, video)
        wave, info = make_negative(kind, self.dataset, video, rng, noise=self.noise, split="train",
                                   bank=self.bank, dither_dbfs=self.mix.dither_dbfs)
        return [kind if w else "positive" for w in which], wave, info

    def __getitem__(self, index: int) -> dict:
        conds, wave, _ = self.draw(index)
        if wave is None:
            return self.dataset.build(index)
        if self.dataset.per == "frame":
            return self.dataset.build(index, wave, conds[0])
        which = np.array([c != "positive" for c in conds])
        return self.dataset.build(index, splice_seconds(self.dataset.waveform(self.dataset.video_of(index)), wave, which), conds)
