"""Writing files so that a reader never sees half of one.

:func:`atomic_write` is how engine manifests (``streamavs.engine.manifest``) and training
checkpoints (``streamavs.model.checkpoint``) reach the disk: a crash or a full disk leaves the
old file or none, never a truncated one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write"]


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
