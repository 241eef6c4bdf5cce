"""Writing files that every reader can read.

:func:`atomic_write` is how engine manifests (``streamavs.engine.manifest``) and training
checkpoints (``streamavs.model.checkpoint``) reach the disk: a crash or a full disk leaves the
old file or none, never a truncated one. :func:`jsonable` turns what manifests and reports hold
(numpy and torch values, paths, NaN) into plain JSON values. :func:`file_sha256` is the one
hash of a file's bytes (engine model files, fetched packages and media).
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

__all__ = ["atomic_write", "file_sha256", "jsonable"]


def atomic_write(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically: a temporary file in the same folder, flushed to disk, then renamed.

    The file is readable by all (0644), as a plain write would leave it; on any failure the
    temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def jsonable(x: Any) -> Any:
    """A copy of `x` that ``json.dumps`` writes as standard JSON, recursively.

    Mappings -> dicts with str keys; lists and tuples -> lists; numpy arrays and scalars and
    torch tensors -> numbers or lists (``tolist``); NaN and +-inf -> None (JSON has none; null
    reads "not measured"); anything else that is not a JSON value (a Path ...) -> its str.
    """
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "tolist"):  # np.ndarray, numpy scalars, torch.Tensor
        return jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return str(x)
