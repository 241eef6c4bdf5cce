"""MediaSource on real files encoded by ffmpeg: frames, 16 kHz audio, timing, errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
from media import (
    count_video_frames,
    make_mkv_mono48k,
    make_mp4_tone,
    make_partial_audio,
    make_unknown_codec,
    make_wrong_audio_end,
    make_video_only,
    make_wav,
)

from streamavs.buffers import AudioRing
from streamavs.pairing import Pairer
from streamavs.capture.base import Source
from streamavs.capture.media import MediaSource
from streamavs.errors import SourceError

SR = 16000


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory, ffmpeg):
    d = tmp_path_factory.mktemp("media")
    make_mp4_tone(d, seconds=3.0, onset_s=1.0)
    make_mkv_mono48k(d, seconds=2.0, onset_s=0.5)
    return d


def drain(src: MediaSource, timeout: float = 20.0) -> list:
    frames = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        src.check()
        f = src.frames.take(timeout=0.5, newest=False)
        if f is None and src.frames.finished:
            break
        if f is not None:
            frames.append(f)
    src.check()
    return frames


def onset_sample(x: np.ndarray, level: float = 0.1) -> int:
    return int(np.flatnonzero(np.abs(x) > level)[0])


def peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spec) * rate / x.size)


def test_mp4_aac_44k_stereo_all_frames_audio_and_onset(media_dir):
    path = media_dir / "tone.mp4"
    with MediaSource(path, realtime=False, lossless=True) as src:
        frames = drain(src)
        audio = src.audio
        counters = src.counters()
    assert len(frames) == count_video_frames(path) == 75
    assert counters["frames"] == 75 and counters["drops"] == 0
    assert src.audio_rate == 44100 and src.fps == 25.0
    assert frames[0].image.shape == (120, 160, 3) and frames[0].image.dtype == np.uint8
    t = np.array([f.t_ns for f in frames])
    assert (np.diff(t) > 0).all()
    np.testing.assert_allclose(np.diff(t), 40e6, atol=1e5)  # 25 fps from the PTS
    assert [f.index for f in frames] == list(range(75))
    assert abs(audio.head - 3 * SR) <= 0.01 * 3 * SR
    x, gap = audio.read(audio.head, audio.head)
    assert not gap and x.dtype == np.float32
    assert abs(onset_sample(x) - SR) <= 0.020 * SR  # tone starts at 1.0 s, within 20 ms
    assert abs(peak_hz(x[int(1.2 * SR) : int(2.8 * SR)], SR) - 1000) < 2
    assert 0.45 < np.abs(x[int(1.5 * SR) : int(2.5 * SR)]).max() < 0.55  # average of equal channels keeps 0.5
    # The audio clock agrees with the video PTS: the frame at 1.0 s maps to sample 16000.
    assert abs(audio.sample_at(frames[25].t_ns) - SR) <= 0.020 * SR


def test_mkv_48k_mono_through_the_lossless_pairer(media_dir):
    path = media_dir / "mono48k.mkv"
    with MediaSource(path, realtime=False, lossless=True) as src:
        pairer = Pairer(src.frames, src.audio, lossless=True, max_wait_s=2.0)
        pairs = []
        while (p := pairer.next_pair(timeout=5)) is not None:
            pairs.append(p)
        src.check()
    assert len(pairs) == count_video_frames(path) == 30
    assert src.audio_rate == 48000
    assert abs(src.audio.head - 2 * SR) <= 0.01 * 2 * SR
    # Frames from 1 s on have a full window; the tone (from 0.5 s) sits at its end-aligned place.
    late = [p for p in pairs if p.frame.t_ns - pairs[0].frame.t_ns >= 1_000_000_000]
    assert late and not any(p.audio_gap for p in late)
    assert all(p.audio.shape == (SR,) for p in pairs)
    p = late[0]  # frame at 1.0 s: window [0, 1) s, tone from 0.5 s = sample 8000 of the window
    assert abs(onset_sample(p.audio) - SR // 2) <= 0.020 * SR
    assert pairs[0].audio_gap and pairs[0].missed == 0  # the first window reaches before the stream start
    assert not any(p.waited for p in pairs)  # lossless: a frame is handed over once its audio is written


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_audio_track_shorter_than_the_video_is_filled_with_silence_without_waiting(tmp_path, ffmpeg, ext):
    # MP4 states the track's start and duration, Matroska its end in a DURATION tag.
    late = make_partial_audio(tmp_path / f"late.{ext}", 3.0, audio_start_s=1.0, audio_end_s=2.0)
    with MediaSource(late, realtime=False, lossless=True) as src:
        pairer = Pairer(src.frames, src.audio, lossless=True, max_wait_s=5.0)  # a wait would show
        pairs = []
        while (p := pairer.next_pair(timeout=5)) is not None:
            pairs.append(p)
        src.check()
        counters = src.counters()
    start, end = src.audio_span
    assert abs(start - 1.0) < 0.03 and abs(end - 2.0) < 0.03  # AAC's encoder delay: ~24 ms
    assert len(pairs) == 75 and not any(p.waited for p in pairs) and counters["audio_dropped"] == 0
    real, first = counters["audio_samples"], round(start * SR)  # the track: ring samples [first, first + real)
    assert abs(real - SR) <= 0.05 * SR
    assert counters["audio_filled"] == 74 * 640 - real  # silence up to the last frame (at 2.96 s) but the track
    t0 = pairs[0].frame.t_ns
    for p in pairs:
        end_sample = round((p.window_ns[1] - t0) * SR / 1e9)
        assert end_sample == round((p.frame.t_ns - t0) * SR / 1e9)
        audio_part = max(0, min(end_sample, first + real) - max(end_sample - SR, first))
        assert p.missed == min(SR, end_sample) - audio_part  # everything after the stream start but the track
        assert p.padded == p.missed + max(0, SR - end_sample)
    p = pairs[38]  # frame at 1.52 s: the tone (the whole track) starts (1.52 - start) s before the window's end
    assert abs(onset_sample(p.audio) - (first - (38 * 640 - SR))) <= 0.030 * SR
    assert not p.audio[: first - (38 * 640 - SR)].any()


def test_audio_past_a_wrong_declared_end_wins_over_the_header(tmp_path):
    path = make_wrong_audio_end(tmp_path)  # Matroska whose header says the audio ends at 0.5 s; it goes on to 3 s
    with MediaSource(path, realtime=False, lossless=True) as src:
        assert src.audio_span[1] == pytest.approx(0.5)  # what the header said at open
        pairer = Pairer(src.frames, src.audio, lossless=True, max_wait_s=5.0)
        pairs = []
        while (p := pairer.next_pair(timeout=5)) is not None:
            pairs.append(p)
        src.check()
        counters = src.counters()
    assert len(pairs) == 75 and not any(p.waited for p in pairs)
    # Silence went in after 0.5 s until the next audio packet, whose overlap was dropped; then the
    # header's end was dropped instead and the audio went on: at most one video frame was lost.
    assert 0 < counters["audio_dropped"] == counters["audio_filled"] <= 640
    assert src.audio_span[1] is None
    assert not any(p.missed for p in pairs[40:])  # from 1.6 s on the windows hold only audio


def test_realtime_paces_to_the_pts_and_close_is_quick(media_dir):
    path = media_dir / "mono48k.mkv"
    src = MediaSource(path, realtime=True)
    t0 = time.monotonic()
    with src:
        while not src.eof and time.monotonic() - t0 < 5:
            time.sleep(0.02)
        src.check()
    elapsed = time.monotonic() - t0
    assert 1.8 < elapsed < 4.5  # a 2 s file is not played faster than its PTS (the upper bound: liveness)
    assert src.counters()["frames"] == 30
    # Closing in the middle of playback stops it (it does not play the file out), twice.
    src = MediaSource(path, realtime=True).start()
    time.sleep(0.2)
    t0 = time.monotonic()
    src.close()
    src.close()
    assert time.monotonic() - t0 < 5.0  # liveness; the 1 s join bound is the source's own
    assert src.counters()["frames"] < 30, "close played the file to its end"
    assert src.eof and src.frames.finished and src.audio.finished


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist.*check the path"):
        MediaSource(tmp_path / "nope.mp4").start()


def test_file_without_audio_is_refused(tmp_path, ffmpeg):
    path = make_video_only(tmp_path)
    with pytest.raises(SourceError, match="has no audio track.*ffprobe"):
        MediaSource(path).start()


def test_audio_only_wav_is_refused(tmp_path, ffmpeg):
    path = make_wav(tmp_path / "a.wav")
    with pytest.raises(SourceError, match="has no video track"):
        MediaSource(path).start()


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "garbage.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(SourceError, match="cannot open .*FFmpeg can read"):
        MediaSource(path).start()


def test_undecodable_codec_is_a_clear_error(tmp_path, ffmpeg):
    # PyAV 18 segfaulted here when the stream was touched after its container had been closed.
    path = make_unknown_codec(tmp_path)
    with pytest.raises(SourceError, match=r"video track \(stream #0\) uses a codec this FFmpeg cannot decode.*re-encode"):
        MediaSource(path).start()


class _Failing(Source):
    name = "failing"

    def _run(self) -> None:
        try:
            raise OSError("device unplugged")
        except OSError as exc:
            raise KeyError("while reading") from exc


def test_thread_errors_are_reraised_in_the_consumer_with_their_cause():
    with _Failing() as src:
        src._thread.join(1)
        assert src.eof
        with pytest.raises(SourceError, match="failing capture thread failed: KeyError") as info:
            src.check()
    assert isinstance(info.value.__cause__, KeyError)
    assert isinstance(info.value.__cause__.__cause__, OSError)


def test_audio_ring_can_be_shared(media_dir):
    ring = AudioRing(capacity_s=5.0)
    with MediaSource(media_dir / "mono48k.mkv", realtime=False, lossless=True, audio=ring) as src:
        drain(src)
    assert src.audio is ring and ring.head > 1.9 * SR
