"""streamavs.threads: the BLAS thread limit the pipeline and the trainers set."""

from __future__ import annotations

import numpy as np  # noqa: F401  (loads the BLAS the test looks for)
import pytest

from streamavs.threads import _loaded_openblas, limit_blas_threads


def test_blas_threads_are_limited_through_the_loaded_library():
    if not _loaded_openblas():  # numpy (imported above) has loaded its BLAS by now
        pytest.skip("numpy here does not use OpenBLAS")
    assert limit_blas_threads(1) == _loaded_openblas()
