"""Media files and URLs (anything FFmpeg reads) as a capture source, decoded with PyAV.

Video frames go to a :class:`FrameRing` as RGB uint8, turned upright as the file states
(:mod:`.orientation`); audio is averaged to mono and resampled to 16 kHz with one persistent
``soxr.ResampleStream`` (the offline front end's, :mod:`streamavs.audio`) into an :class:`AudioRing`.

Timestamps come from the PTS, mapped onto the monotonic clock at start: ``t_ns = origin_ns +
(pts_s - start_s) * 1e9``. realtime=True paces delivery to that clock (a file then behaves like
a camera + microphone); realtime=False runs as fast as possible with the same stamps.
lossless=True makes every frame reach the consumer: a frame is handed over only once the audio up
to its time has been written, and the source waits while the frame ring is full instead of overwriting. Ring sample k is at stream time
``zero_s + k / 16000``, where zero_s is the first audio PTS, or the stream start when the
audio starts late; audio packets after the first are taken to be contiguous, and video PTS that
restart or leap (spliced MPEG-TS) are closed up to match (``pts_jumps``; :mod:`.media_time`).

Audio that will not come: the container header states where the audio track starts and ends
(MP4: the stream's start and duration; Matroska: its DURATION tag). Before handing over a
frame whose time has no audio (before a late audio start, after the track's end once its
audio has been written, or in a file without audio) the source writes silence up to the
frame with :meth:`AudioRing.fill`, so the pairer pairs it at once and reports the window as
padded; at the end of the file the ring is finished before the last frames are handed over.
Where the header says nothing, the end of the file is the only sign. Audio that still arrives
for a time already filled (a wrong header) is dropped and counted (``audio_dropped``).

URLs that stall: opening fails when connecting and reading the header, or then probing the
streams, takes longer than ``open_timeout_s``; decoding fails when one read gets no data for
``read_timeout_s`` (FFmpeg's interrupt callback, set by PyAV's ``timeout``). A failure part-way
(a stall, a truncated file) or an end before the end the header states (a cut Matroska file), both
told by :mod:`.media_end`, still hands over every frame decoded before its error: the audio ring is
finished first, so frames waiting for their audio go with silence. From a URL, a packet that fails to
decode (damaged in transit; MPEG-TS hands over the cut packet when a read stalls) is skipped and counted
(``decode_errors``) unless one stream fails ``_MAX_DECODE_ERRORS`` times in a row; from a file it is an error.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np

from streamavs.audio import to_mono
from streamavs.buffers import AudioRing, FrameRing, VideoFrame
from streamavs.capture.base import Source, local_path
from streamavs.capture.media_end import MediaEnd
from streamavs.capture.media_time import PtsTimeline, declared_end, declared_span
from streamavs.capture.orientation import upright
from streamavs.clock import now_ns, wall_time
from streamavs.errors import InputError, SourceError

__all__ = ["MediaSource", "URL_OPEN_TIMEOUT_S", "URL_READ_TIMEOUT_S"]

URL_OPEN_TIMEOUT_S = 10.0  # a URL that sends nothing usable this long while opening fails
URL_READ_TIMEOUT_S = 5.0  # a URL that sends no data this long during one read (mid-stream) fails

_MAX_PENDING = 512  # lossless: frames held while their audio has not been decoded yet
_MAX_PENDING_BYTES = 256 * 2**20  # and their images' bytes (512 frames of 1080p would be 3 GB)
_LATE_START_S = 0.1  # audio that starts this much after the stream starts late (less: codec delay)
_MAX_DECODE_ERRORS = 25  # URLs: packets of one stream in a row that may fail to decode before it is an error


class MediaSource(Source):
    """Decode a file or URL with audio and video; `frames` and `audio` are the output rings."""

    name = "media"

    def __init__(
        self,
        path_or_url: str | Path,
        realtime: bool = True,
        lossless: bool = False,
        frames: FrameRing | None = None,
        audio: AudioRing | None = None,
        require_audio: bool = True,
        open_timeout_s: float = URL_OPEN_TIMEOUT_S,
        read_timeout_s: float = URL_READ_TIMEOUT_S,
    ) -> None:
        super().__init__()
        if not (open_timeout_s > 0 and read_timeout_s > 0):
            raise InputError(
                f"URL timeouts must be > 0 seconds, got open_timeout_s={open_timeout_s!r} and read_timeout_s="
                f"{read_timeout_s!r}; leave them out for {URL_OPEN_TIMEOUT_S:g} s and {URL_READ_TIMEOUT_S:g} s"
            )
        self.path = local_path(str(path_or_url))
        self.is_url = "://" in self.path  # a URL stalls and loses packets; a file does neither
        self.open_timeout_s = float(open_timeout_s)  # URLs only: files are never interrupted
        self.read_timeout_s = float(read_timeout_s)
        self.realtime = realtime
        self.lossless = lossless
        self.require_audio = require_audio
        self.frames = frames if frames is not None else FrameRing(capacity=4)
        self.audio = audio if audio is not None else AudioRing()
        self.fps: float | None = None  # nominal frame rate of the video stream
        self.audio_rate: int | None = None  # sample rate of the audio stream (Hz)
        self.audio_span: tuple[float | None, float | None] = (None, None)  # header's (start, end) of the audio, s
        self.declared_end: float | None = None  # header's end of the streams read, s (MP4/MOV, Matroska/WebM)
        self._container: Any = None
        self._vstream: Any = None
        self._astream: Any = None
        self._streams: list[Any] = []  # the video stream, then the audio stream if any
        self._counters.update(
            {"audio_samples": 0, "audio_filled": 0, "audio_dropped": 0, "pts_fixes": 0, "pts_jumps": 0,
             "decode_errors": 0}
        )

    # -- caller thread -------------------------------------------------------------------
    def _open(self) -> None:
        import av

        path = self.path
        if not self.is_url and not Path(path).is_file():
            raise SourceError(
                f"media file '{path}' does not exist; expected a video file (mp4, mkv, ...) or a URL "
                "such as rtsp://host/stream: check the path"
            )
        try:
            if self.is_url:
                self._container = av.open(path, timeout=(self.open_timeout_s, self.read_timeout_s))
            else:
                self._container = av.open(path)
        except av.error.ExitError as exc:  # the timeout interrupted FFmpeg: nothing came back in time
            raise SourceError(
                f"no answer from '{path}' within {self.open_timeout_s:g} s: the host did not answer, or the server "
                f"accepted the connection but sent no media; check the address and that it plays: ffprobe '{path}'"
            ) from exc
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise SourceError(
                f"cannot open '{path}' as media ({exc}); expected a file or URL that FFmpeg can read "
                "(check it with: ffprobe FILE)"
            ) from exc
        c = self._container
        videos = [s for s in c.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
        if not videos:
            cover_art = bool(c.streams.video)  # e.g. an MP3 with cover art: one still picture, not a video
            self._release()
            if cover_art:
                raise SourceError(
                    f"'{path}' holds a still picture (cover art) but no video track; StreamAVS needs video "
                    "with audio: make a video of the picture, e.g. ffmpeg -loop 1 -i cover.jpg -i FILE -shortest "
                    "-c:v libx264 -pix_fmt yuv420p -c:a aac out.mp4"
                )
            raise SourceError(
                f"'{path}' has no video track; StreamAVS needs video with audio: use a video file "
                "(check the tracks with: ffprobe FILE)"
            )
        if not c.streams.audio and self.require_audio:
            self._release()
            raise SourceError(
                f"'{path}' has no audio track; StreamAVS segments the objects that make the sound "
                "and needs audio: use a file with an audio track (check with: ffprobe FILE)"
            )
        self._vstream = videos[0]
        self._astream = c.streams.audio[0] if c.streams.audio else None
        for stream in (self._vstream, self._astream):
            if stream is not None and stream.codec_context is None:  # FFmpeg has no decoder for it
                # Build the message first: touching a stream after its container closed segfaults PyAV.
                message = (
                    f"'{path}' {stream.type} track (stream #{stream.index}) uses a codec this FFmpeg cannot "
                    "decode (see: ffprobe FILE); re-encode it, e.g. ffmpeg -i IN -c:v libx264 -c:a aac OUT.mp4"
                )
                self._vstream = self._astream = None
                self._release()
                raise SourceError(message)
        rate = self._vstream.average_rate or self._vstream.guessed_rate
        self.fps = float(rate) if rate else None
        if self._astream is not None:
            self.audio_rate = int(self._astream.codec_context.sample_rate or self._astream.rate or 0) or None
            self.audio_span = declared_span(self._astream, self._container.format.name)
        self._streams = [s for s in (self._vstream, self._astream) if s is not None]
        self.declared_end = declared_end(self._streams, c.format.name, None if self.is_url else path, len(c.streams))

    # -- capture thread ------------------------------------------------------------------
    def _run(self) -> None:
        import av

        c = self._container
        start_s = c.start_time / 1e6 if c.start_time is not None else None
        self._origin_ns = now_ns()
        self._start_s = start_s
        self._last_t: int | None = None
        self._index = 0
        self._pending: collections.deque[VideoFrame] = collections.deque()
        self._zero_s: float | None = None  # stream time of ring sample 0
        self._real_pos: int | None = None  # ring index of the next decoded sample (None before any)
        self._audio_ended = False  # the track's declared end has passed: frames after it get silence
        self._frame_s = 0.05  # duration of the last decoded audio frame (s): slack for the declared end
        self._resampler = None  # av.AudioResampler to planar float at the source rate
        self._resampler_key: tuple | None = None  # the (format, layout, rate) it was made for
        self._pending_bytes = 0  # lossless: image bytes of the frames waiting for their audio
        self._timeline = PtsTimeline(1.0 / (self.fps or 25.0))  # video PTS across discontinuities
        self._soxr: Any = None
        self._soxr_rate = 0
        self._failed_in_row: dict[int, int] = {}  # stream index -> packets in a row that failed to decode
        end = MediaEnd(self.path, self.is_url, self.read_timeout_s, self.declared_end)
        try:
            for packet in c.demux(*self._streams):
                if self._stop.is_set():
                    return
                end.note(packet)
                for frame in self._decode(packet):
                    if isinstance(frame, av.VideoFrame):
                        self._on_video(frame)
                    else:
                        self._on_audio(frame)
                    if self._stop.is_set():
                        return
        except av.error.FFmpegError as exc:
            if self._stop.is_set():
                return  # closed while a read was blocked: not a failure
            self._finish_stream()  # the frames decoded before the failure still reach the consumer
            raise end.failed(exc, self._index) from exc
        except Exception:
            if not self._stop.is_set():
                self._finish_stream()  # whatever failed, the frames decoded before it still go out
            raise
        self._finish_stream()
        if (early := end.ended_early(self._index)) is not None:  # e.g. a cut Matroska file: after its frames
            raise early

    def _decode(self, packet: Any) -> list:
        """The packet's frames; a URL's packet that fails to decode is skipped and counted (see the module doc)."""
        import av

        index = packet.stream.index
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            in_row = self._failed_in_row.get(index, 0) + 1
            if not self.is_url or in_row > _MAX_DECODE_ERRORS:
                raise
            self._failed_in_row[index] = in_row
            self._count("decode_errors")
            return []
        self._failed_in_row[index] = 0
        return frames

    def _finish_stream(self) -> None:
        """No audio will come any more: finish the ring and hand over the frames still waiting for it."""
        self._flush_audio()
        self.audio.finish()  # the last frames must not wait for audio
        self._flush_pending(force=True)

    def _clock(self, time_s: float) -> int:
        if self._start_s is None:
            self._start_s = time_s
        return self._origin_ns + int(round((time_s - self._start_s) * 1e9))

    def _pace(self, t_ns: int) -> None:
        if self.realtime and (delay := (t_ns - now_ns()) * 1e-9) > 0:
            self._stop.wait(delay)

    def _on_video(self, frame: Any) -> None:
        time_s = frame.time
        if time_s is None:  # no PTS: fall back to the nominal rate
            time_s = (self._start_s or 0.0) + self._index / (self.fps or 25.0)
        audio_s = None if self._real_pos is None else self._zero_s + self._real_pos / self.audio.sample_rate
        time_s, jumped = self._timeline.place(time_s, audio_s)
        if jumped:
            self._count("pts_jumps")
        t_ns = self._clock(time_s)
        if self._last_t is not None and t_ns <= self._last_t:  # broken PTS: keep the stream monotonic
            t_ns = self._last_t + 1
            self._count("pts_fixes")
        self._last_t = t_ns
        image = upright(frame.to_ndarray(format="rgb24"), frame.rotation)  # (H, W, 3) uint8, as a player shows it
        vf = VideoFrame(image=image, t_ns=t_ns, wall_time=wall_time(t_ns), index=self._index)
        self._index += 1
        self._pace(t_ns)
        self._count("frames")
        if self._no_audio_at(time_s):
            self._fill_to(t_ns)
        if self.lossless:
            self._pending.append(vf)
            self._pending_bytes += image.nbytes
            self._flush_pending(force=len(self._pending) > _MAX_PENDING or self._pending_bytes > _MAX_PENDING_BYTES)
        else:
            self.frames.push(vf)

    def _on_audio(self, frame: Any) -> None:
        import av
        import soxr

        if self._real_pos is None:  # the first audio frame places the ring
            first_s = frame.time if frame.time is not None else (self._start_s or 0.0)
            if self._zero_s is None:
                self._zero_s = first_s
            self._real_pos = max(0, round((first_s - self._zero_s) * self.audio.sample_rate))
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self._resampler is None or key != self._resampler_key:  # PyAV's resampler keeps its first input format
            self._resampler = av.AudioResampler(format="fltp")  # keeps layout and rate
            self._resampler_key = key
        self._frame_s = frame.samples / (frame.sample_rate or 1)
        for out in self._resampler.resample(frame):
            rate = out.sample_rate
            if self._soxr is None or rate != self._soxr_rate:
                self._flush_audio()
                self._soxr = soxr.ResampleStream(rate, self.audio.sample_rate, 1, dtype="float32", quality="HQ")
                self._soxr_rate = rate
            planar = out.to_ndarray()  # (channels, n) float32
            mono = to_mono(planar.T, channels_last=True)  # (n,); a last frame may hold 1 sample
            self._write_audio(self._soxr.resample_chunk(mono))

    def _flush_audio(self) -> None:
        if self._soxr is not None:
            self._write_audio(self._soxr.resample_chunk(np.zeros(0, np.float32), last=True))
            self._soxr = None

    def _ring_t(self, k: int) -> int:
        """Clock time (ns) at which ring sample k starts (= where sample k - 1 ends)."""
        return self._clock(self._zero_s) + k * 1_000_000_000 // self.audio.sample_rate

    def _write_audio(self, samples: np.ndarray) -> None:
        """Write decoded 16 kHz samples at their place on the ring (after any silence before them)."""
        if samples.size == 0:
            return
        k, head = self._real_pos, self.audio.head
        self._real_pos += samples.size
        if k < head:  # this time was already filled with silence: the header's span was wrong
            drop = min(samples.size, head - k)
            self._count("audio_dropped", drop)
            samples, k = samples[drop:], k + drop
            if samples.size == 0:
                return
            if self._audio_ended:  # audio past the declared end: trust the audio, not the header
                self._audio_ended, self.audio_span = False, (self.audio_span[0], None)
        elif k > head:  # the audio starts later than the ring reaches: silence up to it
            self._pace(self._ring_t(k))
            self.audio.fill(k - head, self._ring_t(k))
            self._count("audio_filled", k - head)
        t_end = self._ring_t(k + samples.size)
        self._pace(t_end)
        self.audio.write(np.ascontiguousarray(samples, dtype=np.float32), t_end)
        self._count("audio_samples", samples.size)
        if self.lossless:
            self._flush_pending()

    def _no_audio_at(self, time_s: float) -> bool:
        """True when no audio will come for stream time `time_s`: the file has no audio track, the
        track starts after it (header), or it is past the track's end and that audio is written."""
        start, end = self.audio_span
        if self._astream is None:
            return True
        if self._real_pos is None:  # an offset under _LATE_START_S is encoder delay, not a late start
            return start is not None and time_s < start and start - self._start_s >= _LATE_START_S
        if not self._audio_ended and end is not None and time_s > end:
            # The declared end has passed once the decoded audio reaches it (within one audio frame).
            if self._ring_t(self._real_pos) >= self._clock(end - self._frame_s):
                self._flush_audio()  # the track is over: the resampler's held-back samples are its last
                self._audio_ended = True
        return self._audio_ended

    def _ring_index(self, t_ns: int) -> int:
        """Ring sample index of clock time `t_ns` (the inverse of _ring_t, rounded)."""
        return round((t_ns - self._clock(self._zero_s)) * self.audio.sample_rate / 1e9)

    def _fill_to(self, t_ns: int) -> None:
        """Write silence from the ring's end up to clock time `t_ns` (stamps the clock when empty)."""
        if self._zero_s is None:
            self._zero_s = self._start_s  # the ring starts with the stream, before any audio
        k = self._ring_index(t_ns)
        n = k - self.audio.head
        if n > 0 or (n == 0 and self.audio.head == 0):
            self.audio.fill(n, self._ring_t(k))
            self._count("audio_filled", n)

    def _flush_pending(self, force: bool = False) -> None:
        """Lossless mode: hand over the frames whose audio (or silence) is written (all of them if `force`)."""
        while self._pending and not self._stop.is_set():
            frame = self._pending[0]
            written = self._zero_s is not None and self._ring_index(frame.t_ns) <= self.audio.head
            if not (force or written):
                return
            if self.frames.push(frame, block=True, timeout=0.1):
                self._pending_bytes -= self._pending.popleft().image.nbytes

    def _on_end(self) -> None:
        self.audio.finish()
        self.frames.finish()
        if self._stop.is_set():  # closed: a read that outlived close()'s join left the container to this thread
            self._close_container()

    def _release(self) -> None:
        if self._thread is None or not self._thread.is_alive():  # else the thread closes it as it ends
            self._close_container()

    def _close_container(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            container.close()

    def counters(self) -> dict[str, int]:
        """frames (decoded), drops (frame ring), audio_samples (16 kHz, decoded), audio_filled (16 kHz samples
        of silence for times without audio), audio_dropped (decoded samples for a time already filled),
        pts_fixes (a frame stamped before the last: moved 1 ns after it), pts_jumps (discontinuities closed
        up), decode_errors (URL packets that failed to decode, skipped), reconnects, overflows."""
        out = super().counters()
        out["drops"] = self.frames.drops
        return out
