"""The options of one pipeline run: a small frozen dataclass, checked when it is made."""

from __future__ import annotations

from dataclasses import dataclass

from streamavs.errors import InputError
from streamavs.pipeline.preview import PreviewConfig
from streamavs.protocol import ENCODINGS

__all__ = ["PipelineConfig"]


@dataclass(frozen=True)
class PipelineConfig:
    """Options of one pipeline run.

    rate_hz: process at most this many frames per second of stream time (None: every frame the
        pairer hands over); frames skipped for the rate are counted as `rate_skipped`, not drops.
    gate: empty the published mask when the sounding score is below the engine manifest's
        ``thresholds.gate`` (off by default).
    encoding: wire encoding of the mask: "u8", "bits", "png" or "rle".
    max_audio_wait_s: the longest a frame waits for audio, which it does only when less than the
        frame time minus one audio block has arrived (streamavs.pairing.Pairer); when the wait runs
        out, the window ends at the frame with its missing tail zeros (``audio_padded``).
    poll_s: the loop wakes at least this often, frames or not: stop requests and source errors are
        seen then, and the pipeline's `on_tick` (e.g. the status line) is called.
    cv2_threads: OpenCV threads for resizing (set in start(); 1 avoids fighting the engine).
    blas_threads: numpy's OpenBLAS threads, process-wide (set in start(); None leaves them):
        the default OpenBLAS pool made one log-mel example 70x slower on a busy 2-core CPU.
    preview: also publish downscaled JPEG preview frames at this rate (None: no previews).
    linger_s: after a run that ended on its own (end of a file, `frames` or `seconds` reached), the
        longest :meth:`Pipeline.close` waits for the queued masks to reach subscribers that are
        behind, so they get the last ones; after a stop request (Ctrl-C) or an error it waits for none.
    """

    rate_hz: float | None = None
    gate: bool = False
    encoding: str = "u8"
    max_audio_wait_s: float = 0.1
    poll_s: float = 0.05
    cv2_threads: int = 1
    blas_threads: int | None = 1
    preview: PreviewConfig | None = None
    linger_s: float = 2.0

    def __post_init__(self) -> None:
        if self.rate_hz is not None and not self.rate_hz > 0:
            raise InputError(f"rate_hz must be > 0 frames per second (or None for every frame), got {self.rate_hz!r}")
        if self.encoding not in ENCODINGS:
            raise InputError(f"unknown mask encoding {self.encoding!r}; choose one of {list(ENCODINGS)}")
        if not self.linger_s >= 0:
            raise InputError(f"linger_s must be >= 0 seconds, got {self.linger_s!r}")
        if not self.max_audio_wait_s >= 0 or not self.poll_s > 0:
            raise InputError(
                f"max_audio_wait_s must be >= 0 and poll_s > 0 seconds, got {self.max_audio_wait_s!r}, {self.poll_s!r}"
            )
