"""Microphone capture through PortAudio (sounddevice) into an :class:`AudioRing`.

The PortAudio callback stamps each block on arrival (``time.monotonic_ns``; PortAudio's
ADC times are unreliable on several host APIs), averages the channels, resamples to 16 kHz
with one persistent ``soxr.ResampleStream`` and writes the result into the ring.

A block is what PortAudio hands one callback: ``blocksize`` frames, or with the default
``blocksize=0`` the host API's period (10-20 ms on most systems). The ring measures it
(:attr:`AudioRing.block`) and the pairer pairs a frame at once when the audio reaches within
one such block of it, so a frame never waits for the block that covers its own instant.
Closing the source finishes the ring: no frame waits for a microphone that is gone.

Why the conversion runs inside the callback and not in a worker thread: soxr needs about
6 us per 20 ms block at 48 kHz (``soxr.ResampleStream(48000, 16000, 1, quality="HQ")``,
measured on this project's 2-core CI machine), i.e. 0.03 % of the block's real-time budget,
and the ring write is two slice copies under a lock that readers hold only for a copy.
A hand-off queue would add a thread, a second copy and a latency of its own for nothing.

Samples are requested as int16, the native format of nearly every capture device; it also
avoids a float conversion in ALSA's plug layer (with ALSA's file plugin, which the tests use
as a real device, float32 capture through ``plug`` returned corrupted samples).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from streamavs.audio import to_mono
from streamavs.buffers import AudioRing
from streamavs.capture.base import Source
from streamavs.clock import now_ns
from streamavs.errors import MissingDependency, SourceError

__all__ = ["MicrophoneSource", "import_sounddevice", "input_devices"]


def import_sounddevice() -> Any:
    """Import sounddevice, or raise MissingDependency with the install command."""
    try:
        import sounddevice
    except OSError as exc:  # the Python package is there, the PortAudio library is not
        raise MissingDependency(
            f"microphone capture needs the PortAudio library, which was not found ({exc}); "
            "install it with: apt-get install libportaudio2 (Debian/Ubuntu), or use --input FILE"
        ) from exc
    except ImportError as exc:
        raise MissingDependency(
            f"microphone capture needs the Python package 'sounddevice' ({exc}); "
            "install it with: pip install sounddevice"
        ) from exc
    return sounddevice


def input_devices() -> list[str]:
    """One line per PortAudio input device: '[index] name (channels ch, rate Hz)'."""
    sd = import_sounddevice()
    lines = []
    for i, dev in enumerate(sd.query_devices()):
        if dev["max_input_channels"] > 0:
            lines.append(f"[{i}] {dev['name']} ({dev['max_input_channels']} ch, {dev['default_samplerate']:.0f} Hz)")
    return lines


class MicrophoneSource(Source):
    """A PortAudio input device (by index, name substring, or None for the default).

    samplerate/channels default to the device's default rate and min(2, its channels).
    Counters: frames (callbacks), audio_samples (16 kHz samples written), overflows.
    """

    name = "microphone"

    def __init__(
        self,
        device: int | str | None = None,
        ring: AudioRing | None = None,
        samplerate: int | None = None,
        channels: int | None = None,
        blocksize: int = 0,
        dtype: str = "int16",
    ) -> None:
        super().__init__()
        self.device = int(device) if isinstance(device, str) and device.isdigit() else device
        self.ring = ring if ring is not None else AudioRing()
        self.samplerate = samplerate
        self.channels = channels
        self.blocksize = blocksize
        self.dtype = dtype
        self.device_name = ""
        self._stream: Any = None
        self._resampler: Any = None
        self._in_total = 0  # samples given to the resampler (device rate)
        self._out_total = 0  # samples written to the ring (ring rate)
        self._finished_early = threading.Event()
        self._counters.update({"audio_samples": 0})

    # -- caller thread -------------------------------------------------------------------
    def _open(self) -> None:
        import soxr

        sd = import_sounddevice()
        try:
            info = sd.query_devices(self.device, "input")
        except (ValueError, sd.PortAudioError) as exc:
            devices = input_devices()
            listing = "; ".join(devices) if devices else "none (is a microphone connected? check: arecord -l)"
            if self.device is None:  # PortAudio says "Error querying device -1": there is no default input
                raise SourceError(
                    f"this machine has no default audio input device; input devices: {listing}; pass --mic "
                    "NAME or --mic INDEX, or run on a file (--input FILE) or the procedural scene (--synthetic)"
                ) from exc
            raise SourceError(
                f"no audio input device matches {self.device!r} ({exc}); available input devices: "
                f"{listing}; pass --mic NAME or --mic INDEX"
            ) from exc
        self.device_name = info["name"]
        rate = int(self.samplerate or info["default_samplerate"])
        channels = int(self.channels or min(2, info["max_input_channels"]))
        self.samplerate, self.channels = rate, channels
        self._resampler = soxr.ResampleStream(rate, self.ring.sample_rate, 1, dtype="float32", quality="HQ")
        try:
            self._stream = sd.InputStream(
                device=self.device,
                samplerate=rate,
                channels=channels,
                dtype=self.dtype,
                blocksize=self.blocksize,
                callback=self._callback,
                finished_callback=self._finished_early.set,
            )
            self._stream.start()
        except sd.PortAudioError as exc:
            self._release_stream()
            raise SourceError(
                f"cannot open input device '{info['name']}' at {rate} Hz with {channels} channels ({exc}); "
                "pick another device with --mic, or close the program that holds it"
            ) from exc

    # -- PortAudio thread ------------------------------------------------------------------
    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        t_arrival = now_ns()  # first thing: the block has just been delivered
        try:
            if status.input_overflow:
                self._count("overflows")
                self.ring.mark_overflow()
            mono = to_mono(indata, channels_last=True)  # (frames,) float32, a new array (PortAudio reuses indata)
            out = self._resampler.resample_chunk(mono)
            self._in_total += frames
            # soxr holds back a few samples; the newest output sample is that much older
            # than the block end.
            held = self._in_total * self.ring.sample_rate / self.samplerate - (self._out_total + out.size)
            t_end = t_arrival - int(held * 1e9 / self.ring.sample_rate)
            if out.size:
                self.ring.write(out, t_end)
                self._out_total += out.size
                self._count("audio_samples", out.size)
            self._count("frames")
        except BaseException as exc:  # never raise into PortAudio: store, stop, re-raise in check()
            import sounddevice

            self._error = exc
            self._stop.set()
            raise sounddevice.CallbackAbort from exc

    # -- watcher thread --------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(0.05):
            if self._finished_early.is_set() and self._error is None:
                raise SourceError(
                    f"the input stream of '{self.device_name}' stopped (device unplugged or taken by "
                    "another program?); restart, or pick another device with --mic"
                )

    def _release_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort(ignore_errors=True)
            finally:
                stream.close(ignore_errors=True)

    def _release(self) -> None:
        self._release_stream()
        self.ring.finish()  # after the stream: no callback can write any more
