"""Engines: the Engine interface, manifests and one module per backend (imported on demand).

A manifest is read and checked by :mod:`~streamavs.engine.manifest`; export builds it from the
model with :mod:`~streamavs.engine.describe`.

>>> from streamavs.engine import load_engine          # doctest: +SKIP
>>> with load_engine("avs_lite") as engine:           # doctest: +SKIP
...     cache = engine.initial_cache()
...     out = engine.run(frame, log_mel, cache)       # frame (H, W, 3) uint8, log_mel (96, 64) float32
...     cache = out.cache
"""

from streamavs.engine.base import (
    DEFAULT_ENGINE, Engine, EngineOutput, default_engine, engine_dirs,
)
from streamavs.engine.base import find_engines, load_engine, resolve_engine
from streamavs.engine.manifest import FORMAT_VERSION, Manifest, read_manifest

__all__ = [
    "DEFAULT_ENGINE", "Engine", "EngineOutput", "default_engine", "FORMAT_VERSION", "Manifest", "engine_dirs", "find_engines", "load_engine",
    "read_manifest", "resolve_engine",
]
