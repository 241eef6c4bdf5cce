"""MicrophoneSource on a real PortAudio device: ALSA's `file` plugin reading a raw tone.

PortAudio reads the ALSA configuration when it initialises (at `import sounddevice`), so
the capture runs in a fresh Python process whose HOME holds the test's `.asoundrc`.
The `null` slave of the file plugin has no clock: the device delivers the file as fast as
it is read, so the test checks sample positions (onset, length), not real-time pacing. With a
named pipe as its input file, a writer process paces the device instead, and by writing nothing
while keeping the pipe open makes a device that stops delivering without closing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from media import alsa_env, make_raw_tone, write_asoundrc

SR = 16000
RATE = 48000
ONSET_S, TONE_END_S = 0.5, 1.5


CAPTURE = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from streamavs.buffers import AudioRing
    from streamavs.capture.microphone import MicrophoneSource
    from streamavs.errors import SourceError

    want = int(sys.argv[1])
    ring = AudioRing(capacity_s=120.0)
    with MicrophoneSource(None, ring, samplerate=int(sys.argv[2]), channels=2) as mic:
        deadline = time.monotonic() + 20
        while ring.head < want and time.monotonic() < deadline:
            mic.check()
            time.sleep(0.002)
        name = mic.device_name
    mic.check()
    x, gap = ring.read(want, want)
    np.save(sys.argv[3], x)
    try:
        MicrophoneSource("no-such-mic").start()
        unknown = ""
    except SourceError as exc:
        unknown = str(exc)
    print(json.dumps({"gap": gap, "device": name, "counters": mic.counters(), "unknown": unknown}))
    """
)


@pytest.fixture
def alsa_home(tmp_path):
    """A HOME whose .asoundrc makes the default capture device read a raw s16le stereo file."""
    raw = make_raw_tone(tmp_path / "tone.raw", seconds=TONE_END_S, rate=RATE, onset_s=ONSET_S, tail_s=20.0)
    write_asoundrc(tmp_path, raw, RATE)
    return tmp_path


def test_microphone_reads_a_tone_from_an_alsa_file_device(alsa_home):
    env = alsa_env(alsa_home)  # PortAudio reads its ~/.asoundrc
    want = 2 * SR
    out = alsa_home / "ring.npy"
    proc = subprocess.run(
        [sys.executable, "-c", CAPTURE, str(want), str(RATE), str(out)],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    x = np.load(out)
    assert not result["gap"] and result["device"] == "default"
    assert result["counters"]["overflows"] == 0 and result["counters"]["audio_samples"] >= want
    # The tone occupies [0.5 s, 1.5 s) of the file: 16000 samples at 16 kHz, each edge within 5 ms.
    loud = np.flatnonzero(np.abs(x) > 0.1)
    assert abs(loud[0] - ONSET_S * SR) <= 80
    assert abs(loud[-1] + 1 - TONE_END_S * SR) <= 80
    assert np.abs(x[: int(0.45 * SR)]).max() < 1e-3 and np.abs(x[int(1.55 * SR) :]).max() < 1e-3
    tone = x[int(0.6 * SR) : int(1.4 * SR)]
    spec = np.abs(np.fft.rfft(tone * np.hanning(tone.size)))
    assert abs(np.argmax(spec) * SR / tone.size - 1000) < 2  # FFT peak at 1 kHz (1.25 Hz bins)
    assert 0.48 < np.abs(tone).max() < 0.52
    # An unknown device name lists the devices that exist.
    assert "no audio input device matches 'no-such-mic'" in result["unknown"]
    assert "[" in result["unknown"] and "default" in result["unknown"] and "--mic" in result["unknown"]


PAIRING = textwrap.dedent(
    """
    import json, time
    from streamavs.buffers import AudioRing, FrameRing, VideoFrame
    from streamavs.pairing import Pairer
    from streamavs.capture.microphone import MicrophoneSource
    from streamavs.clock import now_ns, wall_time
    import numpy as np

    ring, frames = AudioRing(capacity_s=120.0), FrameRing()
    pairer = Pairer(frames, ring, max_wait_s=5.0)  # a wait for audio that will not come would take 5 s
    out = []

    def pair(t_ns, i):
        frames.push(VideoFrame(np.zeros((2, 2, 3), np.uint8), t_ns, wall_time(t_ns), i))
        p = pairer.next_pair(timeout=0)
        out.append({"lag_ns": p.frame.t_ns - p.window_ns[1], "padded": p.padded, "missed": p.missed,
                    "waited": p.waited, "block": ring.block})

    with MicrophoneSource(None, ring, samplerate=48000, channels=2) as mic:
        deadline = time.monotonic() + 20
        while ring.head < 16000 and time.monotonic() < deadline:
            mic.check()
            time.sleep(0.002)
        for i in range(5):
            pair(now_ns(), i)
    t0 = time.monotonic()
    pair(now_ns() + 60_000_000_000, 5)  # closed: no audio will come for this frame, 60 s on (past all the file holds)
    print(json.dumps({"pairs": out, "after_close_s": time.monotonic() - t0}))
    """
)


def test_pairing_on_a_real_microphone_never_waits_for_a_closed_device(alsa_home):
    env = alsa_env(alsa_home)  # PortAudio reads its ~/.asoundrc
    proc = subprocess.run([sys.executable, "-c", PAIRING], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    *live, closed = result["pairs"]
    # While the device delivers, each window ends within one of the device's blocks before its
    # frame, nothing missing. (The file plugin delivers faster than real time, so the clock fit
    # puts the first sample less than 1 s back: windows may reach before it, padded, not missed.)
    for p in live:
        assert p["block"] > 0 and 0 <= p["lag_ns"] <= p["block"] * 1e9 / SR
        assert p["missed"] == 0 and not p["waited"]
    # Closing the device finishes the ring: the next frame is paired at once, its window all zeros.
    # 60 s on is past everything the device file holds, however far ahead of real time the file
    # plugin delivered it (a frame 2 s on could still fall inside audio delivered early).
    assert not closed["waited"] and closed["missed"] == SR and closed["lag_ns"] == 0
    assert result["after_close_s"] < 5.0  # a wait for it would have lasted max_wait_s = 5 s at least


NO_DEFAULT = textwrap.dedent(
    """
    from streamavs.buffers import AudioRing
    from streamavs.capture.microphone import MicrophoneSource, input_devices
    from streamavs.errors import SourceError
    if input_devices():
        print("HAS-INPUT")
    else:
        try:
            MicrophoneSource(None, AudioRing(capacity_s=5.0)).start()
        except SourceError as exc:
            print(exc)
    """
)


def test_no_default_microphone_names_the_alternatives(tmp_path):
    """Without any capture device PortAudio reports 'Error querying device -1'; the user reads what to do."""
    env = alsa_env(tmp_path)  # no .asoundrc there: no capture device on a machine without a sound card
    proc = subprocess.run([sys.executable, "-c", NO_DEFAULT], env=env, capture_output=True, text=True, timeout=60)
    out = proc.stdout.strip().splitlines()[-1]
    if out == "HAS-INPUT":
        pytest.skip("this machine has an audio input device")
    assert out.startswith("this machine has no default audio input device")
    assert "--mic NAME" in out and "--input FILE" in out and "--synthetic" in out and "-1" not in out


# A device that goes quiet: ALSA's file plugin reads a named pipe whose writer paces 1 s of audio
# in real time, then keeps the pipe open and writes nothing (as a PulseAudio/PipeWire device does
# when unplugged). PortAudio's thread then blocks in read() and its abort() waits for it.
QUIET_WRITER = textwrap.dedent(
    """
    import os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR)  # never blocks, and keeps the pipe open for every reader
    chunk, rate, t0, n = bytes(960 * 4), 48000, time.monotonic(), 0  # 20 ms of s16le stereo
    while n < rate:  # 1 s, paced in real time
        os.write(fd, chunk)
        n += 960
        time.sleep(max(0.0, t0 + n / rate - time.monotonic()))
    time.sleep(float(sys.argv[2]))  # quiet, pipe still open
    """
)

STALL = textwrap.dedent(
    """
    import json, time
    from streamavs.buffers import AudioRing
    from streamavs.capture.microphone import MicrophoneSource
    from streamavs.errors import SourceError

    ring = AudioRing(capacity_s=30.0)
    mic = MicrophoneSource(None, ring, samplerate=48000, channels=2).start()
    deadline = time.monotonic() + 20
    while ring.head < 4000 and time.monotonic() < deadline:  # audio flows
        mic.check()
        time.sleep(0.01)
    flowing, error = ring.head, ""
    while not error and time.monotonic() < deadline:  # then the writer goes quiet
        try:
            mic.check()
        except SourceError as exc:
            error = str(exc)
        time.sleep(0.05)
    t0 = time.monotonic()
    mic.close()
    close_s = time.monotonic() - t0
    print(json.dumps({"flowing": flowing, "error": error, "eof": mic.eof, "close_s": close_s,
                      "finished": ring.finished}))
    """
)


@pytest.mark.slow  # ~6 s: a second of audio, the 2 s stall limit, the 1 s close bound
def test_a_microphone_that_goes_quiet_ends_with_an_error_and_closes_anyway(tmp_path):
    fifo = tmp_path / "mic.fifo"
    os.mkfifo(fifo)
    write_asoundrc(tmp_path, fifo, RATE)
    env = alsa_env(tmp_path)  # PortAudio reads its ~/.asoundrc
    writer = subprocess.Popen([sys.executable, "-c", QUIET_WRITER, str(fifo), "45"])
    try:
        proc = subprocess.run([sys.executable, "-c", STALL], env=env, capture_output=True, text=True, timeout=90)
    finally:
        writer.kill()
        writer.wait()
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["flowing"] >= 4000  # the device delivered before it went quiet
    # No audio for STALL_S while the stream claims to run: the source ends with advice, in one line.
    error = result["error"]
    assert error.startswith("input device 'default' delivered no audio for ") and "\n" not in error
    assert "unplugged" in error and "restart, or pick another device with --mic" in error
    assert result["eof"]
    # abort() waits for the blocked read (until the writer goes, 45 s on); closing gives up after
    # STOP_TIMEOUT_S, says so once, finishes the ring and returns; the process then exits.
    assert result["close_s"] < 10 and result["finished"]
    warnings = [line for line in proc.stderr.splitlines() if "did not stop" in line]
    assert warnings == ["microphone 'default' did not stop within 1 s; abandoned"]


SEVERAL = textwrap.dedent(
    """
    import json
    from streamavs.capture.microphone import MicrophoneSource
    from streamavs.errors import SourceError
    try:
        MicrophoneSource("t").start()
    except SourceError as exc:
        print(json.dumps(str(exc)))
    """
)


def test_a_name_that_matches_several_devices_lists_them_in_one_line(alsa_home):
    env = alsa_env(alsa_home)  # PortAudio reads its ~/.asoundrc
    proc = subprocess.run([sys.executable, "-c", SEVERAL], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    message = json.loads(proc.stdout.strip().splitlines()[-1])
    # 't' is in both 'tonefile' and 'default' (the devices of the test's .asoundrc).
    assert message.startswith("'t' matches several input devices: [") and "\n" not in message
    assert "] tonefile, [" in message and "] default" in message
    assert message.endswith("; pass --mic INDEX") and "no audio input device" not in message
