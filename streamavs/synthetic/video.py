"""A synthetic scene as an ordinary video file (H.264 + AAC, made with ffmpeg).

The demo and the end-to-end tests need a real media file whose ground truth is known: the
scene of :func:`generate_clip` with every source sounding, except that the audio is digital
silence before `sound_starts_s`. So a correct engine leaves the mask empty before that time and
segments the source after it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import replace
from pathlib import Path

import numpy as np

from streamavs.errors import InputError, MissingDependency
from streamavs.synthetic.banks import PROCEDURAL, ObjectBank
from streamavs.synthetic.config import SceneConfig
from streamavs.synthetic.scenes import Clip, generate_clip


def demo_clip(seed: int = 0, seconds: int = 10, sound_starts_s: float = 3.0,
              config: SceneConfig = SceneConfig(), bank: ObjectBank = PROCEDURAL) -> Clip:
    """A clip whose sources sound throughout, silenced before `sound_starts_s` (audio and GT)."""
    if not 0.0 <= sound_starts_s < seconds:
        raise InputError(f"sound_starts_s must be in [0, {seconds}), got {sound_starts_s}")
    clip = generate_clip(seed, replace(config, seconds=seconds, state_change_prob=0.0), bank)
    start = int(round(sound_starts_s * clip.sample_rate))
    clip.audio[:start] = 0.0
    silent = int(np.floor(sound_starts_s))  # seconds that are silent throughout: empty ground truth
    clip.masks[:silent] = False
    clip.sounding[:silent] = False
    return clip


def real_demo_clip(source: str = "dog", distractor: str = "violin", seconds: int = 10, sound_starts_s: float = 3.0,
                   media: str | Path | None = None, max_seeds: int = 200) -> Clip:
    """A real-media demo scene (test backgrounds, held-out recording): `source` sounds from
    `sound_starts_s`, `distractor` stays silent beside it.

    The composer picks the roles by seed, so this takes the first test seed whose scene has
    exactly these two objects with `source` as the sounding one.
    """
    from streamavs.realmedia.bank import RealBank
    from streamavs.synthetic.config import split_seed

    if source == distractor:
        raise InputError(f"the sounding --source and the silent --distractor must be different classes, got {source!r} "
                         "for both: pick another --distractor (`streamavs data video --help`)")
    bank = RealBank("test", media, only_classes=(source, distractor))
    config = SceneConfig(setting="single", distractor_share=1.0, max_distractors=1)
    for index in range(max_seeds):
        seed = split_seed("test", index)
        clip = demo_clip(seed, seconds, sound_starts_s, config, bank)
        names = [clip.classes[int(c)].name for c in clip.class_ids]
        if clip.n_objects == 2 and clip.category == source and distractor in names:
            return clip
    raise InputError(f"no scene with a sounding {source} and a silent {distractor} in the first {max_seeds} test seeds")


def write_video(clip: Clip, path: str | Path, *, fps: int = 30, audio_rate: int = 44100,
                ffmpeg: str | None = None) -> Path:
    """Encode `clip` as H.264 (yuv420p) + AAC stereo at `audio_rate`; frame t is shown during second t.

    The clip audio (16 kHz) is resampled by ffmpeg. Returns the path written.
    """
    exe = ffmpeg or shutil.which("ffmpeg")
    if exe is None:
        raise MissingDependency("writing a video needs ffmpeg; install it with: apt-get install ffmpeg")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t, h, w, _ = clip.frames.shape
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "audio.wav"
        pcm = (np.clip(clip.audio, -1.0, 1.0) * 32767.0).round().astype("<i2")  # (n, 2)
        with wave.open(str(wav), "wb") as f:
            f.setnchannels(pcm.shape[1])
            f.setsampwidth(2)
            f.setframerate(clip.sample_rate)
            f.writeframes(pcm.tobytes())
        cmd = [
            exe, "-y", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
            "-i", str(wav),
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", "-g", str(fps),
            "-c:a", "aac", "-ar", str(audio_rate), "-ac", "2", "-shortest", str(path),
        ]
        frames = np.repeat(clip.frames, fps, axis=0)  # (T*fps, H, W, 3): frame t during second t
        proc = subprocess.run(cmd, input=frames.tobytes(), capture_output=True)
        if proc.returncode != 0:
            raise InputError(f"ffmpeg could not write {path}: {proc.stderr.decode(errors='replace').strip()}")
    return path
