"""The procedural synthetic benchmark played back as a live camera + microphone.

Clips from :func:`streamavs.synthetic.generate_clip` (seeds `seed`, `seed + 1`, ...) are
played back to back on one stream timeline that starts at 0 s:

* video: frame n is at tau_n = (n + 1) / fps seconds and shows clip second
  S = ceil(tau_n) - 1 (each clip frame is repeated for fps frames). A clip frame is the
  scene at the END of its second, so the last repeat (tau = S + 1) pairs with exactly the
  audio of second S, which is what the clip's mask describes.
* audio: the clip audio averaged to mono, in blocks of `block_s` seconds; a block is
  delivered at its end time.

Stamps are the scheduled times on the monotonic clock (origin = start). realtime=True
waits for each scheduled time; realtime=False runs as fast as possible, delivering the audio
that starts before a frame ahead of it so a pairer never waits, and with lossless=True waits
for space in the frame ring instead of overwriting. Generating a clip takes ~0.1 s (224 px,
10 s), during which a real-time stream runs late and then catches up.
"""

from __future__ import annotations

import collections
import math
from typing import Any

import numpy as np

from streamavs.audio import prepare_waveform
from streamavs.buffers import AudioRing, FrameRing, VideoFrame
from streamavs.capture.base import Source
from streamavs.clock import now_ns, wall_time
from streamavs.errors import InputError

__all__ = ["SyntheticLiveSource"]


class SyntheticLiveSource(Source):
    """Synthetic scenes as a live source; `mask_for(frame)` gives each frame's ground truth.

    config: a streamavs.synthetic.SceneConfig (None = its defaults). clips: how many clips to
    play (None = endless). Counters: frames, drops (frame ring), audio_samples, clips.
    """

    name = "synthetic"

    def __init__(
        self,
        config: Any = None,
        seed: int = 0,
        fps: float = 15.0,
        realtime: bool = True,
        lossless: bool = False,
        clips: int | None = None,
        block_s: float = 0.02,
        frames: FrameRing | None = None,
        audio: AudioRing | None = None,
    ) -> None:
        super().__init__()
        if not fps > 0 or not block_s > 0 or (clips is not None and clips < 1):
            raise InputError(
                f"SyntheticLiveSource needs fps > 0, block_s > 0 and clips >= 1 or None, got "
                f"fps={fps!r}, block_s={block_s!r}, clips={clips!r}"
            )
        self.config = config
        self.seed = seed
        self.fps = float(fps)
        self.realtime = realtime
        self.lossless = lossless
        self.clips = clips
        self.frames = frames if frames is not None else FrameRing(capacity=4)
        self.audio = audio if audio is not None else AudioRing()
        self.block = max(1, int(round(block_s * self.audio.sample_rate)))
        self._cache: collections.OrderedDict[int, Any] = collections.OrderedDict()  # clip k -> Clip
        self._waves: dict[int, np.ndarray] = {}  # clip k -> mono 16 kHz audio (T * 16000,)
        # Ground truth outlives the clip cache: the playback thread may run ahead of the consumer by
        # as much audio as the ring holds, so masks are kept for that many clips plus the frames in flight.
        self._masks: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()  # k -> (T, H, W)
        self._counters.update({"audio_samples": 0, "clips": 0})

    def _open(self) -> None:
        from streamavs.synthetic import SceneConfig

        if self.config is None:
            self.config = SceneConfig()
        self._clip(0)  # fail here, in the caller, on a bad config

    # -- clips -----------------------------------------------------------------------------
    def _clip(self, k: int) -> Any:
        """Clip k of the stream (generated on first use; the two newest are kept)."""
        if k not in self._cache:
            from streamavs.synthetic import generate_clip

            clip = generate_clip(self.seed + k, self.config)
            self._waves[k] = prepare_waveform(clip.audio, clip.sample_rate)  # (T * 16000,)
            self._cache[k] = clip
            self._masks[k] = clip.masks
            self._count("clips")
            while len(self._cache) > 2:
                old, _ = self._cache.popitem(last=False)
                self._waves.pop(old, None)
            ahead = self.audio.capacity / self.audio.sample_rate  # seconds the ring lets the source lead
            while len(self._masks) > math.ceil(ahead / self.config.seconds) + 2:
                self._masks.popitem(last=False)
        return self._cache[k]

    def second_of(self, index: int) -> int:
        """Stream second S shown by frame `index`: ceil((index + 1) / fps) - 1."""
        return math.ceil((index + 1) / self.fps - 1e-9) - 1

    def _locate(self, index: int) -> tuple[int, int]:
        """(clip k, second t within the clip) shown by frame `index`."""
        seconds = self.config.seconds
        s = self.second_of(index)
        return s // seconds, s % seconds

    def mask_for(self, frame: VideoFrame) -> np.ndarray:
        """(H, W) bool ground truth of a frame from this source: objects sounding in its second."""
        k, t = self._locate(frame.index)
        masks = self._masks.get(k)
        if masks is None:
            raise InputError(
                f"frame {frame.index} belongs to clip {k}, whose ground truth is no longer kept (the "
                f"{len(self._masks)} newest clips are); ask for the mask as soon as the frame is taken"
            )
        return masks[t]

    # -- playback thread -------------------------------------------------------------------
    def _run(self) -> None:
        sr = self.audio.sample_rate
        seconds = self.config.seconds
        total_s = None if self.clips is None else self.clips * seconds
        origin = now_ns()
        n = 0  # next frame index
        a = 0  # next audio sample (absolute, stream timeline)
        while not self._stop.is_set():
            frame_s = (n + 1) / self.fps
            frame_left = total_s is None or frame_s <= total_s + 1e-9
            audio_left = total_s is None or a < total_s * sr
            if not frame_left and not audio_left:
                return
            # Audio goes first when it ends by the frame's time (real time) or starts before it.
            lead = self.block if self.realtime else 0
            if audio_left and (not frame_left or (a + lead) / sr <= frame_s):
                self._emit_audio(a, origin)
                a += self.block
            else:
                self._emit_frame(n, origin, frame_s)
                n += 1

    def _wait_until(self, t_ns: int) -> None:
        if self.realtime:
            delay = (t_ns - now_ns()) * 1e-9
            if delay > 0:
                self._stop.wait(delay)

    def _emit_audio(self, a: int, origin: int) -> None:
        sr = self.audio.sample_rate
        seconds = self.config.seconds
        clip_len = seconds * sr
        k, off = divmod(a, clip_len)
        self._clip(k)
        block = self._waves[k][off : off + self.block]
        if block.size < self.block and (self.clips is None or k + 1 < self.clips):
            self._clip(k + 1)  # the block straddles two clips
            block = np.concatenate([block, self._waves[k + 1][: self.block - block.size]])
        t_end = origin + (a + block.size) * 1_000_000_000 // sr
        self._wait_until(t_end)
        self.audio.write(block, t_end)
        self._count("audio_samples", block.size)

    def _emit_frame(self, n: int, origin: int, frame_s: float) -> None:
        k, t = self._locate(n)
        image = self._clip(k).frames[t]  # (H, W, 3) uint8, shared read-only with the cache
        t_ns = origin + int(round(frame_s * 1e9))
        self._wait_until(t_ns)
        vf = VideoFrame(image=image, t_ns=t_ns, wall_time=wall_time(t_ns), index=n)
        while not self.frames.push(vf, block=self.lossless, timeout=0.1):
            if self._stop.is_set():
                return
        self._count("frames")

    def _on_end(self) -> None:
        self.audio.finish()
        self.frames.finish()

    def counters(self) -> dict[str, int]:
        """frames, drops (frame ring), audio_samples (16 kHz), clips (generated), reconnects, overflows."""
        out = super().counters()
        out["drops"] = self.frames.drops
        return out
