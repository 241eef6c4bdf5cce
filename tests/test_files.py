"""streamavs.files.atomic_write: the whole file or the old one, never half of one."""

from __future__ import annotations

import stat

import pytest

from streamavs.files import atomic_write


def test_atomic_write_replaces_the_file_readable_by_all(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b"old")
    path.chmod(0o600)  # a write in place would keep this mode
    assert atomic_write(path, b"new\n") == path
    assert path.read_bytes() == b"new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]  # no temporary file left


# A write that fails part-way for real: the file-size limit (which binds root too) stops it after
# 4096 bytes with EFBIG. A write in place would leave the first 4096 bytes of the new data.
_FAILS_PART_WAY = """
import resource, signal, sys
from streamavs.files import atomic_write
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    atomic_write(sys.argv[1], b"x" * 100_000)
except OSError as exc:
    print(exc.errno)
"""


def test_a_write_that_fails_part_way_leaves_the_old_file_and_no_temporary(tmp_path):
    import errno
    import subprocess
    import sys

    path = tmp_path / "x.json"
    path.write_bytes(b"old")
    proc = subprocess.run([sys.executable, "-c", _FAILS_PART_WAY, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == str(errno.EFBIG), proc.stdout + proc.stderr
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_a_refused_value_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write(path, "text, not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_jsonable_gives_standard_json_values():
    import json
    import math
    from pathlib import Path

    import numpy as np

    from streamavs.files import jsonable

    value = {1: (np.float32(0.5), np.int64(3)), "a": np.arange(3), "nan": math.nan, "inf": -math.inf,
             "path": Path("x") / "y.json", "nested": [{"ok": True, "none": None}]}  # fmt: skip
    out = jsonable(value)
    assert out == {"1": [0.5, 3], "a": [0, 1, 2], "nan": None, "inf": None, "path": str(Path("x") / "y.json"),
                   "nested": [{"ok": True, "none": None}]}  # fmt: skip
    assert json.loads(json.dumps(out, allow_nan=False)) == out
