"""How decoding a media input ends, and what the user is told when it ends badly.

:class:`MediaEnd` follows how far the demuxed packets reach and turns the end of MediaSource's demux
loop into an error, or none:

- a failure part-way (FFmpeg raised): a URL that stalled, or a file that is damaged, truncated or
  uses a codec this FFmpeg cannot decode;
- a normal end more than SHORT_END_S before the end the header states (:func:`.media_time.declared_end`,
  MP4/MOV, Matroska/WebM): the file was cut off part-way (an unfinished download or copy), and
  FFmpeg's demuxer ends there as if the file were complete (Matroska's always; MP4's when the cut
  falls between two packets, otherwise decoding fails at the cut).

A complete file (its last track reaches the stated end, also when its audio ends before its video)
and an input whose header states no length (a live recording, MPEG-TS) end without an error.
MediaSource hands over every frame decoded before it raises one of these.
"""

from __future__ import annotations

from typing import Any

from streamavs.errors import SourceError

__all__ = ["MediaEnd", "SHORT_END_S"]

# Ending this much before the stated end is a cut, not rounding (Matroska counts milliseconds) or a
# last packet without a duration (it then reaches one frame less far).
SHORT_END_S = 0.5


class MediaEnd:
    """The end of one decoding pass over `path`; `declared_end_s`: where its header says its streams
    end (stream seconds), None where it says nothing."""

    def __init__(self, path: str, is_url: bool, read_timeout_s: float, declared_end_s: float | None) -> None:
        self.path = path
        self.is_url = is_url
        self.read_timeout_s = read_timeout_s
        self.declared_end_s = declared_end_s
        self.reach_s: float | None = None  # where the demuxed packets reach (PTS + duration), stream seconds

    def note(self, packet: Any) -> None:
        """Take in how far a demuxed `packet` reaches (a flush packet, without a PTS, reaches nowhere)."""
        if packet.pts is not None and packet.time_base:
            end_s = float((packet.pts + (packet.duration or 0)) * packet.time_base)
            if self.reach_s is None or end_s > self.reach_s:
                self.reach_s = end_s

    def failed(self, exc: Exception, frames: int) -> SourceError:
        """The error for FFmpeg's `exc` raised after `frames` video frames were decoded."""
        import av

        if isinstance(exc, av.error.ExitError) and self.is_url:  # a read got no data in time
            return SourceError(
                f"'{self.path}' stopped sending: no data for {self.read_timeout_s:g} s after {frames} "
                "frames; the stream stalled: check the network and the server (ffprobe "
                f"'{self.path}'); the frames before it were processed"
            )
        return SourceError(
            f"decoding '{self.path}' failed after {frames} frames ({exc}); the file may be "
            "truncated or use a codec this FFmpeg cannot decode: re-encode it with ffmpeg"
        )

    def ended_early(self, frames: int) -> SourceError | None:
        """The error for an input that ended normally after `frames` video frames, but more than
        SHORT_END_S before its header's end; None when it reached that end or the header states none."""
        declared, reached = self.declared_end_s, self.reach_s or 0.0
        if declared is None or reached >= declared - SHORT_END_S:
            return None
        return SourceError(
            f"decoding '{self.path}' ended after {frames} frames at {reached:.2f} s of the {declared:.2f} s its "
            "header states; the file may be truncated (cut off part-way, e.g. an unfinished download or copy): "
            "use a complete copy, or remux what is there so that its header says where it ends: "
            "ffmpeg -i FILE -c copy OUT.mkv; the frames before the end were processed"
        )
