"""`streamavs data fetch`: real photographs and recordings from Debian packages, into a local cache.

The media are GPL / CC licensed, so StreamAVS never ships or commits them: this module
downloads the packages with ``apt-get download`` (no root needed once package lists exist),
unpacks them with ``dpkg-deb -x``, pulls the GCompris recordings out of their Qt resource
containers, and writes ``media.json``: each package's version, sha256, size and licence,
plus the catalogue of cut-outs, recordings and backgrounds with each file's size and sha256
(:mod:`streamavs.realmedia.catalog`, which also checks them before a bank uses the files).

Cache layout (``--cache``, default ``$STREAMAVS_MEDIA`` or ``~/.cache/streamavs/media``)::

    debs/<package>_<version>_all.deb
    packages/<package>/usr/share/...       dpkg-deb -x output
    gcompris/<activity>/<name>.ogg         recordings extracted from gcompris-qt-data's .rcc files
    media.json                             provenance + catalogue (read by the real-media bank)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable

from streamavs.errors import DataError, MissingDependency, SourceError
from streamavs.files import file_sha256

__all__ = ["PACKAGES", "GCOMPRIS_ACTIVITIES", "default_cache", "fetch_media", "read_media_index", "provenance",
           "MEDIA_INDEX"]

# Debian packages and the licence their copyright file states for the media we use.
PACKAGES: dict[str, str] = {
    "tuxpaint-stamps-default": "GPL-2 (every stamp: photographs, cut-outs, sound effects, spoken descriptions)",
    "gcompris-qt-data": (
        "GPL-3+ (Files: *, including the monument photographs); farm-animal photographs and recordings "
        "CC-BY-SA-4.0; instrument recordings per file (CC-BY-SA-3.0, drum_kit CC-sampling-plus-1.0); "
        "memory-sound recordings Free Art License; per-file details in the package's copyright file"
    ),
}
# GCompris activities whose media we extract: recordings (farm animals, instruments, everyday
# sounds) and the monument photographs used as real backgrounds.
GCOMPRIS_ACTIVITIES: tuple[str, ...] = ("explore_farm_animals", "instruments", "memory-sound", "explore_monuments")
MEDIA_INDEX = "media.json"
FORMAT = 2  # 2: every cut-out, recording and background records its bytes and sha256
_MIN_FREE_BYTES = 600 << 20  # ~210 MB of .deb + ~250 MB unpacked + recordings


def default_cache() -> Path:
    """``$STREAMAVS_MEDIA`` if set, else ``~/.cache/streamavs/media``."""
    env = os.environ.get("STREAMAVS_MEDIA")
    return Path(env) if env else Path.home() / ".cache" / "streamavs" / "media"


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SourceError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}")
    return proc.stdout


def _download(package: str, debs: Path, progress: Callable[[str], None]) -> Path:
    """The package's .deb in `debs`: one already there (copied in, or downloaded before), else one
    apt-get downloads into debs/.partial and that is moved in only once complete."""
    existing = sorted(debs.glob(f"{package}_*.deb"))
    for tool in ("dpkg-deb",) if existing else ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise MissingDependency(
                f"fetching the real media needs `{tool}` (a Debian or Ubuntu system); on another system copy "
                f"{package}_*.deb from a Debian mirror into {debs} and run the command again"
            )
    if existing:
        return existing[-1]
    progress(f"downloading {package} (apt-get download) ...")
    partial = debs / ".partial"
    shutil.rmtree(partial, ignore_errors=True)  # an interrupted download is never taken for a package
    partial.mkdir()
    proc = subprocess.run(["apt-get", "download", package], cwd=partial, capture_output=True, text=True)
    for deb in partial.glob(f"{package}_*.deb") if proc.returncode == 0 else ():
        deb.replace(debs / deb.name)
    shutil.rmtree(partial, ignore_errors=True)
    if proc.returncode != 0:
        err = proc.stderr.strip()
        if "Unable to locate package" in err or "Can't select" in err or "has no installation candidate" in err:
            raise SourceError(
                f"apt-get does not know the package {package!r}: {err.splitlines()[-1] if err else ''}; update the "
                "package lists first (`sudo apt-get update`), and check that Debian's main archive is enabled"
            )
        raise SourceError(f"`apt-get download {package}` failed (exit {proc.returncode}): {err[-400:]}; check the "
                          f"network (or proxy) to the package archive, or copy {package}_*.deb into {debs}")
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        raise SourceError(f"`apt-get download {package}` succeeded but wrote no {package}_*.deb into {debs}")
    return found[-1]


def _field(deb: Path, name: str) -> str:
    return _run(["dpkg-deb", "-f", str(deb), name]).strip()


def _unpack(deb: Path, target: Path) -> None:
    """dpkg-deb -x into a temporary folder, then move into place (an interrupted unpack leaves nothing half-done)."""
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _run(["dpkg-deb", "-x", str(deb), str(tmp)])
    except SourceError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        readable = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL).returncode == 0
        if readable:  # the package reads to its end: writing its files failed (space, permissions)
            raise DataError(f"unpacking {deb.name} into {target.parent} failed ({exc}); the package is intact: "
                            f"check the free space ({shutil.disk_usage(target.parent).free >> 20} MiB free, about "
                            f"{_MIN_FREE_BYTES >> 20} MiB needed) and that the folder is writable") from exc
        raise DataError(f"{deb} is not a readable Debian package ({exc}); delete it and fetch again") from exc
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def _extract_gcompris(unpacked: Path, out: Path) -> int:
    """Write the recordings and photographs of GCOMPRIS_ACTIVITIES under out/<activity>/; returns the count."""
    from streamavs.realmedia.rcc import read_rcc

    count = 0
    for activity in GCOMPRIS_ACTIVITIES:
        rcc = unpacked / "usr/share/gcompris-qt/rcc" / f"{activity}.rcc"
        if not rcc.is_file():
            raise DataError(f"gcompris-qt-data has no {rcc.name}; this package version lays its media out differently")
        folder = out / activity
        folder.mkdir(parents=True, exist_ok=True)
        for name, payload in read_rcc(rcc, suffixes=(".ogg", ".wav", ".webp")):
            (folder / name.rsplit("/", 1)[-1]).write_bytes(payload)
            count += 1
    return count


def fetch_media(cache: str | Path | None = None, packages: tuple[str, ...] = tuple(PACKAGES),
                progress: Callable[[str], None] = print) -> Path:
    """Download, verify, unpack and index the real media into `cache`; returns the path of media.json.

    Idempotent: packages already downloaded and unpacked at the same sha256 are not fetched again.
    """
    root = Path(cache) if cache is not None else default_cache()
    if root.exists() and not root.is_dir():
        raise DataError(f"media cache {root} is a file; give --cache a folder")
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    try:
        previous = read_media_index(root, required=False) or {}
    except DataError as exc:  # damaged, or of another format: rebuilt below
        progress(f"{exc}; rebuilding it")
        previous = {}
    unknown = [p for p in packages if p not in PACKAGES]
    if unknown:
        raise DataError(f"unknown media package(s) {unknown}; known: {', '.join(PACKAGES)}")
    (root / MEDIA_INDEX).unlink(missing_ok=True)  # until this fetch completes, no index vouches for the files
    records = {}
    for package in packages:
        known = previous.get("packages", {}).get(package)
        target = root / "packages" / package
        deb = _download_checked(package, debs, free, progress)
        sha = file_sha256(deb)
        if not (known and known["sha256"] == sha and target.is_dir()):
            progress(f"unpacking {deb.name} ...")
            _unpack(deb, target)
        records[package] = {
            "version": _field(deb, "Version"),
            "deb": deb.name,
            "sha256": sha,
            "bytes": deb.stat().st_size,
            "licence": PACKAGES[package],
            "copyright_file": f"packages/{package}/usr/share/doc/{package}/copyright",
        }
        progress(f"{package} {records[package]['version']}  sha256 {sha[:16]}...")
    for package, record in previous.get("packages", {}).items():  # not fetched this time, still unpacked
        if package not in records and package in PACKAGES and (root / "packages" / package).is_dir():
            records[package] = record  # keeps its provenance and licence in the index
    if "gcompris-qt-data" in packages:
        partial = root / "gcompris.partial"  # written aside, then swapped in: never half-written in place
        shutil.rmtree(partial, ignore_errors=True)
        n = _extract_gcompris(root / "packages" / "gcompris-qt-data", partial)
        shutil.rmtree(root / "gcompris", ignore_errors=True)
        partial.rename(root / "gcompris")
        progress(f"extracted {n} GCompris recordings and photographs")
    from streamavs.realmedia.catalog import build_catalog

    catalog = build_catalog(root)
    index = {"format": FORMAT, "packages": records, **catalog}
    path = root / MEDIA_INDEX
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(index, indent=1))
    tmp.replace(path)
    progress(f"indexed {len(catalog['cutouts'])} cut-outs, {len(catalog['recordings'])} recordings -> {path}")
    return path


def _download_checked(package: str, debs: Path, free: int, progress: Callable[[str], None]) -> Path:
    if not sorted(debs.glob(f"{package}_*.deb")) and free < _MIN_FREE_BYTES:
        raise DataError(
            f"not enough disk space for the real media in {debs}: {free >> 20} MiB free, about "
            f"{_MIN_FREE_BYTES >> 20} MiB needed; free some space or give --cache another folder"
        )
    deb = _download(package, debs, progress)
    if not re.fullmatch(rf"{re.escape(package)}_[^_]+_\w+\.deb", deb.name):
        raise DataError(f"unexpected package file name {deb.name} in {debs}")
    try:
        _field(deb, "Package")
    except SourceError as exc:
        raise DataError(f"{deb} is corrupt ({exc}); delete it and run `streamavs data fetch` again") from exc
    return deb


def read_media_index(root: str | Path | None = None, required: bool = True) -> dict | None:
    """The parsed media.json of the cache `root`; DataError with the fetch command if it is missing."""
    root = Path(root) if root is not None else default_cache()
    path = root / MEDIA_INDEX
    if not path.is_file():
        if not required:
            return None
        raise DataError(f"no real media in {root} (no {MEDIA_INDEX}); fetch them first: streamavs data fetch --cache {root}")
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is unreadable ({exc}); run `streamavs data fetch --cache {root}` again") from exc
    if index.get("format") != FORMAT:
        raise DataError(f"{path} has format {index.get('format')!r}, this StreamAVS reads {FORMAT}; fetch again")
    return index


def provenance(root: str | Path | None = None) -> dict:
    """What a dataset or engine built from these media records: package versions, sha256, licences, split rules."""
    index = read_media_index(root)
    return {"packages": index["packages"], "rules": index["rules"],
            "note": "GPL / CC media from Debian packages, fetched and built on the user's machine "
                    "(`streamavs data fetch`); the media are not distributed with StreamAVS"}
