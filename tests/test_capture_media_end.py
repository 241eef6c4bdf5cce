"""MediaSource at the end of a file, on real media made by ffmpeg and cut with plain byte truncation
(an interrupted download or copy, as ``head -c``).

A Matroska/WebM file cut off part-way hands over every frame decoded before the cut, then says the
file may be truncated, as a truncated MP4 does, also one cut exactly between two packets (FFmpeg
then ends it as if it were complete). A complete file (one whose audio ends before its video too)
and a live recording, whose header states no length, end without a word.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import av
import pytest
from media import _run, count_video_frames, make_partial_audio, make_piped_video, make_video, truncate

from streamavs.capture.media import MediaSource
from streamavs.errors import SourceError

SECONDS = 3.0  # every file here is 3 s of 25 fps video: 75 frames
STATED = ["mkv", "webm", "mkv-segment-duration-only"]  # headers that state the length
UNSTATED = ["piped-mkv", "piped-mkv-bit-rate"]  # live recordings: the header states no length


@pytest.fixture(scope="module")
def files(tmp_path_factory, ffmpeg) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("end")
    out = {
        "mkv": make_video(d / "whole.mkv", seconds=SECONDS),
        "webm": make_video(d / "whole.webm", seconds=SECONDS, vcodec="libvpx", acodec="libopus", audio_rate=48000),
        "mkv-audio-ends-early": make_partial_audio(d / "audio_ends_early.mkv", SECONDS, audio_end_s=1.5),
        "piped-mkv": make_piped_video(d / "piped.mkv", SECONDS),
        "piped-mkv-bit-rate": make_piped_video(d / "piped_bit_rate.mkv", SECONDS, vcodec="mpeg4", acodec="mp2"),
        "mp4-audio-ends-early": make_partial_audio(d / "audio_ends_early.mp4", SECONDS, audio_end_s=1.5),
    }
    # An MP4 with its index in front (as made for streaming): a cut leaves it readable up to the cut.
    made = make_video(d / "made.mp4", seconds=SECONDS)
    out["mp4"] = d / "whole.mp4"
    _run(["-i", str(made), "-c", "copy", "-movflags", "+faststart", str(out["mp4"])])
    # Without the tracks' DURATION tags (renamed, same length) only the Segment Duration states the
    # length, as in files whose tags sit at the end (mkvmerge's) once they are cut off.
    data = out["mkv"].read_bytes()
    assert data.count(b"DURATION") == 2, "expected one DURATION tag per track"
    out["mkv-segment-duration-only"] = d / "segment_duration_only.mkv"
    out["mkv-segment-duration-only"].write_bytes(data.replace(b"DURATION", b"DURATIOX"))
    # The same without DURATION tags, with a subtitle track whose last cue ends at 5 s: the Segment
    # Duration (5 s) covers it, and says nothing of where the picture and sound end.
    srt = d / "late.srt"
    srt.write_text("1\n00:00:00,500 --> 00:00:01,000\nhello\n\n2\n00:00:04,500 --> 00:00:05,000\nlate\n")
    subtitled = d / "subtitled.mkv"
    _run(["-i", str(out["mkv"]), "-i", str(srt), "-map", "0", "-map", "1", "-c", "copy", "-c:s", "srt", str(subtitled)])
    data = subtitled.read_bytes()
    assert data.count(b"DURATION") == 3, "expected one DURATION tag per track"
    out["mkv-subtitles-past-the-end"] = d / "subtitles_past_the_end.mkv"
    out["mkv-subtitles-past-the-end"].write_bytes(data.replace(b"DURATION", b"DURATIOX"))
    return out


def read_all(path: Path) -> tuple[int, SourceError | None]:
    """(frames handed over, the error check() raises at the end or None), read losslessly as fast as possible."""
    src = MediaSource(path, realtime=False, lossless=True).start()
    frames, deadline = 0, time.monotonic() + 60  # liveness only
    try:
        while not (src.frames.finished and len(src.frames) == 0):
            assert time.monotonic() < deadline, f"{path.name} never ended"
            if src.frames.take(timeout=0.5, newest=False) is not None:
                frames += 1
        try:
            src.check()
        except SourceError as exc:
            return frames, exc
        return frames, None
    finally:
        src.close()


@pytest.mark.parametrize("kind", STATED)
def test_a_file_cut_off_part_way_says_so_after_its_frames(files, kind):
    cut = truncate(files[kind], 0.6)
    frames, error = read_all(cut)
    assert frames == count_video_frames(cut) > 10  # every frame before the cut reached the consumer first
    assert error is not None, "a file that ends 1 s before its header's end ended without a word"
    message = str(error)
    assert message.startswith(f"decoding '{cut}' ended after {frames} frames")
    assert "the file may be truncated" in message and "ffmpeg -i FILE -c copy OUT.mkv" in message
    ended_s, stated_s = map(float, re.search(r"at ([\d.]+) s of the ([\d.]+) s its header states", message).groups())
    assert ended_s < 0.75 * SECONDS and stated_s == pytest.approx(SECONDS, abs=0.05)


@pytest.mark.parametrize("kind", STATED + ["mkv-audio-ends-early", "mkv-subtitles-past-the-end", "mp4",
                                  "mp4-audio-ends-early"] + UNSTATED)
def test_a_complete_file_ends_without_a_word(files, kind):
    assert read_all(files[kind]) == (75, None)


def test_an_mp4_cut_between_two_packets_says_so_after_its_frames(files):
    """FFmpeg's MP4 demuxer fails on a packet cut in two, but ends a file cut exactly between two
    packets as if it were complete; the tracks' durations in its header say otherwise."""
    with av.open(str(files["mp4"])) as c:
        starts = sorted(p.pos for p in c.demux() if p.pos is not None and p.pos >= 0)
    data = files["mp4"].read_bytes()
    boundary = next(pos for pos in starts if pos >= 0.6 * len(data))  # the first packet past 60% of the bytes
    cut = files["mp4"].with_name("cut_between_packets.mp4")
    cut.write_bytes(data[:boundary])
    frames, error = read_all(cut)
    assert frames == count_video_frames(cut) > 10
    assert error is not None, "an MP4 cut between two packets ended without a word"
    assert "the file may be truncated" in str(error)
    ended_s, stated_s = map(float, re.search(r"at ([\d.]+) s of the ([\d.]+) s its header states", str(error)).groups())
    assert ended_s < 0.8 * SECONDS and stated_s == pytest.approx(SECONDS, abs=0.05)


@pytest.mark.parametrize("kind", UNSTATED)
def test_a_cut_live_recording_ends_without_a_word(files, kind):
    """Its header states no length, so nothing says where it should end; FFmpeg's estimate from the bit
    rate and the file size (8 s for the complete 3 s of mpeg4 + mp2) is no statement either."""
    cut = truncate(files[kind], 0.6)
    frames, error = read_all(cut)
    assert error is None and frames == count_video_frames(cut)
    with MediaSource(cut, realtime=False) as src:
        assert src.audio_span[1] is None and src.declared_end is None


def test_the_segment_duration_is_read_from_the_header(files, tmp_path):
    from streamavs.capture.matroska import segment_duration_s

    for kind in ("mkv", "webm"):
        with av.open(str(files[kind])) as c:
            assert segment_duration_s(files[kind]) == pytest.approx(c.duration / 1e6, abs=1e-3)
    cut = truncate(files["mkv"], 0.1)
    assert segment_duration_s(cut) == pytest.approx(3.02, abs=0.01)  # the header is at the front
    assert segment_duration_s(files["piped-mkv"]) is None  # a live recording states none
    mp4, empty = make_video(tmp_path / "a.mp4", seconds=1.0), tmp_path / "empty.mkv"
    empty.write_bytes(b"")
    assert segment_duration_s(mp4) is None and segment_duration_s(empty) is None
    assert segment_duration_s(truncate(files["mkv"], 0.0005)) is None  # cut inside the header: nothing stated
