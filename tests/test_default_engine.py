"""The shipped synthetic-benchmark engine, end to end: a real MP4 through `streamavs run --input`, and its manifest.

A 44.1 kHz stereo H.264 + AAC file made with ffmpeg from the generator's scene: the source is
silent for the first 3 s, then sounds. Run as fast as possible, every frame must arrive as one
message, in order, with its audio window ending at the frame, and the masks must be (nearly)
empty while nothing sounds and segment the source once it does.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

import streamavs.engines
from streamavs.engine.base import SYNTHETIC_ENGINE

from media import assert_every_frame_arrived, run_and_subscribe
from test_engine_eval import assert_eval_reproduces_manifest

MANIFEST = Path(streamavs.engines.__file__).resolve().parent / f"{SYNTHETIC_ENGINE}.json"
pytestmark = pytest.mark.skipif(not MANIFEST.is_file(), reason="the synthetic engine is not in streamavs/engines/")

SECONDS, SOUND_STARTS, FPS = 8, 3.0, 10



@pytest.fixture(scope="module")
def demo_mp4(tmp_path_factory, ffmpeg) -> Path:
    from streamavs.cli import main

    out = tmp_path_factory.mktemp("demo") / "demo.mp4"
    assert main(["data", "video", "--out", str(out), "--seconds", str(SECONDS),
                 "--sound-starts", str(SOUND_STARTS), "--fps", str(FPS), "--audio-rate", "44100"]) == 0
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate,channels",
                            "-of", "json", str(out)], capture_output=True, text=True, check=True)
    streams = {s["codec_name"]: s for s in json.loads(probe.stdout)["streams"]}
    assert streams["aac"]["sample_rate"] == "44100" and streams["aac"]["channels"] == 2 and "h264" in streams
    return out


@pytest.mark.slow  # moved from the default step (2026-12-01, seventh session) to keep it under 5 minutes
def test_run_input_file_empty_before_the_sound_and_segmented_after(demo_mp4):
    msgs, code, err = run_and_subscribe(["--input", str(demo_mp4), "--fast", "--engine", SYNTHETIC_ENGINE])
    assert code == 0, err[-2000:]

    n = SECONDS * FPS
    assert_every_frame_arrived(msgs, n)
    t0 = msgs[0].t_capture - (msgs[0].seq + 1) / FPS  # frame k (from 0) is shown at PTS k / FPS
    for m in msgs:
        assert abs(m.audio_window[1] - m.t_capture) <= 1.0 / FPS
        assert m.audio_window[1] - m.audio_window[0] == pytest.approx(1.0, abs=1e-3)
    area = np.array([float((m.mask >= 0.5).mean()) for m in msgs])  # (n,) predicted foreground share
    pts = np.array([m.t_capture - t0 for m in msgs])
    silent = pts < SOUND_STARTS - 0.05  # the whole 1 s window is before the onset... or partly:
    sounding = pts > SOUND_STARTS + 1.0  # a full second of the sound in the window
    assert area[silent].mean() < 0.01, f"masks before the sound: {area[silent].round(3)}"
    assert area[sounding].mean() > 0.02, f"masks after the sound: {area[sounding].round(3)}"
    sounding_score = np.array([m.sounding for m in msgs])
    assert sounding_score[sounding].mean() > sounding_score[silent].mean() + 0.3


@pytest.mark.slow  # 400 frames at 224 px
def test_manifest_metrics_match_a_fresh_eval(tmp_path):
    """The robust metrics stored in the manifest are what `streamavs eval --engine` measures on the
    engine itself, without torch."""
    assert_eval_reproduces_manifest(MANIFEST, tmp_path)
