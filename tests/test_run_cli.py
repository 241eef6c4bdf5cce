"""`streamavs run`: a file end to end, --record, SIGINT, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from media import (
    alsa_env, alsa_microphone_env, free_port, make_mp4_tone, make_unknown_codec, make_video, make_video_only,
    write_clocked_asoundrc,
)

from streamavs.cli import main
from streamavs.publish import Publisher, Subscriber


@pytest.fixture(scope="module")
def media(tmp_path_factory, ffmpeg) -> Path:
    return tmp_path_factory.mktemp("run-cli-media")


@pytest.fixture(scope="module")
def mp4(media) -> Path:
    """3 s, 25 fps, 160x120 H.264 + AAC 44.1 kHz stereo with a tone from 1 s."""
    return make_mp4_tone(media, seconds=3.0, onset_s=1.0)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["run", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys, *args: str) -> str:
    """Run `streamavs run ARGS`, expect a non-zero exit and exactly one error line; return it."""
    code, _out, err = run_cli(capsys, *args)
    lines = err.strip().splitlines()
    assert code != 0
    assert len(lines) == 1, f"expected one error line, got {lines}"
    assert lines[0].startswith("streamavs: error: ")
    return lines[0]


def bar_length(image: np.ndarray) -> int:
    """Columns of the overlay's green sounding bar, counted from the left edge, in a decoded frame."""
    row = image[-3].astype(int)  # (W, 3) RGB, inside the 4-pixel bar along the bottom edge
    green = (row[:, 1] > 150) & (row[:, 0] < 100) & (row[:, 2] < 100)
    return int(green.size if green.all() else np.argmin(green))


def run_then_signal(args: list[str], start_line: str, sig: int, env=None, masks: int = 5) -> tuple[str, str, list, int]:
    """Start `streamavs run ARGS --publish ADDR` in a subprocess with a Subscriber connected first,
    check its start line (printed once the pipeline runs), wait until `masks` masks arrived, send
    `sig`; returns (stdout, stderr, the masks received before the signal, exit code).

    Waiting for masks instead of a fixed time makes the run provably past its start on a loaded
    machine; the timeouts only bound a run that hangs."""
    address = f"tcp://127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-m", "streamavs", "run", *args, "--publish", address]
    with Subscriber(address) as sub:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            line = proc.stderr.readline()
            assert start_line in line, line + proc.stderr.read()
            received = []
            for _ in range(masks):
                received.append(sub.recv(timeout=30))
                assert received[-1] is not None, "no mask within 30 s of the start line"
            proc.send_signal(sig)
            try:
                out, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"the run did not stop within 30 s of {signal.Signals(sig).name}") from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return out, err, received, proc.returncode


def test_file_runs_to_the_end_and_records_a_playable_overlay_video(capsys, mp4, tiny_engine, tmp_path):
    import av

    out_video = tmp_path / "overlay.mp4"
    address = f"tcp://127.0.0.1:{free_port()}"
    with Subscriber(address, reconnect_s=0.01) as sub:  # connected first: the run (~0.3 s) binds
        code, out, err = run_cli(capsys, "--input", mp4, "--engine", tiny_engine, "--publish", address, "--record", out_video)
        sounding = {}
        while (msg := sub.recv(timeout=2)) is not None:  # all sent before main() returned
            sounding[msg.seq] = msg.sounding
            if msg.seq == 74:
                break
    assert code == 0, err
    assert "final (end of stream)" in out
    assert "frames 75  published 75" in out
    assert "dropped 0  audio gaps 0  audio overflows 0" in out
    for stage in ("capture", "preprocess", "inference", "postprocess", "publish", "total"):
        assert f"\n{stage} " in out
    assert f"recorded 75 frames to {out_video}" in out
    with av.open(str(out_video)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (160, 120)
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 75
    assert float(stream.average_rate) == pytest.approx(25.0)
    with av.open(str(mp4)) as container:
        original = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert bar_length(original) == 0  # no green bar in the source
    # The overlay draws the sounding score s as a green bar along the bottom edge, columns
    # 0..round(s * (W - 1)); frame i of the recording is message seq i (a file run records and
    # publishes every frame). H.264 blurs the bar's end by a pixel or two. The first masks may
    # precede the subscription (the run binds after the subscriber connects); from the first
    # received on, every one arrives, the last ones too (the run lingers for them).
    frames = sorted(sounding)
    assert frames == list(range(frames[0], 75)), "every mask after the subscription arrives"
    for i in frames:
        expected = round(sounding[i] * (160 - 1)) + 1
        assert abs(bar_length(decoded[i]) - expected) <= 3, (i, sounding[i], bar_length(decoded[i]))


LOWEST, HIGHEST = 1e-6, 1.0 - 1e-6  # the extreme thresholds a manifest may state (strictly inside (0, 1))


@pytest.mark.slow  # ~3 s each: a recorded run per threshold
@pytest.mark.parametrize("threshold", [LOWEST, HIGHEST])
def test_overlay_tints_the_pixels_at_the_manifest_mask_threshold(capsys, mp4, tiny_engine, tmp_path, threshold):
    """--record tints the pixels with mask_prob >= the manifest's thresholds.mask, not a fixed 0.5.

    Lowest threshold: every probability of this engine passes, so the whole picture is blended
    half-way with the overlay red. Highest: this engine's masks stay below it, so nothing is tinted,
    where a fixed 0.5 would tint most of its pixels (both checked on the published masks)."""
    import av

    data = json.loads(tiny_engine.read_text())
    data["thresholds"]["mask"] = threshold
    shutil.copy(tiny_engine.with_suffix(".onnx"), tmp_path / "tiny.onnx")
    (tmp_path / "tiny.json").write_text(json.dumps(data))
    out_video = tmp_path / "overlay.mp4"
    address = f"tcp://127.0.0.1:{free_port()}"
    with Subscriber(address, reconnect_s=0.01) as sub:  # connected first: the run (~0.3 s) binds
        code, _out, err = run_cli(capsys, "--input", mp4, "--engine", tmp_path / "tiny.json", "--publish", address,
                                  "--record", out_video)
        masks = {}
        while (msg := sub.recv(timeout=2)) is not None:  # all sent before main() returned
            masks[msg.seq] = msg.mask  # u8: (64, 64) probabilities, rounded to 1/255
    assert code == 0, err
    with av.open(str(out_video)) as container:
        recorded = [f.to_ndarray(format="rgb24").astype(float) for f in container.decode(video=0)]
    with av.open(str(mp4)) as container:
        original = [f.to_ndarray(format="rgb24").astype(float) for f in container.decode(video=0)]
    assert len(recorded) == len(original) == 75
    if threshold == HIGHEST:  # the masks that arrived (the first may precede the subscription), u8 (1/255 steps)
        assert masks and all(m.max() < 1.0 and (m >= 0.5).mean() > 0.5 for m in masks.values())
    else:
        assert masks and all(m.min() > 0.0 for m in masks.values())  # every probability above the lowest threshold
    inside = (slice(20, 110), slice(2, 158))  # below the status text, above the sounding bar, inside the outline
    red = np.array([255.0, 40.0, 40.0])
    for i in range(0, 75, 5):
        tinted, plain = 0.5 * original[i] + 0.5 * red, original[i]
        expected, other = (tinted, plain) if threshold == LOWEST else (plain, tinted)
        closer = np.abs(recorded[i] - expected).sum(-1) < np.abs(recorded[i] - other).sum(-1)  # (H, W)
        assert closer[inside].mean() > 0.95, (i, closer[inside].mean())  # H.264 blurs colour edges


def test_a_run_that_reaches_its_frame_limit_says_so(capsys, mp4, tiny_engine):
    """Reaching --frames is an end of its own (its masks linger), not a stop."""
    code, out, err = run_cli(capsys, "--input", mp4, "--engine", tiny_engine, "--frames", "5",
                             "--publish", f"tcp://127.0.0.1:{free_port()}")
    assert code == 0, err
    assert "final (--frames 5 reached)" in out and "frames 5  published 5" in out


@pytest.mark.parametrize("prefix", ["file://", "file:"])
def test_a_file_url_is_read_as_the_file_it_names(capsys, mp4, tiny_engine, prefix):
    """file:///path and file:path name a local file: read as one (fast, every frame), not refused as
    missing and not treated as a live stream."""
    code, out, err = run_cli(capsys, "--input", f"{prefix}{mp4}", "--engine", tiny_engine, "--frames", "3",
                             "--publish", f"tcp://127.0.0.1:{free_port()}")
    assert code == 0, err
    assert f"{mp4} (as fast as possible, every frame) ->" in err and "frames 3  published 3" in out


@pytest.fixture(scope="module")
def long_mp4(media) -> Path:
    """10 s of the same picture and tone: a real-time run of it is still going when a test signals it."""
    return make_video(media / "long.mp4", seconds=10.0, onset_s=1.0)


def test_sigint_stops_a_realtime_run_and_prints_final_counters(long_mp4, tiny_engine):
    args = ["--input", str(long_mp4), "--realtime", "--engine", str(tiny_engine)]
    out, err, received, returncode = run_then_signal(args, " -> tcp://127.0.0.1:", signal.SIGINT)
    last_seq = received[-1].seq
    assert returncode == 0, err
    assert "SIGINT, stopping" in err
    assert "final (stopped)" in out
    frames = int(out.split("final (stopped):\n")[1].split()[1])
    assert last_seq + 1 <= frames < 250  # at least the masks received before the signal; not the whole file


def test_live_camera_and_microphone_run_until_sigterm(long_mp4, tiny_engine, tmp_path):
    env = alsa_microphone_env(tmp_path)  # a real PortAudio microphone: ALSA's file plugin reading a tone
    # The camera is OpenCV on a file, paced at its frame rate like a camera.
    args = ["--camera", str(long_mp4), "--engine", str(tiny_engine)]
    out, err, received, returncode = run_then_signal(
        args, f"camera {long_mp4} + default microphone -> tcp://127.0.0.1:", signal.SIGTERM, env=env
    )
    last_seq = received[-1].seq
    assert returncode == 0, err
    assert "SIGTERM, stopping" in err
    assert "final (stopped)" in out
    frames = int(out.split("final (stopped):\n")[1].split()[1])
    assert last_seq + 1 <= frames < 250


@pytest.mark.slow  # ~5 s: 4 s of a real-time run
def test_video_delay_pairs_each_frame_with_the_sound_of_its_moment(long_mp4, tiny_engine, tmp_path):
    """--video-delay 1: frames are stamped 1 s before they arrived, so each mask's capture time is at
    least 1 s before its publication, and with a microphone that has a clock (the sound of a moment
    arrives a block after it) the audio window still ends at the capture time: that sound has
    arrived. Without the delay the pairer cuts the window back to the audio that has arrived
    (docs/protocol.md, "Audio window"). Once the window lies after the microphone's first sample,
    it is audio, not padding."""
    write_clocked_asoundrc(tmp_path)
    args = ["--camera", str(long_mp4), "--engine", str(tiny_engine), "--video-delay", "1"]
    _out, err, received, returncode = run_then_signal(
        args, f"camera {long_mp4} (frames 1000 ms late) + default microphone -> tcp://127.0.0.1:", signal.SIGTERM,
        env=alsa_env(tmp_path), masks=100,
    )
    assert returncode == 0, err
    for msg in received:
        assert msg.t_publish - msg.t_capture >= 1.0
        assert msg.audio_window[1] == pytest.approx(msg.t_capture, abs=1e-6)
    # 100 masks of a 25 fps camera span at least 4 s: those 3 s after the first received are past the
    # delay, their 1 s window and the microphone opening after the camera.
    late = [m for m in received if m.t_capture - received[0].t_capture >= 3.0]
    assert len(late) >= 10 and not any(m.audio_padded for m in late), [m.audio_padded for m in late]


def test_show_without_a_display(capsys, monkeypatch, mp4, tiny_engine):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    line = one_line_error(capsys, "--show", "--input", mp4, "--engine", tiny_engine)
    assert "--show needs a display" in line and "--record FILE" in line


def test_missing_file(capsys, tiny_engine, tmp_path):
    line = one_line_error(capsys, "--input", tmp_path / "nope.mp4", "--engine", tiny_engine)
    assert "does not exist" in line and "nope.mp4" in line


def test_file_without_audio_track(capsys, media, tiny_engine):
    line = one_line_error(capsys, "--input", make_video_only(media), "--engine", tiny_engine)
    assert "has no audio track" in line and "needs audio" in line


def test_garbage_file(capsys, tiny_engine, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(4096))
    line = one_line_error(capsys, "--input", junk, "--engine", tiny_engine)
    assert "cannot open" in line and "ffprobe" in line


def test_undecodable_codec(capsys, media, tiny_engine):
    line = one_line_error(capsys, "--input", make_unknown_codec(media), "--engine", tiny_engine)
    assert "cannot decode" in line and "ffmpeg -i IN -c:v libx264" in line


def test_address_in_use(capsys, mp4, tiny_engine):
    with Publisher("tcp://127.0.0.1:*") as other:
        line = one_line_error(capsys, "--input", mp4, "--engine", tiny_engine, "--publish", other.address)
    assert "already in use" in line and "--publish tcp://127.0.0.1:" in line


def test_no_camera_names_input_and_synthetic(capsys, tiny_engine):
    line = one_line_error(capsys, "--camera", "99", "--engine", tiny_engine)
    assert "camera 99" in line and "--input" in line and "--synthetic" in line


def test_no_audio_is_refused_with_the_reason(capsys):
    line = one_line_error(capsys, "--no-audio")
    assert "needs audio" in line and "--mic" in line and "--input" in line


def test_conflicting_inputs(capsys, mp4):
    assert "give one of them" in one_line_error(capsys, "--input", mp4, "--synthetic")
    assert "drop --camera/--mic" in one_line_error(capsys, "--input", mp4, "--mic", "1")
    assert "a camera always runs at real time" in one_line_error(capsys, "--fast")
    assert "--video-delay applies to --camera" in one_line_error(capsys, "--input", mp4, "--video-delay", "0.2")
    assert "video delay must be 0 to 5 s" in one_line_error(capsys, "--video-delay", "9")


def test_unknown_backend_and_encoding_list_the_registries(capsys):
    from streamavs.engine.base import BACKENDS
    from streamavs.protocol import ENCODINGS

    assert f"choose one of {['auto', *BACKENDS]}" in one_line_error(capsys, "--backend", "tflite")
    assert f"choose one of {list(ENCODINGS)}" in one_line_error(capsys, "--encoding", "jpeg")


def test_engine_front_end_mismatch(capsys, mp4, tiny_engine, tmp_path):
    data = json.loads(tiny_engine.read_text())
    data["audio"]["n_mels"] = 40
    shutil.copy(tiny_engine.with_suffix(".onnx"), tmp_path / "tiny.onnx")
    (tmp_path / "tiny.json").write_text(json.dumps(data))
    line = one_line_error(capsys, "--input", mp4, "--engine", tmp_path / "tiny.json")
    assert "n_mels 40" in line and "front end uses 64" in line


def test_missing_engine(capsys, mp4, tmp_path):
    line = one_line_error(capsys, "--input", mp4, "--engine", tmp_path / "none.json")
    assert "no engine" in line


def test_onnxruntime_run_imports_neither_torch_nor_training(mp4, tiny_engine):
    """The runtime stays light: a whole `streamavs run` on ONNX Runtime never imports PyTorch."""
    code = (
        "import sys; from streamavs.cli import main;"
        f"rc = main(['run', '--input', {str(mp4)!r}, '--engine', {str(tiny_engine)!r}, '--publish', 'tcp://127.0.0.1:*']);"
        "bad = [m for m in ('torch', 'streamavs.training', 'streamavs.model') if m in sys.modules];"
        "print('HEAVY', bad); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HEAVY []" in proc.stdout
