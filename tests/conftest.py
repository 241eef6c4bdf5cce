"""Shared pytest fixtures and skips. Fixtures that make real media live in tests/media.py."""

from __future__ import annotations

import shutil

import pytest


def pytest_collection_modifyitems(config, items):
    """Skip tests marked `gpu` with a reason when CUDA is absent."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with CUDA; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    """Path of the ffmpeg binary (installed by .ci/run); tests that make media need it."""
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.fail("ffmpeg is not installed; run: apt-get install ffmpeg (.ci/run does)")
    return path
