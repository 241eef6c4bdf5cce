"""Thread limits for a process that runs numpy beside other busy threads, set by the caller (never at import).

The live pipeline sets them in :meth:`Pipeline.start`; the trainers set them before training.

numpy's OpenBLAS starts one thread per core for every matrix product. For the small products
of the audio front end (one 96 x 257 @ 257 x 64 per frame) those threads only fight the
engine and the capture threads for the CPU: on a busy 2-core machine one log-mel example took
18.8 ms (p50) with the default threads and 0.64 ms with one. OpenBLAS reads
``OPENBLAS_NUM_THREADS`` only when it loads, so the limit is applied through its C API on the
library that is already loaded (as threadpoolctl does).
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["limit_blas_threads"]

# Symbol names across OpenBLAS builds: plain, 64-bit-integer, and the scipy-openblas wheels numpy ships.
_SETTERS = (
    "openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "scipy_openblas_set_num_threads64_",
)


def _loaded_openblas() -> list[str]:
    """Paths of the OpenBLAS shared libraries mapped into this process (Linux; [] elsewhere)."""
    if not sys.platform.startswith("linux"):
        return []
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {line.split(None, 5)[-1].strip() for line in maps if "openblas" in line.lower()}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/") and ".so" in p)


def limit_blas_threads(n: int = 1) -> list[str]:
    """Set the thread count of every loaded OpenBLAS to `n`; returns the libraries changed.

    Imports numpy first (so its BLAS is loaded). Does nothing where OpenBLAS is not used.
    """
    import numpy  # noqa: F401  (loads the BLAS this limits)

    changed = []
    for path in _loaded_openblas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(ctypes.c_int(int(n)))
                changed.append(path)
                break
    return changed
