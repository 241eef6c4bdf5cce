"""When things happen in a media stream: what its header declares, and its video on one timeline.

- :func:`declared_span`: where an audio track starts and ends, as the container header states it.
- :func:`declared_end`: where an MP4/MOV or Matroska/WebM input ends, as its header states it.
- :class:`PtsTimeline`: video PTS on one continuous timeline across discontinuities (an encoder
  restart, a spliced live feed: MPEG-TS timestamps restart or leap), as the audio, whose samples
  are taken to be contiguous, continues.
"""

from __future__ import annotations

from typing import Any

from streamavs.capture.matroska import segment_duration_s

__all__ = ["declared_span", "declared_end", "PtsTimeline", "MAX_PTS_JUMP_S"]

MAX_PTS_JUMP_S = 1.0  # video PTS moving further than this (back, or ahead of the audio) is a discontinuity
# Containers whose header states a track's duration (FFmpeg's demuxer names). For others FFmpeg estimates
# one from the timestamps or the bit rate, which a spliced MPEG-TS (timestamps that restart) gets wrong.
_STATED_DURATION_FORMATS = frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm"})
# Matroska states a track's end in its DURATION tag only: a stream duration there is FFmpeg's estimate
# from the bit rate (a live recording, whose header states no length).
_MATROSKA_FORMATS = frozenset({"matroska", "webm"})


def declared_span(stream: Any, container_format: str) -> tuple[float | None, float | None]:
    """(start, end) of an audio track in stream seconds as its container header states them
    (None where it says nothing): MP4 gives start and duration, Matroska a DURATION tag
    ("H:MM:SS.nnnnnnnnn") holding the track's end time. `container_format`: FFmpeg's name of the
    demuxer (``container.format.name``, e.g. "mov,mp4,m4a,3gp,3g2,mj2"); in other containers the
    end is taken as unknown, because FFmpeg's duration there is an estimate."""
    tb = stream.time_base
    start = float(stream.start_time * tb) if stream.start_time is not None and tb else None
    names = container_format.split(",")
    if _STATED_DURATION_FORMATS.isdisjoint(names):
        return start, None
    if stream.duration is not None and tb and _MATROSKA_FORMATS.isdisjoint(names):
        return start, (start or 0.0) + float(stream.duration * tb)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    try:
        h, m, sec = str(tag).split(":")
        return start, int(h) * 3600 + int(m) * 60 + float(sec)
    except ValueError:
        return start, None


def declared_end(streams: list[Any], container_format: str, path: str | None, tracks: int) -> float | None:
    """Stream seconds at which an input's `streams` (the ones read, of the file's `tracks`) end, as
    its header states: the last of their stated ends (:func:`declared_span`: an MP4/MOV track's
    duration, a Matroska/WebM DURATION tag); for Matroska/WebM where a track has none, the Segment
    Duration read from the file at `path` (None for a URL), which covers every track, so only where
    `streams` are all the file holds (a subtitle track may run on past the picture and sound). None
    where the header states nothing (a live recording, a fragmented MP4 without durations, MPEG-TS
    and the other containers FFmpeg estimates a length for)."""
    names = container_format.split(",")
    if _STATED_DURATION_FORMATS.isdisjoint(names):
        return None
    ends = [declared_span(stream, container_format)[1] for stream in streams]
    if ends and None not in ends:
        return max(ends)
    if _MATROSKA_FORMATS.isdisjoint(names) or path is None or len(streams) < tracks:
        return None
    return segment_duration_s(path)


class PtsTimeline:
    """Video frame times (stream seconds) with discontinuities closed up: after one, the stream
    continues one frame period after the last frame.

    A discontinuity is going back more than MAX_PTS_JUMP_S, or going ahead that much further than
    the decoded audio reaches. A still stretch of variable-frame-rate video has its audio in
    between, so its gap stays: that is real time. Without audio a leap ahead is taken as real time.
    """

    def __init__(self, frame_period_s: float) -> None:
        self.frame_period_s = frame_period_s
        self.offset_s = 0.0  # added to every PTS since the last discontinuity
        self.last_s: float | None = None  # the last frame's time on the timeline

    def place(self, pts_s: float, audio_s: float | None) -> tuple[float, bool]:
        """(time of the frame at `pts_s` on the timeline, whether a discontinuity was closed up);
        `audio_s`: where the decoded audio reaches on the same timeline (None before any audio)."""
        time_s, last = pts_s + self.offset_s, self.last_s
        back = last is not None and time_s - last < -MAX_PTS_JUMP_S
        ahead = (last is not None and audio_s is not None and time_s - last > MAX_PTS_JUMP_S
                 and time_s - audio_s > MAX_PTS_JUMP_S)
        if back or ahead:
            shift = last + self.frame_period_s - time_s
            self.offset_s += shift
            time_s += shift
        self.last_s = time_s
        return time_s, back or ahead
