"""Tests of the VGGish front end (streamavs.audio) against an independent computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamavs.audio import LogMel, LogMelParams, prepare_waveform, resample, to_mono
from streamavs.errors import ConfigError, InputError

SR = 16000
LOG_SILENCE = math.log(0.01)


# ---------------------------------------------------------------- independent reference
def _ref_mel(f_hz):
    return 1127.0 * math.log(1.0 + f_hz / 700.0)


def _ref_filterbank() -> np.ndarray:
    """(257, 64) HTK triangles written from the formula, one weight at a time (float64)."""
    lo, hi = _ref_mel(125.0), _ref_mel(7500.0)
    step = (hi - lo) / 65.0  # 66 equally spaced edges in mel
    fb = np.zeros((257, 64))
    for k in range(1, 257):  # the DC bin keeps weight 0
        m = _ref_mel(k * 8000.0 / 256.0)
        for b in range(64):
            left, centre, right = lo + b * step, lo + (b + 1) * step, lo + (b + 2) * step
            if left < m <= centre:
                fb[k, b] = (m - left) / (centre - left)
            elif centre < m < right:
                fb[k, b] = (right - m) / (right - centre)
    return fb


def _ref_log_mel(x: np.ndarray) -> np.ndarray:
    """Direct-DFT log-mel in float64: explicit framing loop, explicit complex exponentials."""
    x = np.asarray(x, dtype=np.float64)
    n = np.arange(400)
    window = np.array([0.5 - 0.5 * math.cos(2.0 * math.pi * i / 400.0) for i in range(400)])
    dft = np.exp(-2j * np.pi * np.outer(np.arange(257), n) / 512.0)  # (257, 400): zero padding to 512
    n_frames = 1 + (len(x) - 400) // 160
    frames = np.stack([x[i * 160 : i * 160 + 400] * window for i in range(n_frames)])  # (F, 400)
    magnitude = np.abs(frames @ dft.T)  # (F, 257)
    return np.log(magnitude @ _ref_filterbank() + 0.01)


def _tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return amp * np.sin(2.0 * np.pi * freq * t)


@pytest.fixture(scope="module")
def logmel() -> LogMel:
    return LogMel()


# ---------------------------------------------------------------- agreement with the reference
def test_mel_matrix_matches_formula(logmel):
    m = logmel.mel_matrix
    assert m.shape == (257, 64)
    assert np.all(m[0] == 0.0)
    np.testing.assert_allclose(m, _ref_filterbank(), atol=1e-12)


def test_log_mel_matches_direct_dft_on_noise_and_tones(logmel):
    rng = np.random.default_rng(0)
    n = 15600 + 7 * 160 + 33  # not a whole number of hops
    t = np.arange(n) / SR
    signals = {
        "noise": 0.3 * rng.standard_normal(n),
        "tones": 0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3100.7 * t) + 0.05 * np.sin(2 * np.pi * 7000 * t),
        "noise+tone": 0.05 * rng.standard_normal(n) + 0.5 * np.sin(2 * np.pi * 1000 * t),
    }
    for name, x in signals.items():
        ours = logmel.frames(x.astype(np.float32))
        ref = _ref_log_mel(x.astype(np.float32))
        assert ours.dtype == np.float32 and ours.shape == (1 + (n - 400) // 160, 64) == ref.shape
        assert np.abs(ours - ref).max() <= 1e-4, name
        # the example at the end of the signal is the last 96 frames of its own framing
        ex = logmel.example_ending_at(x.astype(np.float32), n)
        assert np.abs(ex - _ref_log_mel(x[n - 15600 :].astype(np.float32))).max() <= 1e-4, name


def test_frame_count_and_short_input(logmel):
    assert logmel.frames(np.zeros(399, np.float32)).shape == (0, 64)
    assert logmel.frames(np.zeros(400, np.float32)).shape == (1, 64)
    assert logmel.frames(np.zeros(15600, np.float32)).shape == (96, 64)
    assert logmel.frames(np.zeros(16000, np.float32)).shape == (1 + (16000 - 400) // 160, 64)


# ---------------------------------------------------------------- silence and stream start
def test_digital_silence_is_log_offset(logmel):
    out = logmel.frames(np.zeros(SR, np.float32))
    np.testing.assert_array_equal(out, np.full_like(out, np.float32(LOG_SILENCE)))
    ex = logmel.example_ending_at(np.zeros(SR, np.float32), 0)  # nothing heard yet: all padding
    np.testing.assert_array_equal(ex, np.full((96, 64), np.float32(LOG_SILENCE)))


def test_left_zero_padding_at_stream_start(logmel):
    x = (0.3 * np.random.default_rng(1).standard_normal(SR)).astype(np.float32)
    for end in (1, 400, 5000, 15599, 15600):
        padded = np.concatenate([np.zeros(15600 - end, np.float32), x[:end]])
        np.testing.assert_array_equal(logmel.example_ending_at(x, end), logmel.frames(padded))
    # the early frames of a short stream are silence
    ex = logmel.example_ending_at(x, 5000)
    np.testing.assert_array_equal(ex[0], np.full(64, np.float32(LOG_SILENCE)))
    assert ex[-1].max() > LOG_SILENCE + 1


# ---------------------------------------------------------------- rates and channel counts
# Tolerances, measured then given ~3x headroom: soxr HQ is 20-bit (~-120 dB) with a flat
# passband, so away from the signal edges resampled samples match direct 16 kHz synthesis to
# < 4e-7. In the log-mel that is <= 6e-6 in the bands the tone fills (log-mel > -2) and
# <= 6.3e-4 over all bands (the weakest bands have mel ~1e-4, where log(mel + 0.01) turns tiny
# absolute errors into ~1e-4). The first/last ~100 ms of a one-shot resample carry the filter's
# onset transient (up to 0.014 in log-mel there), hence the example ends at 1.25 s of 1.5 s.
TOL_STRONG_BANDS = 5e-5
TOL_ALL_BANDS = 2e-3


def _band_of(freq: float) -> int:
    lo, hi = _ref_mel(125.0), _ref_mel(7500.0)
    centres = lo + (hi - lo) / 65.0 * np.arange(1, 65)
    return int(np.argmin(np.abs(centres - _ref_mel(freq))))  # band with the largest weight at freq


@pytest.mark.parametrize("freq", [440.0, 1000.0])
@pytest.mark.parametrize("rate", [16000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_tone_at_any_rate_and_channel_count(logmel, freq, rate, channels):
    x = _tone(freq, rate, 1.5)
    if channels == 2:
        x = np.stack([1.2 * x, 0.8 * x], axis=1)  # (n, 2): averages to the mono tone
    wave = prepare_waveform(x, rate)
    assert wave.dtype == np.float32 and wave.shape == (24000,)
    ours = logmel.example_ending_at(wave, 20000)
    direct = logmel.example_ending_at(_tone(freq, SR, 1.5).astype(np.float32), 20000)

    band = _band_of(freq)
    assert band == (8 if freq == 440.0 else 19)
    assert int(ours.mean(axis=0).argmax()) == band
    assert np.all(ours.argmax(axis=1) == band)  # every frame, not just on average
    strong = direct.mean(axis=0) > -2.0
    assert strong.sum() >= 3
    assert np.abs(ours - direct)[:, strong].max() <= TOL_STRONG_BANDS
    assert np.abs(ours - direct).max() <= TOL_ALL_BANDS


def test_resample_is_noop_at_equal_rates_and_checks_rates():
    x = np.arange(10, dtype=np.float32)
    assert resample(x, 16000, 16000) is x
    assert resample(np.zeros(44100, np.float32), 44100, 16000).shape == (16000,)
    with pytest.raises(InputError, match="positive integer"):
        resample(x, 0, 16000)
    with pytest.raises(InputError, match="to_mono first"):
        resample(np.zeros((10, 2), np.float32), 44100, 16000)


# ---------------------------------------------------------------- input forms and errors
def test_int16_and_int32_input_are_scaled():
    x = (_tone(1000.0, SR, 0.5) * 32767).astype(np.int16)
    mono = to_mono(x)
    assert mono.dtype == np.float32
    np.testing.assert_array_equal(mono, x.astype(np.float32) / 32768.0)
    assert to_mono(np.array([-32768, 0], np.int16)).tolist() == [-1.0, 0.0]
    assert to_mono(np.array([-(2**31)], np.int32)).tolist() == [-1.0]
    stereo = np.stack([x, np.zeros_like(x)], axis=1)  # (n, 2) int16
    np.testing.assert_allclose(prepare_waveform(stereo, SR), mono / 2, atol=1e-7)
    assert to_mono(np.array([0, 128, 255], np.uint8)).tolist() == [-1.0, 0.0, 127 / 128]


def test_mono_forms():
    x = np.linspace(-1, 1, 100)
    np.testing.assert_array_equal(to_mono(x[:, None]), x.astype(np.float32))  # (n, 1)
    assert to_mono(x).dtype == np.float32
    assert to_mono(np.zeros((0,), np.float32)).shape == (0,)


def test_channels_first_is_refused_with_a_hint():
    with pytest.raises(InputError) as info:
        to_mono(np.zeros((2, 48000), np.float32))
    msg = str(info.value)
    assert "channels-first" in msg and "(2, 48000)" in msg and "samples.T" in msg
    with pytest.raises(InputError, match="channels-first"):
        prepare_waveform(np.zeros((1, 16000), np.int16), SR)


def test_a_block_of_one_stereo_sample_when_the_layout_is_known():
    """A decoder's or PortAudio's block is channels-last by construction: (1, 2) is one stereo sample."""
    block = np.array([[0.2, 0.4]], np.float32)
    with pytest.raises(InputError, match="channels-first"):
        to_mono(block)  # a guess from the shape alone
    assert to_mono(block, channels_last=True) == pytest.approx([0.3])
    assert to_mono(np.array([[16384, -16384]], np.int16), channels_last=True) == pytest.approx([0.0])


def test_bad_audio_is_refused():
    with pytest.raises(InputError, match="channels-last"):
        to_mono(np.zeros((10, 2, 2), np.float32))
    with pytest.raises(InputError, match="NaN or infinity"):
        to_mono(np.array([0.0, np.nan]))
    with pytest.raises(InputError, match="not supported"):
        to_mono(np.zeros(10, np.complex64))
    with pytest.raises(InputError, match="prepare_waveform"):
        LogMel().frames(np.zeros((16000, 2), np.float32))
    with pytest.raises(InputError, match="float waveform"):
        LogMel().frames(np.zeros(16000, np.int16))


def test_end_sample_bounds(logmel):
    x = np.zeros(SR, np.float32)
    assert logmel.example_ending_at(x, SR).shape == (96, 64)
    with pytest.raises(InputError, match=r"end_sample 16001 is outside the waveform of 16000 samples"):
        logmel.example_ending_at(x, SR + 1)
    with pytest.raises(InputError, match=r"0 <= end_sample <= 16000"):
        logmel.example_ending_at(x, -1)
    with pytest.raises(InputError, match="integer"):
        logmel.example_ending_at(x, 100.0)


# ---------------------------------------------------------------- per-second examples
def test_examples_per_second_matches_example_ending_at(logmel):
    x = (0.2 * np.random.default_rng(2).standard_normal(5 * SR + 123)).astype(np.float32)
    ex = logmel.examples_per_second(x, 5)
    assert ex.shape == (5, 96, 64) and ex.dtype == np.float32
    for k in range(5):
        np.testing.assert_allclose(ex[k], logmel.example_ending_at(x, (k + 1) * SR), atol=1e-6)
    assert not np.allclose(ex[0], ex[1])
    assert logmel.examples_per_second(x, 0).shape == (0, 96, 64)
    with pytest.raises(InputError, match="96000 samples"):
        logmel.examples_per_second(x, 6)


def test_examples_longer_than_a_second_are_padded_like_the_stream():
    lm = LogMel(LogMelParams(example_frames=120))  # 19440 samples > 1 s: needs left padding
    x = (0.2 * np.random.default_rng(3).standard_normal(3 * SR)).astype(np.float32)
    ex = lm.examples_per_second(x, 3)
    assert ex.shape == (3, 120, 64) == (3, *lm.params.example_shape)
    assert lm.examples_per_second(x, 0).shape == (0, 120, 64)
    for k in range(3):
        np.testing.assert_allclose(ex[k], lm.example_ending_at(x, (k + 1) * SR), atol=1e-6)


# ---------------------------------------------------------------- params
def test_params_round_trip_and_strict_keys():
    p = LogMelParams()
    assert p.example_samples == 15600
    assert p.example_shape == (96, 64)  # (frames, mels): the model's log_mel input is (B, 1, 96, 64)
    d = p.to_dict()
    assert d["n_mels"] == 64 and d["fmax_hz"] == 7500.0
    assert LogMelParams.from_dict(d) == p
    with pytest.raises(InputError, match=r"unknown keys \['hop_ms'\]"):
        LogMelParams.from_dict({**d, "hop_ms": 10})
    missing = dict(d)
    del missing["log_offset"]
    with pytest.raises(InputError, match=r"missing keys \['log_offset'\]"):
        LogMelParams.from_dict(missing)
    with pytest.raises(ConfigError, match="window_samples"):
        LogMelParams(window_samples=600)
    with pytest.raises(ConfigError, match="fmax_hz"):
        LogMelParams(fmax_hz=9000.0)
