"""streamavs.threads: the BLAS thread limit the pipeline and the trainers set."""

from __future__ import annotations

import ctypes

import numpy as np  # noqa: F401  (loads the BLAS the test looks for)
import pytest

from streamavs.threads import _SETTERS, _loaded_openblas, limit_blas_threads


def _thread_counts() -> dict[str, int]:
    """The thread count each loaded OpenBLAS reports, read through its own getter."""
    counts = {}
    for path in _loaded_openblas():
        lib = ctypes.CDLL(path)
        for name in (s.replace("_set_", "_get_") for s in _SETTERS):
            getter = getattr(lib, name, None)
            if getter is not None:
                getter.restype = ctypes.c_int
                counts[path] = getter()
                break
    return counts


def test_blas_threads_are_limited_through_the_loaded_library():
    if not _loaded_openblas():  # numpy (imported above) has loaded its BLAS by now
        pytest.skip("numpy here does not use OpenBLAS")
    before = _thread_counts()
    assert before, "no OpenBLAS getter found: the library's symbols changed"
    try:
        assert limit_blas_threads(1) == _loaded_openblas()
        assert set(_thread_counts().values()) == {1}
        limit_blas_threads(2)  # and back up: the count follows the call, whatever it was at load
        assert set(_thread_counts().values()) == {2}
    finally:
        for count in set(before.values()):
            limit_blas_threads(count)
