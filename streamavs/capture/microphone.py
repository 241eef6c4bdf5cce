"""Microphone capture through PortAudio (sounddevice) into an :class:`AudioRing`.

The PortAudio callback stamps each block on arrival (``time.monotonic_ns``; PortAudio's
ADC times are unreliable on several host APIs), averages the channels, resamples to 16 kHz
with one persistent ``soxr.ResampleStream`` and writes the result into the ring.

A microphone whose sound arrives later than the camera's frames (a Bluetooth headset: its codec
and radio add 0.1-0.3 s) would have each block stamped that much after the moment it holds;
``audio_delay_s`` moves every stamp back by that delay (``streamavs run --audio-delay``), as
CameraSource's ``video_delay_s`` does for frames, so the ring maps each sample to its true
capture time, and the pairer holds frames back until their sound has arrived
(``Pairer(hold_s=...)``).

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

A device that stops delivering while its stream still claims to run (unplugged on
PulseAudio/PipeWire, suspended, taken by another program) ends the source with a SourceError
after :data:`STALL_S` without a block. A block whose handling is held up in this process (a
reader keeping the ring's lock), or a process that was itself held up (stopped, the GIL held),
is not such a device: the audio the device lost meanwhile is an overflow like any other
(tests/test_microphone_overflow.py). Closing waits at most :data:`STOP_TIMEOUT_S` for PortAudio
to stop the stream: on a stuck device ``abort()`` blocks until the device returns, so the stream
is then abandoned with a warning and closing returns.

Samples are requested as int16, the native format of nearly every capture device; it also
avoids a float conversion in ALSA's plug layer (with ALSA's file plugin, which the tests use
as a real device, float32 capture through ``plug`` returned corrupted samples).
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
from typing import Any

import numpy as np

from streamavs.audio import to_mono
from streamavs.buffers import AudioRing
from streamavs.capture.base import Source
from streamavs.clock import now_ns
from streamavs.errors import InputError, MissingDependency, SourceError

__all__ = ["MicrophoneSource", "import_sounddevice", "input_devices", "MAX_AUDIO_DELAY_S", "STALL_S", "STOP_TIMEOUT_S"]

STALL_S = 2.0  # no block for this long while the stream is active: the device stopped delivering
STALL_BLOCKS = 4  # with a large fixed blocksize, the limit is at least this many blocks
STOP_TIMEOUT_S = 1.0  # closing waits this long for PortAudio to stop the stream, then abandons it
# The longest audio_delay_s accepted. Bluetooth audio (SBC/AAC/aptX, the radio and the headset's buffer)
# arrives 0.1-0.3 s late, rarely up to 0.5 s; more than 1 s is a wrong measurement, not a microphone.
# The pairer holds that much of the camera's frames back (live_capture sizes its ring for it), so the
# bound also keeps that hold, and the added latency, small.
MAX_AUDIO_DELAY_S = 1.0
_log = logging.getLogger("streamavs.capture.microphone")


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

    samplerate defaults to the device's default rate; channels to min(2, its channels), and if the
    device refuses that count, to all of its channels (the callback mixes them to mono anyway).
    `audio_delay_s` (0 to MAX_AUDIO_DELAY_S): how late the device's sound arrives after the moment
    it was captured; every stamp is moved back by it.
    Counters: frames (callbacks), audio_samples (16 kHz samples written), overflows, audio_lost
    (16 kHz zeros written in place of the audio the overflows lost).
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
        audio_delay_s: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= audio_delay_s <= MAX_AUDIO_DELAY_S:  # also refuses NaN
            raise InputError(
                f"audio delay must be 0 to {MAX_AUDIO_DELAY_S:g} s (how late the microphone's sound arrives), got "
                f"{audio_delay_s!r}; measure it by filming a clap and comparing picture and sound, or leave it at 0"
            )
        self.device = int(device) if isinstance(device, str) and device.isdigit() else device
        self.ring = ring if ring is not None else AudioRing()
        self.samplerate = samplerate
        self.channels = channels
        self.blocksize = blocksize
        self.dtype = dtype
        self._delay_ns = int(round(audio_delay_s * 1e9))
        self.device_name = ""
        self._stream: Any = None
        self._resampler: Any = None
        self._in_total = 0  # samples given to the resampler (device rate)
        self._out_total = 0  # samples written to the ring (ring rate)
        self._finished_early = threading.Event()
        self._last_block_ns = 0  # arrival of the newest block (or the stream start); PortAudio thread writes
        self._in_callback = False  # a delivered block is being handled (it may wait, e.g. on the ring's lock)
        self._counters.update({"audio_samples": 0, "audio_lost": 0})

    # -- caller thread -------------------------------------------------------------------
    def _open(self) -> None:
        import soxr

        sd = import_sounddevice()
        try:
            info = sd.query_devices(self.device, "input")
        except (ValueError, sd.PortAudioError) as exc:
            raise self._device_error(sd, exc) from exc
        self.device_name = info["name"]
        rate = int(self.samplerate or info["default_samplerate"])
        self.samplerate = rate
        self._resampler = soxr.ResampleStream(rate, self.ring.sample_rate, 1, dtype="float32", quality="HQ")
        # Devices that accept only their native channel count (seen on other host APIs; ALSA
        # through PortAudio adapts the count itself unless the device changed after PortAudio
        # listed it, as in tests/test_microphone_channels.py) refuse min(2, n): try all n before giving up.
        native = int(info["max_input_channels"])
        tries = [int(self.channels)] if self.channels else sorted({min(2, native), native})
        failures = []
        for channels in tries:
            try:
                self._start_stream(sd, rate, channels)
            except sd.PortAudioError as exc:
                self._release_stream()
                failures.append(f"{channels} channels: {exc}")
                continue
            self.channels = channels
            return
        raise SourceError(
            f"cannot open input device '{info['name']}' at {rate} Hz (tried {'; '.join(failures)}); "
            "pick another device with --mic, or close the program that holds it"
        )

    def _start_stream(self, sd: Any, rate: int, channels: int) -> None:
        self._stream = sd.InputStream(
            device=self.device,
            samplerate=rate,
            channels=channels,
            dtype=self.dtype,
            blocksize=self.blocksize,
            callback=self._callback,
            finished_callback=self._finished_early.set,
        )
        self._last_block_ns = now_ns()  # the stall limit counts from the start until the first block
        self._stream.start()

    def _device_error(self, sd: Any, exc: Exception) -> SourceError:
        """The SourceError for a device that sounddevice could not find (none, several or no default)."""
        several = re.findall(r"^\[(\d+)\]", str(exc), re.M) if str(exc).startswith("Multiple") else []
        if several:  # sounddevice: "Multiple input devices found for 't':\n[0] tonefile, ALSA\n..."
            names = ", ".join(f"[{i}] {sd.query_devices(int(i))['name']}" for i in several)
            return SourceError(f"{self.device!r} matches several input devices: {names}; pass --mic INDEX")
        devices = input_devices()
        listing = "; ".join(devices) if devices else "none (is a microphone connected? check: arecord -l)"
        if self.device is None:  # PortAudio says "Error querying device -1": there is no default input
            return SourceError(
                f"this machine has no default audio input device; input devices: {listing}; pass --mic "
                "NAME or --mic INDEX, or run on a file (--input FILE) or the procedural scene (--synthetic)"
            )
        return SourceError(
            f"no audio input device matches {self.device!r} ({exc}); available input devices: "
            f"{listing}; pass --mic NAME or --mic INDEX"
        )

    # -- PortAudio thread ------------------------------------------------------------------
    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        t_arrival = now_ns()  # first thing: the block has just been delivered
        self._last_block_ns = t_arrival
        if self._stop.is_set():  # closing (or an abandoned stream that came back): write nothing
            return
        self._in_callback = True
        try:
            mono = to_mono(indata, channels_last=True)  # (frames,) float32, a new array (PortAudio reuses indata)
            out = self._resampler.resample_chunk(mono)
            self._in_total += frames
            # soxr holds back a few samples; the newest output sample is that much older
            # than the block end, which itself was captured audio_delay_s before it arrived.
            held = self._in_total * self.ring.sample_rate / self.samplerate - (self._out_total + out.size)
            t_end = t_arrival - int(held * 1e9 / self.ring.sample_rate) - self._delay_ns
            if status.input_overflow:  # input was lost before this block: zeros for it, then the block
                self._count("overflows")
                self._count("audio_lost", self.ring.mark_overflow(out.size, t_end))
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
        finally:  # a callback held up in this process is no silent device: count the silence from its end
            self._last_block_ns = now_ns()
            self._in_callback = False

    # -- watcher thread --------------------------------------------------------------------
    def _run(self) -> None:
        block_s = self.blocksize / self.samplerate if self.samplerate else 0.0
        limit_s = max(STALL_S, STALL_BLOCKS * block_s)
        awake_ns = resumed_ns = now_ns()
        while not self._stop.wait(0.05):
            if self._finished_early.is_set() and self._error is None:
                raise SourceError(
                    f"the input stream of '{self.device_name}' stopped (device unplugged or taken by "
                    "another program?); restart, or pick another device with --mic"
                )
            now = now_ns()
            if now - awake_ns > limit_s / 2 * 1e9:  # this thread was held up too (process stopped, the GIL
                resumed_ns = now  # held): the silence so far is not the device's, count it from now
            awake_ns = now
            busy = self._in_callback  # read before the stamp: the callback writes the stamp, then clears the flag
            silent_s = (now - max(self._last_block_ns, resumed_ns)) / 1e9
            if silent_s > limit_s and not busy and self._stream_active():
                raise SourceError(
                    f"input device '{self.device_name}' delivered no audio for {silent_s:.1f} s although its "
                    "stream is running (unplugged, suspended, or taken by another program?); restart, or "
                    "pick another device with --mic"
                )

    def _stream_active(self) -> bool:
        """The stream claims to run (False once closing has taken or closed it)."""
        stream = self._stream
        try:
            return stream is not None and not self._stop.is_set() and bool(stream.active)
        except Exception:  # closed by close() between the two looks: not running
            return False

    def _release_stream(self) -> None:
        """Stop and close the stream, waiting at most STOP_TIMEOUT_S; a stuck one is abandoned."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        failed: list[BaseException] = []

        def stop() -> None:
            try:
                try:
                    stream.abort(ignore_errors=True)
                finally:
                    stream.close(ignore_errors=True)
            except BaseException as exc:  # re-raised below in the closing thread
                failed.append(exc)

        stopper = threading.Thread(target=stop, name="streamavs-microphone-stop", daemon=True)
        stopper.start()
        stopper.join(STOP_TIMEOUT_S)
        if stopper.is_alive():
            # sounddevice terminates PortAudio at exit, which closes every stream and would wait
            # for this one just as abort() does: the program could not exit. Skip it; the
            # operating system frees the device when the process ends.
            exit_handler = getattr(import_sounddevice(), "_exit_handler", None)
            if exit_handler is not None:
                atexit.unregister(exit_handler)
            _log.warning("microphone %r did not stop within %g s; abandoned", self.device_name, STOP_TIMEOUT_S)
        elif failed:
            raise failed[0]

    def _release(self) -> None:
        self._release_stream()
        # An abandoned stream keeps this source alive through its callback (which, closing, no
        # longer resamples): drop the resampler, or soxr reports it as leaked at exit.
        self._resampler = None
        self.ring.finish()  # after the stream: no callback can write any more (an abandoned one writes nothing)
