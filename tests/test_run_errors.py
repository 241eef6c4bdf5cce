"""Failures a user meets while things run: bad ports, signals, truncated and cover-art files,
mixed datasets, runs that fail at start-up. Each is one line (exit 2) or keeps its final counters."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest


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
    from media import free_port

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
    from media import free_port
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
