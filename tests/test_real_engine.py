"""The shipped real-object engine on real media: a real scene through `streamavs run --input`, and its manifest.

The scene is the README demo's: a dog (a Tux Paint photograph cut out by its alpha channel) on
a held-out monument photograph beside a silent violin; the dog is silent for 3 s, then barks
with a recording the engine never heard in training (GCompris). Encoded by ffmpeg as H.264 +
AAC 44.1 kHz stereo, run as fast as possible: the masks must stay (nearly) empty before the bark
and cover the dog once a full second of barking is in the window, with the sounding score up.
(The silent violin is masked too once the dog barks: the engine does not yet tell which of
several visible objects sounds; README "Known limitations".)
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import streamavs.engines
from streamavs.engine.base import REAL_ENGINE

from media import assert_every_frame_arrived, run_and_subscribe
from test_engine_eval import assert_eval_reproduces_manifest

MANIFEST = Path(streamavs.engines.__file__).resolve().parent / f"{REAL_ENGINE}.json"
pytestmark = pytest.mark.skipif(not MANIFEST.is_file(), reason="the real-object engine is not in streamavs/engines/")

SECONDS, SOUND_STARTS, FPS = 8, 3.0, 10



@pytest.fixture(scope="module")
def real_demo(tmp_path_factory, ffmpeg, real_media):
    from streamavs.synthetic.video import real_demo_clip, write_video

    clip = real_demo_clip("dog", "violin", SECONDS, SOUND_STARTS, real_media)
    out = write_video(clip, tmp_path_factory.mktemp("real") / "dog.mp4", fps=FPS, audio_rate=44100)
    return clip, out


@pytest.mark.slow  # ~5.6 s: the FP32 engine on 12 s of real media (the default engine's test runs by default)
def test_run_is_silent_before_the_bark_and_segments_the_dog_after(real_demo):
    clip, video = real_demo
    msgs, code, err = run_and_subscribe(["--input", str(video), "--fast", "--engine", REAL_ENGINE])
    assert code == 0, err[-2000:]
    assert_every_frame_arrived(msgs, SECONDS * FPS)
    dog = clip.object_masks[:, int(np.flatnonzero(clip.is_source)[0])]  # (T, H, W) visible dog pixels
    t0 = msgs[0].t_capture - (msgs[0].seq + 1) / FPS  # frame k (from 0) is shown at PTS k / FPS
    before, after, after_dog, area_before = [], [], [], []
    for m in msgs:
        pts = m.t_capture - t0
        second = min(int(pts), SECONDS - 1)
        h, w = dog.shape[1:]
        pred = cv2.resize((m.mask >= 0.5).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        if pts < SOUND_STARTS - 0.05:
            area_before.append(pred.mean())
            before.append(m.sounding)
        elif pts > SOUND_STARTS + 1.0:
            after_dog.append((pred & dog[second]).sum() / dog[second].sum())
            after.append(m.sounding)
    assert np.mean(area_before) < 0.01, f"mask area before the bark: {np.round(area_before, 3)}"
    assert np.mean(after_dog) > 0.4, f"share of the dog masked while it barks: {np.round(after_dog, 2)}"
    assert np.mean(after) > np.mean(before) + 0.3, f"sounding score before {np.mean(before):.2f}, after {np.mean(after):.2f}"


def test_manifest_records_the_media_it_was_trained_on(real_media):
    from streamavs.realmedia.fetch import read_media_index

    media = json.loads(MANIFEST.read_text())["training"]["media"]
    packages = read_media_index(real_media)["packages"]
    assert {k: v["sha256"] for k, v in media["packages"].items()} == {k: v["sha256"] for k, v in packages.items()}
    assert all(v["licence"] for v in media["packages"].values())


@pytest.mark.slow  # 400 frames at 224 px
def test_manifest_metrics_match_a_fresh_eval(real_media, tmp_path):
    """The robust metrics stored in the manifest are what `streamavs eval --engine` measures on the
    engine itself, without torch, on the fetched real media."""
    assert_eval_reproduces_manifest(MANIFEST, tmp_path)
