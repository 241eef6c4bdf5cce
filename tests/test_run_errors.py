"""Failures a user meets while things run: bad ports, signals, truncated and cover-art files,
mixed datasets, runs that fail at start-up, a camera that stops sending. Each is one line (exit 2),
keeps its final counters, or is reported while it lasts."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from http_servers import stalling_mjpeg_server, stalling_server
from media import alsa_microphone_env, free_port


def test_a_port_out_of_range_is_one_line_instead_of_a_wrapped_port():
    """libzmq wraps tcp://...:99999 to port 34463; StreamAVS refuses it."""
    from streamavs.errors import InputError
    from streamavs.publish import Publisher, Subscriber

    for bad in ("tcp://127.0.0.1:99999", "tcp://127.0.0.1:0", "tcp://127.0.0.1:http"):
        with pytest.raises(InputError, match="1..65535 or \\*"):
            Publisher(bad)
        with pytest.raises(InputError, match="1..65535 or \\*"):
            Subscriber(bad)


def test_data_synth_refuses_to_mix_frame_sizes_in_one_dataset(tmp_path):
    from streamavs.cli import main

    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--count", "1", "--image-size", "64", "--seconds", "2"]) == 0
    proc = subprocess.run([sys.executable, "-m", "streamavs", "data", "synth", "--out", str(out), "--count", "1",
                           "--image-size", "96", "--seconds", "2"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "already holds clips with image_size 64" in proc.stderr and "--image-size 64" in proc.stderr


def test_data_synth_refuses_other_scene_settings_and_indices_past_the_split(tmp_path, capsys):
    """Re-running with another --distractor-share would rewrite clips of the same names while the CSV kept
    their old categories; an index range past the split's last index used to fail halfway, leaving files."""
    from streamavs.cli import main

    out = tmp_path / "synth"
    base = ["data", "synth", "--out", str(out), "--count", "2", "--image-size", "32", "--seconds", "1"]
    assert main([*base, "--distractor-share", "0"]) == 0
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    capsys.readouterr()
    assert main([*base, "--distractor-share", "1"]) == 2
    err = capsys.readouterr().err
    assert "already holds single clips made with distractor_share = 0.0, and these would have 1.0" in err
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    assert main([*base, "--distractor-share", "0", "--seed-offset", "999999999", "--out", str(tmp_path / "far")]) == 2
    assert "clips 999999999..1000000000 run past the last clip index of a split (999999999)" in capsys.readouterr().err
    assert not (tmp_path / "far").exists()


@pytest.mark.slow  # a training subprocess: ~4.5 s
def test_a_run_that_fails_before_any_checkpoint_leaves_no_folder(tmp_path):
    """A temporal recipe whose segmenter checkpoint does not exist fails at start-up: no empty run folder stays."""
    pytest.importorskip("torch", reason="streamavs train needs the train extra")
    recipe = tmp_path / "t.toml"
    recipe.write_text('name = "t"\n[model]\ninit_checkpoint = "nope/best.pt"\n[data]\nimage_size = 64\n'
                      '[loss]\n[optim]\n[eval]\n[temporal]\n')
    run_dir = tmp_path / "runs" / "t"
    proc = subprocess.run([sys.executable, "-m", "streamavs", "train", "-c", str(recipe), "--out", str(run_dir)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "nope/best.pt" in proc.stderr
    assert not run_dir.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_subscribe_stopped_by_a_signal_prints_its_final_counters(sig):
    proc = subprocess.Popen([sys.executable, "-m", "streamavs", "subscribe", f"tcp://127.0.0.1:{free_port()}",
                             "--interval", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()  # the first status line: it is receiving
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "stopped by a signal" in err and "Traceback" not in err
    assert "final: masks 0" in out


def test_subscribe_with_a_wrong_curve_key_says_what_to_check(tmp_path):
    """A publisher with CurveZMQ and a subscriber holding another server key: nothing arrives, and the CLI says why it may be."""
    from streamavs.publish import Publisher, generate_curve_keys

    _, secret = generate_curve_keys(tmp_path / "server")
    other_public, _ = generate_curve_keys(tmp_path / "other")
    with Publisher(f"tcp://127.0.0.1:{free_port()}", curve_secret_key=secret) as pub:
        proc = subprocess.Popen([sys.executable, "-m", "streamavs", "subscribe", pub.address, "--duration", "1.5",
                                 "--curve-server-key", str(other_public)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None:
            pub.heartbeat(force=True)
            time.sleep(0.05)
        out, err = proc.communicate(timeout=20)
    assert "no masks received" in err and "not the publisher's public key" in err and "Traceback" not in err


def test_run_that_ends_in_an_error_prints_its_counters_first(tmp_path, tiny_engine, ffmpeg):
    """A truncated MP4 fails part-way through decoding: every frame decoded before the failure is processed,
    and the counters come before the error line."""
    mp4 = tmp_path / "whole.mp4"  # faststart: the index is at the front, so the cut file opens and fails later
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-f", "lavfi",
                    "-i", "sine=frequency=440:sample_rate=44100", "-t", "3", "-c:v", "libx264", "-c:a", "aac",
                    "-movflags", "+faststart", str(mp4)], check=True)
    truncated = tmp_path / "truncated.mp4"
    data = mp4.read_bytes()
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    proc = subprocess.run([sys.executable, "-m", "streamavs", "run", "--input", str(truncated), "--fast", "--engine",
                           str(tiny_engine), "--publish", "tcp://127.0.0.1:*"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("streamavs: error:")
    decoded = int(re.search(r"failed after (\d+) frames", last).group(1))
    assert decoded > 10 and "final (error):" in proc.stdout
    assert f"frames {decoded}  published {decoded}" in proc.stdout  # every decodable frame ran before the error


def test_an_audio_file_with_cover_art_is_not_taken_for_a_video(tmp_path, tiny_engine, ffmpeg):
    """An MP3 whose only picture is its cover art gave one mask for 5 s of audio; now one line says what to do."""
    cover, mp3 = tmp_path / "cover.png", tmp_path / "song.mp3"
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=1", "-frames:v", "1",
                    str(cover)], check=True, timeout=60)
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=5",
                    "-i", str(cover), "-map", "0", "-map", "1", "-c:a", "libmp3lame", "-c:v", "mjpeg",
                    "-disposition:v", "attached_pic", str(mp3)], check=True, timeout=60)
    proc = subprocess.run([sys.executable, "-m", "streamavs", "run", "--input", str(mp3), "--fast", "--engine",
                           str(tiny_engine), "--publish", "tcp://127.0.0.1:*"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "holds a still picture (cover art) but no video track" in proc.stderr and "ffmpeg -loop 1" in proc.stderr


def stderr_lines(proc: subprocess.Popen) -> queue.Queue:
    """The lines of `proc`'s stderr as they come, read by a thread (None at the end), so that waiting
    for a line that never comes can be bounded."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stderr:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def read_until(lines: queue.Queue, done, timeout_s: float) -> list[str]:
    """Lines from `lines` until `done(lines so far)`, the end of the stream, or `timeout_s` passed."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while not done(seen):
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
    return seen


RATES_LINE = (r"frames \d+  [\d.]+ fps  inference p50 [\d.]+ ms  total p50 [\d.]+ ms  dropped \d+  audio gaps \d+  "
              r"overflows \d+")
STALLED_LINE = (r"no frames for (\d+) s \(\d+ so far\)  reconnects 0(  failed reopens \d+)?  dropped \d+  "
                r"audio gaps \d+  overflows \d+")


@pytest.mark.slow  # ~7 s: a stall long enough for three status lines
def test_the_status_line_keeps_coming_and_says_when_the_camera_sends_no_frames(tiny_engine, tmp_path):
    """A fake IP camera sends 30 frames, then keeps the connection open and sends nothing (and answers
    reconnects without a picture). The status line came only with a processed frame, so the run went
    silent until the reconnect error ~35 s later; now it keeps coming and says how long no frame came."""
    with stalling_mjpeg_server(frames=30) as url:
        cmd = [sys.executable, "-m", "streamavs", "run", "--camera", url, "--engine", str(tiny_engine),
               "--status-interval", "0.3", "--publish", f"tcp://127.0.0.1:{free_port()}"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=alsa_microphone_env(tmp_path))
        try:
            lines = stderr_lines(proc)
            # Three stalled lines come ~5 s after the start line; the bound is for a silent run on a loaded machine.
            seen = read_until(lines, lambda seen: sum(bool(re.fullmatch(STALLED_LINE, x)) for x in seen) == 3, 90)
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
            seen += read_until(lines, lambda _: False, 10)
            out = proc.stdout.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stalled = [int(m.group(1)) for x in seen if (m := re.fullmatch(STALLED_LINE, x))]
    assert len(stalled) >= 3, "\n".join(seen[-20:])
    assert stalled[0] >= 2 and stalled == sorted(stalled), stalled  # from NO_FRAMES_S on, counting up
    assert any(re.fullmatch(RATES_LINE, x) for x in seen), "while frames came, the line is as before"
    assert proc.returncode == 0 and "SIGINT, stopping" in "\n".join(seen) and "final (stopped)" in out


def test_ctrl_c_while_the_camera_opens_is_a_stop_request_not_an_abort(tiny_engine, tmp_path):
    """The signal handlers are installed before the pipeline starts and restored after it is closed.
    They were installed after the start and restored before the close, so a Ctrl-C while a source
    opened (or while the pipeline closed after an error) was Python's KeyboardInterrupt: exit 130
    and nothing said. A camera URL whose server takes the request and never answers blocks the open
    for its 2 s timeout; a Ctrl-C then is the run's stop request, and the failed open its one-line error.
    (A Ctrl-C during a slow close cannot be timed from outside: a source's close takes at most 1 s.)"""
    accepted = threading.Event()
    with stalling_server(None, accepted=accepted) as url:  # takes the connection, never answers
        cmd = [sys.executable, "-m", "streamavs", "run", "--camera", url,
               "--engine", str(tiny_engine), "--publish", f"tcp://127.0.0.1:{free_port()}"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=alsa_microphone_env(tmp_path))
        try:
            assert accepted.wait(60), "the camera was never opened"
            proc.send_signal(signal.SIGINT)  # while OpenCV waits up to 2 s for the answer
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 2, err
    assert "streamavs: SIGINT, stopping (again to abort)" in err
    assert err.strip().splitlines()[-1].startswith("streamavs: error: cannot open 'http://127.0.0.1:")
