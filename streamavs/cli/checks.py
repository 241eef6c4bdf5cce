"""Option checks the commands run before any work starts (so a bad path fails in one line, at once).

An output path is checked where it is given, not where it is first written: a recording, a
report or a dataset that can never be written should not cost a pipeline start-up or a whole
benchmark before it says so.
"""

from __future__ import annotations

import os
from pathlib import Path

from streamavs.errors import InputError

__all__ = ["output_file", "output_dir"]


def _nearest_existing(path: Path) -> Path:
    """`path` itself or its closest ancestor that exists ('.' for a relative path in a new folder)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _writable(folder: Path) -> bool:
    """Files can be created in `folder` (write and search permission; False on a read-only file system)."""
    return os.access(folder, os.W_OK | os.X_OK)


def _check_folder_chain(path: Path, option: str, folder: Path, *, create: bool, example: str) -> None:
    """`folder` (which is to hold `path`) exists, or can be made: its nearest existing ancestor is a writable folder."""
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise InputError(
            f"{option} {path}: {existing} is a file, not a folder, so nothing can be written under it; "
            f"choose a path in a folder, e.g. {option} {example}"
        )
    if existing != folder and not create:
        raise InputError(f"{option} {path}: the folder {folder} does not exist; create it first (mkdir -p {folder})")
    if not _writable(existing):
        raise InputError(
            f"{option} {path}: the folder {existing} is not writable (permission denied or a read-only file system); "
            f"choose a folder you can write to, e.g. {option} {example}"
        )


def output_file(path: Path | None, option: str, *, example: str = "out", create_parents: bool = True) -> Path | None:
    """Check that the file `path` given to `option` can be written; None passes.

    example: a file name for the advice (e.g. "out.mp4").
    create_parents: the command creates missing folders itself; when False, the folder must exist.
    Raises InputError naming the path, what is wrong with it and the fix.
    """
    if path is None:
        return None
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder; expected a file name, e.g. {option} {path / example}")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(
            f"{option} {path}: the file exists and is not writable; choose another name or make it writable"
        )
    _check_folder_chain(path, option, path.parent, create=create_parents, example=f"./{path.name or example}")
    return path


def output_dir(path: Path | None, option: str, *, example: str = "out") -> Path | None:
    """Check that the folder `path` given to `option` exists and is writable, or can be created; None passes.

    example: a folder name for the advice (e.g. "masks").
    Raises InputError naming the path, what is wrong with it and the fix.
    """
    if path is None:
        return None
    if path.exists() and not path.is_dir():
        raise InputError(
            f"{option} {path} is a file; expected a folder (created if missing): choose a path that is not a file, "
            f"e.g. {option} {path.parent / example}"
        )
    _check_folder_chain(path, option, path, create=True, example=f"./{path.name or example}")
    return path
