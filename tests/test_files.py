"""streamavs.files.atomic_write: the whole file or the old one, never half of one."""

from __future__ import annotations

import stat

import pytest

from streamavs.files import atomic_write


def test_atomic_write_replaces_the_file_readable_by_all(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b"old")
    assert atomic_write(path, b"new\n") == path
    assert path.read_bytes() == b"new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]  # no temporary file left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
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
