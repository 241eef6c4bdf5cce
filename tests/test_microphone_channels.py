"""MicrophoneSource's second channel count, on a real PortAudio device: a device that refuses
min(2, n) channels is opened with all n of them, and one that refuses both names each count tried.

Why the device changes after PortAudio listed it: PortAudio's ALSA host API opens a device with
max(requested channels, the minimum it measured when it listed the device) and drops the extra
channels itself (pa_linux_alsa.c, PaAlsaStreamComponent_Initialize). A device that accepts only
4 channels is listed with a minimum of 4, so asking for 2 opens it with 4 and succeeds: the retry
cannot be reached with a device that stays as it was listed. A device whose configuration changes
between the listing (``import sounddevice``) and the opening can: listed as ALSA's ``null`` device
(1 channel and up), opened as one that accepts exactly n. The switch is ALSA's own
``@func getenv``, evaluated at every snd_pcm_open: the capture process sets the variable after
importing sounddevice. Both devices are plain ALSA configuration in the test's ~/.asoundrc.

n is PortAudio's cap for an ALSA plugin device: it lists ``null`` (up to 2**30 channels) with 128.
The wide device is ALSA's ``file`` plugin (reading a raw 128-channel file, no clock: samples come
as fast as they are read) over ``copy`` over ``multi`` (exactly 128 channels) over ``null``.
``copy`` is there because ``multi`` offers its client only non-interleaved mmap access, and the file
plugin copies its input file into the buffer as interleaved bytes whatever the layout (without
``copy`` the ring held a smear of neighbouring frames). The device runs at 16 kHz, the ring's rate,
where the resampler passes samples through unchanged: the ring must hold the mean of the file's
128 channels exactly. ``arecord -D changing`` with the variable set to ``wide`` fails with
-c 1, 2, 3 or 129 ("Channels count non available") and reads the file exactly with -c 128.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from media import alsa_env

N = 128  # PortAudio's max_input_channels for an ALSA plugin device (GropeDevice: "isPlug && maxChans > 128")
RATE = 16000  # the ring's rate: no resampling, the known answer is exact
WANT = RATE // 2  # samples compared (0.5 s; the file holds 1 s)
SWITCH = "STREAMAVS_TEST_ALSA_SLAVE"

ASOUNDRC = """\
pcm.changing {{
    type empty
    slave.pcm {{
        @func getenv
        vars [ {switch} ]
        default "null"
    }}
}}
pcm.wide {{
    type file
    slave.pcm {{ type copy; slave.pcm "wide_only" }}
    file "/dev/null"
    infile "{infile}"
    format "raw"
}}
pcm.wide_only {{
    type multi
    slaves.a {{ pcm "null"; channels {n} }}
{bindings}
}}
pcm.three {{
    type multi
    slaves.a {{ pcm "null"; channels 3 }}
    bindings.0 {{ slave a; channel 0 }}
    bindings.1 {{ slave a; channel 1 }}
    bindings.2 {{ slave a; channel 2 }}
}}
"""


def write_changing_asoundrc(home: Path) -> np.ndarray:
    """Write `home`/.asoundrc and the wide device's input file; return the file's samples (frames, N) int16.

    Channel k holds (k - 64) * 200 plus a 440 Hz tone of amplitude 3000 common to all channels, so the
    mean of all 128 channels is the tone minus 100, and the mean of the first two is about -12700 + tone.
    """
    n = np.arange(RATE)
    tone = np.round(3000 * np.sin(2 * np.pi * 440 * n / RATE)).astype(np.int64)
    raw = ((np.arange(N) - 64) * 200 + tone[:, None]).astype("<i2")
    infile = Path(home) / "wide.raw"
    raw.tofile(infile)
    bindings = "\n".join(f"    bindings.{i} {{ slave a; channel {i} }}" for i in range(N))
    text = ASOUNDRC.format(switch=SWITCH, infile=infile, n=N, bindings=bindings)
    (Path(home) / ".asoundrc").write_text(text)
    return raw


CAPTURE = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    import sounddevice as sd  # PortAudio lists the devices now: 'changing' is ALSA's null device
    from streamavs.buffers import AudioRing
    from streamavs.capture.microphone import MicrophoneSource
    from streamavs.errors import SourceError

    listed = sd.query_devices("changing", "input")["max_input_channels"]
    os.environ[sys.argv[1]] = sys.argv[2]  # from now on, opening 'changing' opens this device
    want = int(sys.argv[3])
    ring = AudioRing(capacity_s=120.0)
    result = {"listed": listed}
    try:
        with MicrophoneSource("changing", ring, samplerate=int(sys.argv[4])) as mic:
            deadline = time.monotonic() + 20
            while ring.head < want and time.monotonic() < deadline:
                mic.check()
                time.sleep(0.002)
            result["channels"] = mic.channels
        mic.check()
        x, result["gap"] = ring.read(want, want)
        np.save(sys.argv[5], x)
    except SourceError as exc:
        result["error"] = str(exc)
    print(json.dumps(result))
    """
)


def capture(home: Path, device: str) -> dict:
    """Run CAPTURE with `home`/.asoundrc, switching 'changing' to `device` after PortAudio listed it."""
    env = alsa_env(home)  # PortAudio reads its ~/.asoundrc
    env.pop(SWITCH, None)  # listed as the null device
    args = [sys.executable, "-c", CAPTURE, SWITCH, device, str(WANT), str(RATE), str(home / "ring.npy")]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["listed"] == N, f"PortAudio listed the null device with {result['listed']} channels, not {N}"
    return result


def test_a_device_that_refuses_two_channels_is_opened_with_all_of_them(tmp_path):
    raw = write_changing_asoundrc(tmp_path)
    result = capture(tmp_path, "wide")
    assert "error" not in result, result.get("error")
    # min(2, 128) was refused, all 128 were accepted.
    assert result["channels"] == N
    # Every channel came through: the ring holds the mean of the 128 channels of the file, sample for sample.
    x = np.load(tmp_path / "ring.npy")
    expected = raw[:WANT].astype(np.float64).mean(axis=1) / 32768
    assert not result["gap"] and x.shape == (WANT,)
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-6)
    first_two = raw[:WANT, :2].astype(np.float64).mean(axis=1) / 32768
    assert np.abs(x - first_two).min() > 0.3  # not what two of the channels would give


def test_a_device_that_refuses_every_count_names_each_count_tried(tmp_path):
    write_changing_asoundrc(tmp_path)
    result = capture(tmp_path, "three")  # accepts exactly 3 channels: neither 2 nor 128
    assert "channels" not in result
    # Each count tried, with PortAudio's reason (its wording is PortAudio's own), then the fix.
    assert re.fullmatch(
        rf"cannot open input device 'changing' at {RATE} Hz \(tried 2 channels: [^;]*channels[^;]*; {N} channels: "
        r"[^;]*channels[^;]*\); pick another device with --mic, or close the program that holds it",
        result["error"],
    ), result["error"]
