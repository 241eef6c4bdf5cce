"""Numpy synthesis of the class sounds (mono float32, any sample rate; 16 kHz by default).

Each class has one sound family (:data:`streamavs.synthetic.classes.CLASSES` describes them)
with random pitch, rhythm and loudness, so that classes differ clearly in a log-mel
spectrogram (pitch range, harmonicity, noisiness, temporal pattern) while samples of one
class vary. All randomness comes from the `rng` argument.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from streamavs.errors import InputError
from streamavs.synthetic.classes import class_by_id

__all__ = ["synth_sound", "pink_noise", "rms_dbfs"]

TAU = 2.0 * np.pi


def rms_dbfs(x: np.ndarray) -> float:
    """RMS level of `x` in dB relative to full scale (1.0); -inf for silence."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def _fft_filter(x: np.ndarray, sr: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Zero-phase filtering of `x` by the magnitude response gain(freqs_hz) (circular, via rfft)."""
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(x.size, 1.0 / sr)
    return np.fft.irfft(spec * gain(freqs), n=x.size)


def _band_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    """White noise band-limited to [lo, hi] Hz with soft (half-octave) edges, unit RMS."""
    x = rng.standard_normal(n)

    def gain(f: np.ndarray) -> np.ndarray:
        f = np.maximum(f, 1.0)
        low = 1.0 / (1.0 + (lo / f) ** 4)
        high = 1.0 / (1.0 + (f / hi) ** 4)
        return low * high

    y = _fft_filter(x, sr, gain)
    return y / (np.sqrt(np.mean(y * y)) + 1e-12)


def pink_noise(rng: np.random.Generator, n: int, sr: int = 16000) -> np.ndarray:
    """Pink (1/f power) noise above 20 Hz, unit RMS, float64 (n,)."""
    x = rng.standard_normal(n)
    y = _fft_filter(x, sr, lambda f: 1.0 / np.sqrt(np.maximum(f, 20.0)))
    return y / (np.sqrt(np.mean(y * y)) + 1e-12)


def _phase(freq: np.ndarray, sr: int) -> np.ndarray:
    """Instantaneous phase (radians) of a per-sample frequency track in Hz."""
    return TAU * np.cumsum(freq) / sr


def _harmonic(phase: np.ndarray, amps: tuple[float, ...]) -> np.ndarray:
    return sum(a * np.sin((k + 1) * phase) for k, a in enumerate(amps))


def _note_track(rng: np.random.Generator, n: int, sr: int, base: float, steps: tuple[int, ...],
                dur: tuple[float, float], glide_s: float) -> tuple[np.ndarray, np.ndarray]:
    """A melody: per-sample frequency (Hz, piecewise constant with short glides) and note onsets (samples)."""
    onsets, freqs, t = [], [], 0
    while t < n:
        onsets.append(t)
        freqs.append(base * 2.0 ** (rng.choice(steps) / 12.0))
        t += int(rng.uniform(*dur) * sr)
    knots_x, knots_y = [], []
    glide = max(1, int(glide_s * sr))
    for i, (start, f) in enumerate(zip(onsets, freqs)):
        knots_x += [start, (onsets[i + 1] if i + 1 < len(onsets) else n) - 1]
        knots_y += [f, f]
        if i + 1 < len(onsets):
            knots_x[-1] -= glide
    return np.interp(np.arange(n), knots_x, knots_y), np.asarray(onsets)


def _articulation(n: int, onsets: np.ndarray, sr: int, dip_s: float = 0.03) -> np.ndarray:
    """Amplitude envelope with a short dip at each note onset (re-articulation)."""
    env = np.ones(n)
    dip = max(2, int(dip_s * sr))
    ramp = np.sin(np.linspace(0.0, np.pi / 2, dip)) ** 2
    for start in onsets[1:]:
        seg = env[start : start + dip]
        env[start : start + dip] = np.minimum(seg, ramp[: seg.size])
    return env


def _events(rng: np.random.Generator, n: int, sr: int, rate: float, jitter: float) -> np.ndarray:
    """Event onsets (samples) at `rate` per second with relative timing jitter."""
    period = sr / rate
    times = np.arange(rng.uniform(0, period), n, period)
    times = times + rng.uniform(-jitter, jitter, times.size) * period
    return np.clip(times, 0, n - 1).astype(np.int64)


def _add_at(out: np.ndarray, start: int, grain: np.ndarray) -> None:
    end = min(out.size, start + grain.size)
    if end > start:
        out[start:end] += grain[: end - start]


SCALE = (0, 2, 4, 7, 9, 12)  # pentatonic steps in semitones


def _flute(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    freq, onsets = _note_track(rng, n, sr, rng.uniform(500, 700), SCALE, (0.25, 0.7), 0.02)
    t = np.arange(n) / sr
    freq = freq * (1.0 + 0.008 * np.sin(TAU * rng.uniform(4.5, 6.0) * t))
    tone = _harmonic(_phase(freq, sr), (1.0, 0.35, 0.12, 0.05))
    breath = 0.08 * _band_noise(rng, n, sr, 1000, 4000)
    return (tone + breath) * _articulation(n, onsets, sr)


def _drum(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    out = np.zeros(n)
    f0, decay = rng.uniform(55, 120), rng.uniform(9, 18)
    g = np.arange(int(0.45 * sr)) / sr
    snap = _band_noise(rng, g.size, sr, 1500, 6000) * np.exp(-g * 45.0)
    for start in _events(rng, n, sr, rng.uniform(2.0, 5.0), 0.12):
        f = f0 * (0.6 + 0.4 * np.exp(-g * 25.0))
        body = np.sin(_phase(f, sr)) * np.exp(-g * decay)
        _add_at(out, start, rng.uniform(0.6, 1.0) * (body + 0.35 * snap))
    return out


def _guitar(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    out = np.zeros(n)
    base, decay, pluck = rng.uniform(110, 330), rng.uniform(2.5, 4.5), rng.uniform(0.1, 0.3)
    g = np.arange(int(0.9 * sr)) / sr
    grains: dict[int, np.ndarray] = {}  # one decaying grain per scale step, reused by repeated notes
    t = 0
    while t < n:
        step = int(rng.choice(SCALE))
        if step not in grains:
            f = base * 2.0 ** (step / 12.0)
            ks = np.arange(1, min(12, int(0.45 * sr / f)) + 1)
            amps = (1.0 / ks) * np.abs(np.sin(np.pi * ks * pluck))  # pluck position shapes the spectrum
            grain = sum(a * np.sin(TAU * k * f * g) * np.exp(-g * decay * (1 + 0.3 * k)) for k, a in zip(ks, amps))
            grains[step] = grain * np.minimum(1.0, g / 0.003)
        _add_at(out, t, rng.uniform(0.7, 1.0) * grains[step])
        t += int(rng.uniform(0.2, 0.6) * sr)
    return out


VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410), (660, 1720, 2410))


def _formant_gain(formants: tuple[int, ...], scale: float) -> Callable[[np.ndarray], np.ndarray]:
    def gain(f: np.ndarray) -> np.ndarray:
        g = np.full_like(f, 0.02)
        for i, fc in enumerate(formants):
            bw = (90.0 + 50.0 * i) * scale
            g += (0.9**i) / (1.0 + ((f - fc * scale) / bw) ** 2)
        return g * (f > 60)

    return gain


def _voiced(rng: np.random.Generator, freq: np.ndarray, sr: int) -> np.ndarray:
    """A glottal-like source (sawtooth with jitter) at the per-sample frequency track."""
    phase = np.cumsum(freq * (1.0 + 0.004 * rng.standard_normal(freq.size))) / sr
    return 2.0 * (phase - np.floor(phase)) - 1.0


def _speech(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    out = np.zeros(n)
    f0, scale = rng.uniform(90, 220), rng.uniform(0.9, 1.15)
    t = int(rng.uniform(0, 0.1) * sr)
    while t < n:
        length = int(rng.uniform(0.12, 0.3) * sr)
        contour = f0 * np.linspace(rng.uniform(1.0, 1.2), rng.uniform(0.8, 1.0), length)
        seg = _fft_filter(_voiced(rng, contour, sr), sr, _formant_gain(VOWELS[rng.integers(len(VOWELS))], scale))
        seg += 0.05 * _band_noise(rng, length, sr, 1500, 5000)
        env = np.sin(np.linspace(0.0, np.pi, length)) ** 0.7
        _add_at(out, t, seg * env)
        t += length + int(rng.uniform(0.03, 0.15) * sr)
    return out


def _singing(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    freq, onsets = _note_track(rng, n, sr, rng.uniform(200, 320), SCALE, (0.45, 1.2), 0.06)
    t = np.arange(n) / sr
    freq = freq * (1.0 + rng.uniform(0.02, 0.03) * np.sin(TAU * rng.uniform(5.0, 6.0) * t))
    src = _voiced(rng, freq, sr)
    out = np.zeros(n)
    bounds = list(onsets) + [n]
    for start, end in zip(bounds[:-1], bounds[1:]):
        out[start:end] = _fft_filter(src[start:end], sr, _formant_gain(VOWELS[rng.integers(len(VOWELS))], 1.2))
    return out * _articulation(n, onsets, sr, 0.05)


def _bird(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    out = np.zeros(n)
    t = int(rng.uniform(0, 0.2) * sr)
    while t < n:
        for _ in range(rng.integers(2, 7)):  # a burst of chirps
            length = int(rng.uniform(0.04, 0.12) * sr)
            f_a, f_b = rng.uniform(2500, 6500, 2)
            freq = np.linspace(f_a, f_b, length) + 400 * np.sin(np.linspace(0, np.pi, length))
            _add_at(out, t, np.sin(_phase(freq, sr)) * np.sin(np.linspace(0, np.pi, length)) ** 2)
            t += length + int(rng.uniform(0.02, 0.08) * sr)
        t += int(rng.uniform(0.1, 0.5) * sr)
    return out


def _dog(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    out = np.zeros(n)
    f0 = rng.uniform(350, 750)
    t = int(rng.uniform(0, 0.2) * sr)
    while t < n:
        for _ in range(rng.integers(1, 4)):
            length = int(rng.uniform(0.12, 0.25) * sr)
            g = np.arange(length) / sr
            freq = f0 * rng.uniform(0.9, 1.1) * (1.0 - 0.3 * g / g[-1])
            tone = _harmonic(_phase(freq, sr), (1.0, 0.6, 0.4, 0.25, 0.15, 0.1))
            noise = 0.5 * _band_noise(rng, length, sr, 500, 3000)
            env = np.minimum(1.0, g / 0.01) * np.exp(-g * rng.uniform(8, 14))
            _add_at(out, t, (tone + noise) * env)
            t += length + int(rng.uniform(0.05, 0.15) * sr)
        t += int(rng.uniform(0.3, 0.9) * sr)
    return out


def _cricket(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    carrier = np.sin(TAU * rng.uniform(4000, 6000) * t)
    pulse_rate = rng.uniform(15, 35)
    pulses = np.clip(np.sin(TAU * pulse_rate * t + rng.uniform(0, TAU)), 0.0, None) ** 2
    if rng.random() < 0.6:  # chirps of a few pulses separated by gaps, else a continuous trill
        chirp_rate = rng.uniform(1.5, 4.0)
        gate = (np.mod(t * chirp_rate + rng.uniform(0, 1), 1.0) < rng.uniform(0.35, 0.6)).astype(float)
        pulses = pulses * gate
    return carrier * pulses


def _engine(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    f0 = rng.uniform(30, 70) * (1.0 + 0.08 * np.sin(TAU * rng.uniform(0.1, 0.4) * t + rng.uniform(0, TAU)))
    phase = np.cumsum(f0) / sr
    saw = 2.0 * (phase - np.floor(phase)) - 1.0
    hum = _fft_filter(saw, sr, lambda f: 1.0 / (1.0 + (f / 900.0) ** 4))
    rumble = 0.6 * _band_noise(rng, n, sr, 40, 400)
    am = 1.0 + 0.3 * np.sin(TAU * rng.uniform(0.2, 1.0) * t + rng.uniform(0, TAU))
    return (hum / (np.std(hum) + 1e-12) + rumble) * am


def _siren(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    centre, depth = rng.uniform(900, 1100), rng.uniform(300, 450)
    freq = centre + depth * np.sin(TAU * t / rng.uniform(0.6, 3.0) + rng.uniform(0, TAU))
    return _harmonic(_phase(freq, sr), (1.0, 0.3, 0.12))


_SYNTHS: dict[str, Callable[[np.random.Generator, int, int], np.ndarray]] = {
    "flute": _flute, "drum": _drum, "guitar": _guitar, "speech": _speech, "singing": _singing,
    "bird": _bird, "dog": _dog, "cricket": _cricket, "engine": _engine, "siren": _siren,
}


def synth_sound(class_id: int, rng: np.random.Generator, seconds: float, sample_rate: int = 16000) -> np.ndarray:
    """A sound of class `class_id` alone: float32 (round(seconds * sample_rate),) mono.

    Level: RMS drawn uniformly in [-26, -18] dBFS, peaks clipped to [-1, 1]. Deterministic
    given the state of `rng` (only `rng` is used). Used for on-screen sources and for
    off-screen negatives alike.
    """
    cls = class_by_id(class_id)
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate < 8000:
        raise InputError(f"sample_rate must be an integer >= 8000 Hz (16000 is the model rate), got {sample_rate!r}")
    if not np.isfinite(seconds) or seconds <= 0:
        raise InputError(f"seconds must be a positive duration, got {seconds!r}")
    n = int(round(seconds * sample_rate))
    x = _SYNTHS[cls.name](rng, n, int(sample_rate))
    rms = np.sqrt(np.mean(x * x))
    target = 10.0 ** (rng.uniform(-26.0, -18.0) / 20.0)
    y = x * (target / rms) if rms > 0 else x
    return np.clip(y, -1.0, 1.0).astype(np.float32)
