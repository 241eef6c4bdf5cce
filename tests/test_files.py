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
