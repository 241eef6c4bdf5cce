"""SyntheticLiveSource: procedural clips played as a live stream, with ground truth per frame."""

from __future__ import annotations

import time

import numpy as np
import pytest

from streamavs.audio import prepare_waveform
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
        while (p := pairer.next_pair(timeout=5)) is not None:
            pairs.append((p, src.mask_for(p.frame)))
        src.check()
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
    t0 = time.monotonic()
    with SyntheticLiveSource(SceneConfig(image_size=32, seconds=1), fps=10, clips=1) as src:
        while not src.eof and time.monotonic() - t0 < 4:
            time.sleep(0.02)
        src.check()
    assert 0.9 < time.monotonic() - t0 < 1.6
    c = src.counters()
    assert c["frames"] == 10 and c["audio_samples"] == SR


def test_realtime_playback_has_the_next_clip_ready_before_it_is_due():
    # Generating a 224 px clip takes tens of ms; done in the playback thread it made frames late.
    t0 = time.monotonic()
    with SyntheticLiveSource(SceneConfig(seconds=1), fps=30, clips=3) as src:
        while not src.eof and time.monotonic() - t0 < 8:
            time.sleep(0.02)
        src.check()
    c = src.counters()
    assert c["clips"] == 3 and c["frames"] == 90
    assert c["clips_late"] == 0


def test_bad_arguments_are_input_errors():
    with pytest.raises(InputError, match="fps > 0"):
        SyntheticLiveSource(fps=0)
