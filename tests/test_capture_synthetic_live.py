"""SyntheticLiveSource: procedural clips played as a live stream, with ground truth per frame."""

from __future__ import annotations

import time

import numpy as np
import pytest

from blocking import InThread

from streamavs.audio import prepare_waveform
from streamavs.buffers import FrameRing
from streamavs.pairing import Pairer
from streamavs.capture.synthetic_live import SyntheticLiveSource
from streamavs.errors import InputError
from streamavs.synthetic import SceneConfig, generate_clip

SR = 16000
CFG = SceneConfig(image_size=64, seconds=2, state_change_prob=0.5)


def test_fast_lossless_playback_pairs_each_second_with_its_audio_and_mask():
    src = SyntheticLiveSource(CFG, seed=7, fps=4, realtime=False, lossless=True, clips=2)
    clips = [generate_clip(7 + k, CFG) for k in range(2)]
    waves = np.concatenate([prepare_waveform(c.audio, c.sample_rate) for c in clips])  # (64000,)
    with src:
        pairer = Pairer(src.frames, src.audio, lossless=True, max_wait_s=1.0)
        pairs = []
        while (p := pairer.next_pair(timeout=30)) is not None:  # None at once when the stream ends
            pairs.append((p, src.mask_for(p.frame)))
        src.check()
        assert InThread(pairer.next_pair, None).result(timeout=30) is None  # an ended stream is not waited on
    assert [p.frame.index for p, _ in pairs] == list(range(16))  # 2 clips x 2 s x 4 fps
    assert src.counters()["drops"] == 0 and src.audio.head == 4 * SR
    for p, mask in pairs:
        s = src.second_of(p.frame.index)  # 4 frames per second
        assert s == p.frame.index // 4
        clip, t = clips[s // 2], s % 2
        np.testing.assert_array_equal(p.frame.image, clip.frames[t])
        np.testing.assert_array_equal(mask, clip.masks[t])
        assert p.audio_gap == (p.frame.index < 3)  # windows before 1 s reach before the start
    for p, _ in pairs[3::4]:  # the last repeat of second s sits at s + 1 s: its window is exactly second s
        s = src.second_of(p.frame.index)
        np.testing.assert_allclose(p.audio, waves[s * SR : (s + 1) * SR], atol=1e-7)
        assert p.window_ns[1] - p.window_ns[0] == 1_000_000_000


def test_realtime_playback_keeps_time():
    """No frame is delivered before its stamp, the stamps are the schedule (1/fps apart), and a
    1 s stream cannot end before 1 s has passed. Lateness depends on the machine's load, so it has
    only a liveness bound (ten times real time)."""
    frames = FrameRing(capacity=16)  # holds the whole stream: nothing is dropped, however late we take
    taken = []  # (clock when taken, frame)
    t0 = time.monotonic_ns()
    with SyntheticLiveSource(SceneConfig(image_size=32, seconds=1), fps=10, clips=1, frames=frames) as src:
        while (f := frames.take(timeout=30, newest=False)) is not None:  # None once the stream ended
            taken.append((time.monotonic_ns(), f))
        src.check()
    elapsed = time.monotonic_ns() - t0
    assert src.eof and [f.index for _, f in taken] == list(range(10))
    first = taken[0][1]
    for at, f in taken:
        assert at >= f.t_ns, f"frame {f.index} delivered {(f.t_ns - at) / 1e6:.1f} ms before its time"
        assert f.t_ns - first.t_ns == f.index * 100_000_000  # frame n at (n + 1) / fps s of the stream
    assert 10**9 <= elapsed < 10 * 10**9  # the last frame and audio block are due 1 s after the start
    c = src.counters()
    assert c["frames"] == 10 and c["audio_samples"] == SR and c["drops"] == 0


def test_realtime_playback_has_the_next_clip_ready_before_it_is_due():
    # Generating a 224 px clip takes tens of ms; done in the playback thread it made frames late.
    # Prefetched during the previous 1 s clip, it is ready with over 10x margin, even on a loaded machine.
    with SyntheticLiveSource(SceneConfig(seconds=1), fps=30, clips=3) as src:
        deadline = time.monotonic() + 60  # liveness only: the loop ends at the stream's end (3 s)
        while not src.eof and time.monotonic() < deadline:
            time.sleep(0.02)
        src.check()
    c = src.counters()
    assert src.eof and c["clips"] == 3 and c["frames"] == 90
    assert c["clips_late"] == 0


def test_bad_arguments_are_input_errors():
    with pytest.raises(InputError, match="fps > 0"):
        SyntheticLiveSource(fps=0)
