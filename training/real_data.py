"""The real-media training and test sets: re-exported from :mod:`streamavs.datasets.real` (numpy only)."""

from __future__ import annotations

from streamavs.datasets.real import (
    OFFSCREEN_ROLES, RecordingLoader, real_clips, real_frames, real_offscreen_bank, real_test_set, real_unseen_test_set,
)  # fmt: skip

__all__ = ["RecordingLoader", "real_offscreen_bank", "real_frames", "real_clips", "real_test_set", "real_unseen_test_set",
           "OFFSCREEN_ROLES"]
