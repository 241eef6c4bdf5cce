"""The VGGish audio front end: downmix, resample, log-mel examples (shared by train and run).

Training and the live runtime both call this module, so the model sees identical inputs.
The computation follows the VGGish release (`mel_features.py` / `vggish_input.py`):

* 16 kHz mono float32 waveform, nominally in [-1, 1]: channels averaged, other rates
  resampled with soxr (quality "HQ").
* Frames of 400 samples (25 ms) every 160 samples (10 ms), periodic Hann window
  ``w[n] = 0.5 - 0.5*cos(2*pi*n/400)``; ``n_frames = 1 + (n - 400) // 160``.
* Magnitude of a 512-point rfft (257 bins, 0..8000 Hz).
* 64 triangular mel bands between 125 and 7500 Hz on the HTK scale ``1127*ln(1 + f/700)``,
  built exactly like ``mel_features.spectrogram_to_mel_matrix`` (weights computed in the mel
  domain, DC row zeroed, no area normalisation), then ``log(mel + 0.01)``.
* One example = 96 frames x 64 bands, covering (96 - 1) * 160 + 400 = 15600 samples = 0.975 s.

How the 1 s audio window maps onto the 0.975 s example
-------------------------------------------------------
StreamAVS pairs a frame at time t with the audio [t - 1 s, t] (no look-ahead). The example is
END-ALIGNED: it is computed from the LAST 15600 samples of that second, samples
[end - 15600, end), so its last frame ends exactly at the video frame; the first 400 samples
(25 ms) of the second are not used. At stream start (end < 15600) the missing past is zero
padded on the left, which is the same as silence before the stream.
:meth:`LogMel.examples_per_second` applies the same rule to clips: example k ends at
(k + 1) * 16000, i.e. at the end of second k.

AVSBench's pre-computed VGGish pickles (``[5, 1, 96, 64]`` per 5 s clip) are NOT end-aligned:
they come from ``vggish_input.wavfile_to_examples`` on the whole clip, which cuts the log-mel
into consecutive, non-overlapping blocks of 96 frames (example hop 0.96 s). Their example k
covers samples [15360 k, 15360 k + 15600): the first 96 frames of second 0, and from then on
blocks that drift 40 ms earlier per second. Relative to our end-aligned example k
(which starts at 16000 k + 400) theirs starts 25 + 40 k ms earlier (25, 65, 105, 145, 185 ms).
Features computed from AVSBench wavs with this module therefore differ slightly from the
pickles; retrain or fine-tune on features from this module rather than mixing the two.

Resampling is done per call; a live microphone stream should run one persistent resampler
(``soxr.ResampleStream``) over its blocks rather than resample each block independently.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from streamavs.errors import ConfigError, InputError

__all__ = ["LogMelParams", "LogMel", "to_mono", "resample", "prepare_waveform", "hertz_to_mel"]

# A 2-D array whose first axis is at most this long and shorter than its second axis is
# taken to be channels-first (e.g. (2, 48000)), which this module refuses rather than guesses.
_MAX_CHANNELS_FIRST = 16


@dataclass(frozen=True)
class LogMelParams:
    """Parameters of the log-mel front end; engine manifests store them via :meth:`to_dict`.

    Times are in samples at `sample_rate` (Hz); frequencies in Hz.
    """

    sample_rate: int = 16000
    window_samples: int = 400
    hop_samples: int = 160
    n_fft: int = 512
    n_mels: int = 64
    fmin_hz: float = 125.0
    fmax_hz: float = 7500.0
    log_offset: float = 0.01
    example_frames: int = 96

    def __post_init__(self) -> None:
        problems = []
        for name in ("sample_rate", "window_samples", "hop_samples", "n_fft", "n_mels", "example_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if not problems and self.window_samples > self.n_fft:
            problems.append(f"window_samples ({self.window_samples}) must be <= n_fft ({self.n_fft})")
        if not problems and not 0 <= self.fmin_hz < self.fmax_hz <= self.sample_rate / 2:
            problems.append(
                f"need 0 <= fmin_hz < fmax_hz <= sample_rate/2, got fmin_hz={self.fmin_hz}, "
                f"fmax_hz={self.fmax_hz}, sample_rate={self.sample_rate}"
            )
        if not problems and not self.log_offset > 0:
            problems.append(f"log_offset must be > 0, got {self.log_offset!r}")
        if problems:
            raise ConfigError("invalid LogMelParams: " + "; ".join(problems) + "; use values like the defaults (VGGish)")

    @property
    def example_samples(self) -> int:
        """Samples covered by one example: (example_frames - 1) * hop + window (15600)."""
        return (self.example_frames - 1) * self.hop_samples + self.window_samples

    @property
    def example_shape(self) -> tuple[int, int]:
        """(example_frames, n_mels) of one example, (96, 64): the model's log-mel input without batch and channel."""
        return (self.example_frames, self.n_mels)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field (for engine manifests)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LogMelParams":
        """Rebuild from :meth:`to_dict` output; unknown or missing keys raise InputError."""
        if not isinstance(data, dict):
            raise InputError(f"LogMelParams.from_dict expects a dict, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        missing = [n for n in names if n not in data]
        if unknown or missing:
            raise InputError(
                f"audio front-end parameters do not match LogMelParams: unknown keys {unknown}, "
                f"missing keys {missing}; expected exactly {names} (the manifest may come from "
                "another StreamAVS version: re-export the engine)"
            )
        return cls(**{n: data[n] for n in names})


def hertz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale, 1127 * ln(1 + f / 700), as in VGGish (float64)."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_matrix(params: LogMelParams) -> np.ndarray:
    """(n_fft//2 + 1, n_mels) float64 weights, exactly as VGGish's spectrogram_to_mel_matrix."""
    n_bins = params.n_fft // 2 + 1
    bins_mel = hertz_to_mel(np.linspace(0.0, params.sample_rate / 2.0, n_bins))[:, None]  # (257, 1)
    edges = np.linspace(hertz_to_mel(params.fmin_hz), hertz_to_mel(params.fmax_hz), params.n_mels + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]  # (64,) each
    lower_slope = (bins_mel - lower) / (center - lower)  # (257, 64)
    upper_slope = (upper - bins_mel) / (upper - center)  # (257, 64)
    weights = np.maximum(0.0, np.minimum(lower_slope, upper_slope))
    weights[0, :] = 0.0  # VGGish zeroes the DC bin
    return weights


def to_mono(samples: np.ndarray, channels_last: bool = False) -> np.ndarray:
    """Downmix to mono float32 (n,) by averaging channels.

    Accepts (n,) or channels-last (n, channels). Floats are taken as they are (nominal range
    [-1, 1]); signed integers are scaled by 2**(bits-1) (int16 / 32768) into [-1, 1); uint8
    (8-bit WAV) is centred at 128. Non-finite values raise InputError.

    An array with fewer rows than columns looks channels-first and is refused, unless the caller
    knows its layout (`channels_last=True`: a decoder's or PortAudio's blocks, where a block of one
    stereo sample is (1, 2)).
    """
    x = np.asarray(samples)
    if x.ndim not in (1, 2):
        raise InputError(
            f"audio must be (n,) or channels-last (n, channels), got shape {x.shape}; "
            "reshape or select the channel axis first"
        )
    if x.ndim == 2:
        rows, cols = x.shape
        if cols > rows and rows <= _MAX_CHANNELS_FIRST and not channels_last:
            raise InputError(
                f"audio of shape {x.shape} looks channels-first ({rows} channels x {cols} samples); "
                "expected channels-last (n_samples, n_channels): pass samples.T"
            )
        if cols == 0:
            raise InputError(f"audio has zero channels (shape {x.shape}); expected at least one")
    if x.dtype.kind == "f":
        x = x.astype(np.float32, copy=False)
    elif x.dtype.kind == "i":
        x = x.astype(np.float32) * np.float32(1.0 / 2 ** (8 * x.dtype.itemsize - 1))
    elif x.dtype == np.uint8:
        x = (x.astype(np.float32) - 128.0) * np.float32(1.0 / 128.0)
    else:
        raise InputError(
            f"audio dtype {x.dtype} is not supported; expected float, int16, int32 or uint8 samples"
        )
    if x.ndim == 2:
        x = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1, dtype=np.float32)  # (n,)
    if not np.isfinite(x).all():
        raise InputError("audio contains NaN or infinity; expected finite samples (check the decoder/device)")
    return np.ascontiguousarray(x, dtype=np.float32)


def _check_rate(rate: Any, name: str) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise InputError(f"{name} must be a positive integer number of Hz, got {rate!r}")
    return int(rate)


def resample(x: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample a mono float32 (n,) signal with soxr (quality HQ); returns it unchanged if rates match.

    The output has about n * to_rate / from_rate samples (soxr rounds).
    """
    from_rate = _check_rate(from_rate, "from_rate")
    to_rate = _check_rate(to_rate, "to_rate")
    x = np.asarray(x)
    if x.ndim != 1:
        raise InputError(f"resample expects a mono (n,) signal, got shape {x.shape}; call to_mono first")
    if from_rate == to_rate:
        return x
    if x.size == 0:
        return np.zeros(0, dtype=np.float32)
    import soxr

    return soxr.resample(x.astype(np.float32, copy=False), from_rate, to_rate, quality="HQ")


def prepare_waveform(samples: np.ndarray, sample_rate: int, params: LogMelParams = LogMelParams()) -> np.ndarray:
    """Any audio array (see :func:`to_mono`) at `sample_rate` Hz -> float32 (n,) mono at params.sample_rate."""
    sample_rate = _check_rate(sample_rate, "sample_rate")
    return np.ascontiguousarray(resample(to_mono(samples), sample_rate, params.sample_rate), dtype=np.float32)


class LogMel:
    """Log-mel spectrogram of 16 kHz mono float32 waveforms (from :func:`prepare_waveform`).

    Windowing and FFT run in float64 (numpy's float32 rfft is no faster for one example and
    ~1.8x slower for a 5 s batch on x86), the mel product and log in float32; the result agrees
    with a float64 direct DFT to < 1e-6 in log-mel. Outputs are float32, layout
    (frames, mel bands), time increasing.
    """

    def __init__(self, params: LogMelParams = LogMelParams()) -> None:
        self.params = params
        n = np.arange(params.window_samples, dtype=np.float64)
        self._window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / params.window_samples)  # periodic Hann, float64
        self._mel64 = _mel_matrix(params)
        self._mel = self._mel64.astype(np.float32)
        self._log_offset = np.float32(params.log_offset)

    @property
    def mel_matrix(self) -> np.ndarray:
        """(n_fft//2 + 1, n_mels) float64 mel weights (a copy); the transform uses it in float32."""
        return self._mel64.copy()

    def _check_waveform(self, waveform: np.ndarray) -> np.ndarray:
        x = np.asarray(waveform)
        if x.ndim != 1:
            raise InputError(
                f"LogMel expects a mono (n,) waveform at {self.params.sample_rate} Hz, got shape {x.shape}; "
                "use prepare_waveform(samples, sample_rate) first"
            )
        if x.dtype.kind != "f":
            raise InputError(
                f"LogMel expects a float waveform in [-1, 1], got dtype {x.dtype}; "
                "use prepare_waveform(samples, sample_rate) to scale integer samples"
            )
        return x.astype(np.float32, copy=False)

    def frames(self, waveform: np.ndarray) -> np.ndarray:
        """(n_frames, n_mels) float32 log-mel of a whole waveform; n_frames = 1 + (n - 400) // 160 (0 if n < 400)."""
        p = self.params
        x = self._check_waveform(waveform)
        if x.size < p.window_samples:
            return np.empty((0, p.n_mels), dtype=np.float32)
        framed = sliding_window_view(x, p.window_samples)[:: p.hop_samples]  # (F, 400), a view
        spectrum = np.abs(np.fft.rfft(framed * self._window, n=p.n_fft)).astype(np.float32)  # (F, 257)
        return np.log(spectrum @ self._mel + self._log_offset)  # (F, 64)

    def example_ending_at(self, waveform: np.ndarray, end_sample: int) -> np.ndarray:
        """(example_frames, n_mels) float32 example from samples [end - 15600, end), zero-padded on the left.

        `end_sample` is an absolute index into `waveform` (0 <= end_sample <= len(waveform)).
        """
        p = self.params
        x = self._check_waveform(waveform)
        if isinstance(end_sample, bool) or not isinstance(end_sample, (int, np.integer)):
            raise InputError(f"end_sample must be an integer sample index, got {end_sample!r}")
        if not 0 <= end_sample <= x.size:
            raise InputError(
                f"end_sample {end_sample} is outside the waveform of {x.size} samples; "
                f"expected 0 <= end_sample <= {x.size} (no look-ahead: wait until the audio has arrived)"
            )
        need = p.example_samples
        start = end_sample - need
        if start >= 0:
            segment = x[start:end_sample]
        else:  # stream start: silence before the first sample
            segment = np.zeros(need, dtype=np.float32)
            segment[need - end_sample :] = x[:end_sample]
        return self.frames(segment)  # (96, 64)

    def examples_per_second(self, waveform: np.ndarray, seconds: int) -> np.ndarray:
        """(seconds, example_frames, n_mels) float32: example k ends at (k + 1) * sample_rate.

        The waveform must hold at least `seconds` seconds of audio.
        """
        p = self.params
        x = self._check_waveform(waveform)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, np.integer)) or seconds < 0:
            raise InputError(f"seconds must be a non-negative integer, got {seconds!r}")
        if seconds * p.sample_rate > x.size:
            raise InputError(
                f"{seconds} s of examples need {seconds * p.sample_rate} samples at {p.sample_rate} Hz, "
                f"the waveform has {x.size}; pad the clip or ask for fewer seconds"
            )
        if seconds == 0:
            return np.empty((0, *p.example_shape), dtype=np.float32)
        # Frame the span once and slice each second's frames out of it: consecutive examples
        # start sample_rate samples apart, a whole number of hops when sr % hop == 0.
        if p.sample_rate % p.hop_samples == 0:
            first_start = p.sample_rate - p.example_samples  # start of example 0 (may be < 0)
            end = seconds * p.sample_rate
            if first_start >= 0:
                span = x[first_start:end]
            else:  # zero padding before sample 0, as in example_ending_at
                span = np.concatenate([np.zeros(-first_start, dtype=np.float32), x[:end]])
            spec = self.frames(span)  # (F, 64)
            starts = (p.sample_rate // p.hop_samples) * np.arange(seconds)  # (S,) frame index of each example
            idx = starts[:, None] + np.arange(p.example_frames)  # (S, 96)
            return spec[idx]  # (S, 96, 64)
        return np.stack([self.example_ending_at(x, (k + 1) * p.sample_rate) for k in range(seconds)])
