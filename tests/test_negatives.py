"""Negative audio: exact levels, lengths, spectra, the silence floor, and the off-screen group rules."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from streamavs.audio import LogMel
from streamavs.datasets.negatives import (
    AVSBENCH_MS3_GROUPS, AVSBENCH_S4_GROUPS, FORBIDDEN_OFFSCREEN, GROUPS, NOISE_TYPES, PAPER_GROUPS, NoiseConfig, OffscreenBank,
    allowed_offscreen_groups, canonical_group, draw_noise, make_noise, rms_dbfs, silence,
)
from streamavs.errors import ConfigError, DataError, InputError


def psd_slope(x: np.ndarray, sr: int = 16000, lo: float = 100.0, hi: float = 4000.0) -> float:
    """Slope of log10 PSD against log10 frequency (Welch average, Hann, 4096-sample segments)."""
    seg = 4096
    n = x.size // seg
    frames = x[: n * seg].reshape(n, seg) * np.hanning(seg)  # (n, seg)
    psd = np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0)
    f = np.fft.rfftfreq(seg, 1.0 / sr)
    keep = (f >= lo) & (f <= hi)
    return float(np.polyfit(np.log10(f[keep]), np.log10(psd[keep]), 1)[0])


@pytest.mark.parametrize("kind", sorted(NOISE_TYPES))
@pytest.mark.parametrize("level", [-40.0, -27.5, -15.0])
def test_noise_level_is_exact_and_never_clips(kind, level):
    rng = np.random.default_rng(7)
    x = make_noise(kind, 1.0, rng, level)
    assert x.dtype == np.float32 and x.shape == (16000,)
    assert abs(rms_dbfs(x) - level) < 0.1
    assert np.abs(x).max() < 1.0


def test_lengths_and_determinism():
    assert make_noise("pink", 1.5, np.random.default_rng(0), -30).shape == (24000,)
    assert silence(2.0).shape == (32000,)
    assert silence(0.5, sample_rate=22050).shape == (11025,)
    a = make_noise("rain", 1.0, np.random.default_rng(3), -20)
    b = make_noise("rain", 1.0, np.random.default_rng(3), -20)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="seconds must be > 0"):
        silence(0)


def test_silence_log_mel_is_the_floor():
    lm = LogMel().examples_per_second(silence(5.0), 5)  # (5, 96, 64)
    assert lm.shape == (5, 96, 64)
    np.testing.assert_allclose(lm, np.log(0.01), atol=1e-6)


def test_dithered_silence_level():
    x = silence(1.0, dither_dbfs=-90.0, rng=np.random.default_rng(1))
    assert abs(rms_dbfs(x) + 90.0) < 0.1
    with pytest.raises(InputError, match="needs rng"):
        silence(1.0, dither_dbfs=-90.0)


@pytest.mark.parametrize("kind,slope", [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_spectral_slopes(kind, slope):
    x = make_noise(kind, 5.0, np.random.default_rng(11), -25.0)
    assert abs(psd_slope(x) - slope) < 0.15


def test_hum_has_mains_harmonics():
    x = make_noise("hum", 2.0, np.random.default_rng(5), -25.0).astype(np.float64)
    spec = np.abs(np.fft.rfft(x))
    f = np.fft.rfftfreq(x.size, 1 / 16000)
    peak = f[np.argmax(spec)]
    # the strongest line is a harmonic of 50 or 60 Hz (fundamental jittered by +-0.5%)
    assert any(abs(peak / base - round(peak / base)) < 0.03 for base in (50.0, 60.0))


def test_noise_config_validation_and_split_types():
    cfg = NoiseConfig()
    assert set(cfg.eval_types) == {"hum", "rain"} and not set(cfg.eval_types) & set(cfg.train_types)
    assert cfg.types("train") == cfg.train_types
    assert set(cfg.types("eval")) == set(cfg.train_types) | set(cfg.eval_types)
    with pytest.raises(ConfigError, match="in both train_types and eval_types"):
        NoiseConfig(train_types=("white", "hum"))
    with pytest.raises(ConfigError, match="unknown noise types"):
        NoiseConfig(train_types=("purple",))
    with pytest.raises(ConfigError, match="level_dbfs"):
        NoiseConfig(level_dbfs=(-20.0, -3.0))


def test_training_noise_never_uses_eval_types():
    cfg = NoiseConfig()
    rng = np.random.default_rng(0)
    train = {draw_noise(cfg, "train", 0.1, rng)[1]["noise_type"] for _ in range(300)}
    assert train == set(cfg.train_types)
    evals = [draw_noise(cfg, "eval", 0.1, rng)[1] for _ in range(300)]
    assert {e["noise_type"] for e in evals} == set(cfg.train_types) | set(cfg.eval_types)
    assert all(-40.0 <= e["level_dbfs"] <= -15.0 for e in evals)


def test_category_tables():
    assert len(AVSBENCH_S4_GROUPS) == 23
    assert set(AVSBENCH_S4_GROUPS.values()) == set(PAPER_GROUPS) and set(GROUPS) == {*PAPER_GROUPS, "nature"}
    assert AVSBENCH_S4_GROUPS["male_speech"] == "human" and AVSBENCH_S4_GROUPS["horse_clip-clop"] == "animal"
    assert set(AVSBENCH_MS3_GROUPS.values()) == set(PAPER_GROUPS) and "background" not in AVSBENCH_MS3_GROUPS
    assert canonical_group("voice") == "human" and canonical_group("machine") == "device"
    with pytest.raises(InputError, match="unknown category group"):
        canonical_group("weather")


def test_allowed_groups_follow_the_paper():
    assert allowed_offscreen_groups(["music"], PAPER_GROUPS) == ["animal", "device"]
    assert allowed_offscreen_groups(["human"], PAPER_GROUPS) == ["animal", "device"]
    assert allowed_offscreen_groups(["animal"], PAPER_GROUPS) == ["music", "device"]
    assert allowed_offscreen_groups(["device"], PAPER_GROUPS) == ["music", "human", "animal"]
    assert allowed_offscreen_groups(["voice"], ["music", "voice", "animal", "machine"]) == ["animal", "machine"]
    assert allowed_offscreen_groups(["music", "animal", "device"], PAPER_GROUPS) == []
    # "nature" (rain, storms: no object) may be off-screen sound for any scene without it.
    assert allowed_offscreen_groups(["music"]) == ["animal", "device", "nature"]
    assert allowed_offscreen_groups(["nature", "animal"]) == ["music", "device"]


def test_bank_draws_never_same_group_nor_forbidden_pair():
    entries = [(f"{cat}_{i}", g) for cat, g in AVSBENCH_S4_GROUPS.items() for i in range(2)]
    entries.append(("duo", ("music", "animal")))  # a multi-source clip: all its groups must be allowed
    bank = OffscreenBank(entries, lambda key, rng, seconds: np.full(int(seconds * 16000) - 5, 0.1, np.float32))
    rng = np.random.default_rng(0)
    for visible in itertools.chain([[g] for g in GROUPS], [["music", "device"], ["animal", "device"]]):
        for _ in range(40):
            d = bank.draw(visible, rng, 1.0, exclude="duo")
            assert d.waveform.shape == (16000,) and d.waveform[-1] == 0.0  # zero-padded to length
            for g in d.groups:
                assert g not in visible
                assert all((v, g) not in FORBIDDEN_OFFSCREEN for v in visible)
    assert all(k != "duo" for k, _ in bank.candidates(["animal"]))  # duo holds animal
    assert any(k == "duo" for k, _ in bank.candidates(["device"]))
    with pytest.raises(DataError, match="no off-screen sound is allowed"):
        bank.draw(["music", "animal", "device"], rng, 1.0)
