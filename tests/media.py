"""Real media files for tests, encoded with the ffmpeg command-line tool.

Every helper writes one file into a directory the test owns (e.g. pytest's tmp_path) and
returns its path. The audio is a known signal: silence until `onset_s`, then a sine at
`tone_hz` (amplitude 0.5), so a test can check frequency and timing after decoding.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

__all__ = [
    "ffmpeg_bin",
    "tone_expr",
    "make_video",
    "make_mp4_tone",
    "make_mkv_mono48k",
    "make_wav",
    "make_video_only",
    "make_raw_tone",
    "make_partial_audio",
    "make_piped_video",
    "truncate",
    "count_video_frames",
]


def ffmpeg_bin() -> str:
    """Path of ffmpeg; raises RuntimeError naming the package when it is missing."""
    path = shutil.which("ffmpeg")
    if path is None:
        raise RuntimeError("ffmpeg is not installed; run: apt-get install ffmpeg")
    return path


def _run(args: list[str]) -> None:
    subprocess.run([ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def tone_expr(onset_s: float, tone_hz: float) -> str:
    """An ffmpeg aevalsrc expression: 0 before onset_s, then 0.5*sin(2*pi*tone_hz*t)."""
    return f"if(gte(t\\,{onset_s})\\,0.5*sin(2*PI*{tone_hz}*t)\\,0)"


def make_video(
    path: Path,
    seconds: float = 3.0,
    fps: int = 25,
    size: str = "160x120",
    audio_rate: int | None = 44100,
    channels: int = 2,
    onset_s: float = 1.0,
    tone_hz: float = 1000.0,
    vcodec: str = "libx264",
    acodec: str = "aac",
) -> Path:
    """Encode a testsrc video (+ the tone track unless audio_rate is None) into `path`.

    The container follows the file extension (.mp4, .mkv, ...).
    """
    path = Path(path)
    args = ["-f", "lavfi", "-i", f"testsrc=size={size}:rate={fps}:duration={seconds}"]
    if audio_rate is not None:
        expr = "|".join([tone_expr(onset_s, tone_hz)] * channels)
        args += ["-f", "lavfi", "-i", f"aevalsrc=exprs={expr}:s={audio_rate}:d={seconds}"]
    args += ["-c:v", vcodec, "-pix_fmt", "yuv420p"]
    if vcodec == "libx264":
        args += ["-preset", "ultrafast"]
    if audio_rate is not None:
        args += ["-c:a", acodec, "-ar", str(audio_rate), "-ac", str(channels)]
    _run(args + [str(path)])
    return path


def make_mp4_tone(directory: Path, seconds: float = 3.0, onset_s: float = 1.0) -> Path:
    """H.264 + AAC MP4, 25 fps, 44.1 kHz stereo: silence for onset_s then 1 kHz."""
    return make_video(Path(directory) / "tone.mp4", seconds=seconds, onset_s=onset_s)


def make_mkv_mono48k(directory: Path, seconds: float = 2.0, onset_s: float = 0.5) -> Path:
    """Matroska: H.264 15 fps + Vorbis 48 kHz mono with the tone from onset_s."""
    return make_video(
        Path(directory) / "mono48k.mkv",
        seconds=seconds,
        fps=15,
        audio_rate=48000,
        channels=1,
        onset_s=onset_s,
        acodec="libvorbis",
    )


def make_wav(path: Path, seconds: float = 1.0, rate: int = 48000, channels: int = 2, onset_s: float = 0.25) -> Path:
    """PCM s16le WAV with the tone from onset_s (no video)."""
    expr = "|".join([tone_expr(onset_s, 1000.0)] * channels)
    _run(["-f", "lavfi", "-i", f"aevalsrc=exprs={expr}:s={rate}:d={seconds}", "-c:a", "pcm_s16le", str(path)])
    return Path(path)


def make_video_only(directory: Path, seconds: float = 1.0) -> Path:
    """H.264 MP4 without an audio track."""
    return make_video(Path(directory) / "silent.mp4", seconds=seconds, audio_rate=None)


def make_unknown_codec(directory: Path, seconds: float = 1.0) -> Path:
    """An AVI whose video codec no FFmpeg knows: MPEG-4 Part 2 re-tagged with the fourcc 'ZZZZ'.

    The container is intact and ffprobe lists the track (codec 'unknown'), but there is no decoder.
    """
    path = Path(directory) / "unknown_codec.avi"
    _run(["-f", "lavfi", "-i", f"testsrc=size=64x64:rate=10:d={seconds}", "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:d={seconds}",
          "-c:v", "mpeg4", "-c:a", "pcm_s16le", str(path)])  # fmt: skip
    data = path.read_bytes()
    assert data.count(b"FMP4") == 2, "expected the fourcc in the stream header and format chunk"
    path.write_bytes(data.replace(b"FMP4", b"ZZZZ"))
    return path


def make_wrong_audio_end(directory: Path) -> Path:
    """The tone video of :func:`make_mp4_tone` as Matroska whose header says the audio track ends at
    0.5 s (its DURATION tag patched, same length) while the audio goes on to the end (3 s)."""
    path = make_video(Path(directory) / "wrong_audio_end.mkv", seconds=3.0)
    data = path.read_bytes()
    tags = [i for i in range(len(data)) if data.startswith(b"DURATION", i)]
    assert len(tags) == 2, "expected one DURATION tag per track (video, then audio)"
    at = data.index(b"00:00:0", tags[1])  # the audio track's value, "00:00:03.0xx000000"
    path.write_bytes(data[:at] + b"00:00:00.500000000" + data[at + 18:])
    return path


def make_gap_video(directory: Path) -> Path:
    """Variable-frame-rate Matroska: five frames from 0 s, none for 30 s, five from 30 s (a stalled
    camera or URL, as recorded), over 33 s of a 440 Hz tone."""
    path = Path(directory) / "gap.mkv"
    _run(["-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=33", "-f", "lavfi", "-i",
          "sine=frequency=440:sample_rate=16000:duration=33", "-vf", "select='lt(t,0.2)+between(t,30,30.19)'",
          "-fps_mode", "vfr", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
          "-c:a", "pcm_s16le", str(path)])  # fmt: skip
    return path


def make_partial_audio(
    path: Path,
    seconds: float = 5.0,
    audio_start_s: float = 0.0,
    audio_end_s: float | None = None,
    fps: int = 25,
) -> Path:
    """A testsrc video of `seconds` whose audio track (AAC 44.1 kHz stereo, a 1 kHz tone from its
    first sample) covers only [audio_start_s, audio_end_s) of it: it starts late (``-itsoffset``)
    and/or ends early. The container follows the extension (.mp4, .mkv)."""
    end = seconds if audio_end_s is None else audio_end_s
    expr = "|".join([tone_expr(0.0, 1000.0)] * 2)
    video = f"testsrc=size=160x120:rate={fps}:duration={seconds}"
    audio = f"aevalsrc=exprs={expr}:s=44100:d={end - audio_start_s}"
    _run(["-f", "lavfi", "-i", video, "-itsoffset", str(audio_start_s), "-f", "lavfi", "-i", audio,
          "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
          "-c:a", "aac", "-ar", "44100", "-ac", "2", str(path)])  # fmt: skip
    return Path(path)


def make_piped_video(path: Path, seconds: float = 3.0, vcodec: str = "libx264", acodec: str = "aac") -> Path:
    """A testsrc video with a 440 Hz tone (44.1 kHz stereo), 25 fps, written to a pipe as a live
    recorder writes it: Matroska that the muxer cannot go back into, so its header states no length
    (no Segment Duration, no DURATION tags). With codecs whose bit rate is known (mpeg4 + mp2), FFmpeg
    then estimates a duration from the bit rate and the file size (8 s for 3 s of mpeg4 + mp2)."""
    args = ["-f", "lavfi", "-i", f"testsrc=size=160x120:rate=25:duration={seconds}", "-f", "lavfi", "-i",
            f"sine=frequency=440:sample_rate=44100:duration={seconds}", "-c:v", vcodec, "-pix_fmt", "yuv420p",
            "-c:a", acodec, "-ac", "2", "-f", "matroska", "-"]  # fmt: skip
    with open(path, "wb") as out:
        subprocess.run([ffmpeg_bin(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True, stdout=out)
    return Path(path)


def truncate(path: Path, fraction: float) -> Path:
    """A copy of `path` holding only its first `fraction` of bytes (a download or copy cut off
    part-way, as ``head -c``), written beside it as cut_NAME."""
    data = Path(path).read_bytes()
    cut = Path(path).with_name(f"cut_{Path(path).name}")
    cut.write_bytes(data[: int(len(data) * fraction)])
    return cut


def make_raw_tone(
    path: Path,
    seconds: float,
    rate: int = 48000,
    channels: int = 2,
    onset_s: float = 0.5,
    tone_hz: float = 1000.0,
    tail_s: float = 0.0,
) -> Path:
    """Headerless interleaved s16le samples: silence, the tone from onset_s to `seconds`, then tail_s of silence."""
    t = np.arange(int(round(seconds * rate))) / rate
    x = np.where(t >= onset_s, 0.5 * np.sin(2 * np.pi * tone_hz * t), 0.0)
    x = np.concatenate([x, np.zeros(int(round(tail_s * rate)))])
    pcm = np.round(x * 32767).astype("<i2")
    np.repeat(pcm[:, None], channels, axis=1).tofile(path)  # (n, channels) interleaved
    return Path(path)


def count_video_frames(path: Path) -> int:
    """Number of decodable video frames, as ffprobe counts them."""
    ffprobe = shutil.which("ffprobe") or ffmpeg_bin().replace("ffmpeg", "ffprobe")
    out = subprocess.run(
        [ffprobe, "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
         "stream=nb_read_frames", "-of", "csv=p=0", str(path)],
        check=True, capture_output=True, text=True,
    )
    return int(out.stdout.strip())


ASOUNDRC = """\
pcm.tonefile {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{infile}"
    format "raw"
}}
pcm.!default {{
    type plug
    slave {{ pcm "tonefile"; format S16_LE; rate {rate}; channels 2 }}
}}
"""


def write_asoundrc(home: Path, infile: Path, rate: int) -> Path:
    """Make ALSA's default capture device (and so PortAudio's default microphone) read `infile`,
    raw s16le stereo at `rate`, for processes whose HOME is `home`. The `file` plugin's `null`
    slave has no clock: samples arrive as fast as they are read. int16 capture is bit-exact;
    float32 through `plug` was seen to corrupt samples, so capture int16."""
    path = Path(home) / ".asoundrc"
    path.write_text(ASOUNDRC.format(infile=infile, rate=rate))
    return path


CLOCKED_ASOUNDRC = """\
pcm_type.clocked {{ lib "{lib}" }}
pcm.clocked {{ type clocked }}
pcm.!default {{
    type plug
    slave {{ pcm "clocked"; format S16_LE; rate 48000; channels 2 }}
}}
"""


def write_clocked_asoundrc(home: Path, ramp_per_s: float = 0.05) -> Path:
    """Make `home`/.asoundrc's default capture device a microphone WITH a clock (use with
    :func:`alsa_env`): tests/c/clocked_pcm.c, an ALSA ioplug plugin built here with gcc, 48 kHz on
    CLOCK_MONOTONIC, a buffer of at most 100 ms that overruns when not read, samples a ramp of
    `ramp_per_s` full scale per second of capture time (from -0.9). Skips the test without gcc."""
    import pytest

    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("the clocked test microphone is an ALSA plugin built with gcc: apt-get install gcc")
    src, lib = Path(__file__).parent / "c" / "clocked_pcm.c", Path(home) / "libasound_module_pcm_clocked.so"
    subprocess.run([gcc, "-O2", "-Wall", "-Werror", "-shared", "-fPIC", f"-DRAMP_PER_S={ramp_per_s!r}", "-o", str(lib),
                    str(src), "-l:libasound.so.2", "-lm"], check=True)  # fmt: skip
    rc = Path(home) / ".asoundrc"
    rc.write_text(CLOCKED_ASOUNDRC.format(lib=lib))
    return rc


def alsa_env(home: Path) -> dict[str, str]:
    """The environment of a process whose PortAudio reads `home`/.asoundrc (:func:`write_asoundrc`):
    HOME set to it, ALSA_CONFIG_PATH unset so that the default alsa.conf loads ~/.asoundrc."""
    env = dict(os.environ, HOME=str(home))
    env.pop("ALSA_CONFIG_PATH", None)
    return env


def alsa_microphone_env(home: Path) -> dict[str, str]:
    """The environment of a process whose default microphone is ALSA's `file` plugin reading a tone
    (0.5 s of silence, then 30.5 s of 1 kHz), written under `home`: a real PortAudio microphone. Its
    `null` slave has no clock (samples come as fast as they are read), so runs with it check the live
    path, not audio timing (tests/test_capture_microphone.py covers that)."""
    raw = make_raw_tone(Path(home) / "mic.raw", seconds=1.0, rate=48000, onset_s=0.5, tail_s=30.0)
    write_asoundrc(home, raw, 48000)
    return alsa_env(home)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_every_frame_arrived(msgs: list, n: int) -> None:
    """Every mask from the first received to the last frame's (seq n - 1) arrived, in order, none lost.

    Only the first ones may be missing: the run binds after the subscriber connects, and the
    subscription reaches the publisher a moment later (ZeroMQ's "slow joiner"), so masks sent
    before that are not queued for it; how many depends on the machine's load (5 to 30 on a busy
    one with ZeroMQ's default 0.1 s reconnect interval; run_and_subscribe retries every 10 ms). From then on nothing may be lost, the last masks included: a run that ends on its own
    lingers until they are delivered.
    """
    seqs = [m.seq for m in msgs]
    assert seqs, f"none of the {n} masks arrived"
    assert seqs[-1] == n - 1, f"the last mask received is seq {seqs[-1]}; the last frame's is {n - 1}"
    missing = sorted(set(range(seqs[0], n)) - set(seqs))
    assert seqs == list(range(seqs[0], n)), f"masks {seqs[0]}..{n - 1} in order, none lost; missing {missing[:20]}"


def run_and_subscribe(args: list[str]) -> tuple[list, int, str]:
    """`python -m streamavs run ARGS --publish ADDR` with a Subscriber connected first: (messages, exit code, stderr)."""
    import sys

    from streamavs.publish import Subscriber

    address = f"tcp://127.0.0.1:{free_port()}"
    msgs = []
    # Connects first and retries every 10 ms; the run binds before it loads its engine, so the
    # subscription is normally in place before the first mask.
    with Subscriber(address, reconnect_s=0.01) as sub:
        proc = subprocess.Popen([sys.executable, "-m", "streamavs", "run", *args, "--publish", address],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None:
            if (msg := sub.recv(timeout=0.5)) is not None:
                msgs.append(msg)
        # The run has exited; what it sent before is on the loopback or in this socket's queue (a
        # message can still be in flight when a recv times out just as the run ends).
        while (msg := sub.recv(timeout=2.0)) is not None:
            msgs.append(msg)
        _, err = proc.communicate(timeout=30)
    return msgs, proc.returncode, err


def connected_pair(**pub_options):
    """A publisher on a free loopback port and a subscriber that has already received from it
    (PUB/SUB drops messages sent before the subscription is in place)."""
    import time

    from streamavs.publish import Publisher, Subscriber

    pub = Publisher("tcp://127.0.0.1:*", sndhwm=100_000, **pub_options)
    sub = Subscriber(pub.address, rcvhwm=100_000)
    deadline = time.monotonic() + 30  # liveness only: it returns as soon as a heartbeat arrives
    while sub.stats().heartbeats == 0:
        assert time.monotonic() < deadline, "subscriber never connected"
        pub.heartbeat(force=True)
        sub.recv(timeout=0.02)
    return pub, sub


def start_c_subscriber(cmd: list[str], pub):
    """Start the C subscriber `cmd` and heartbeat `pub` until it prints "ready" (it has subscribed)."""
    import select
    import time

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30  # liveness only: it returns as soon as the client is ready
    while not select.select([proc.stdout], [], [], 0.02)[0]:
        if time.monotonic() >= deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError("C subscriber never got a heartbeat")
        pub.heartbeat(force=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc
