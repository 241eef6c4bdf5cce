"""Read files out of a Qt resource container (``.rcc``), as GCompris ships its media.

Format (Qt's ``rcc`` tool, versions 1-3; all integers big-endian):
header ``b"qres"``, version (u32), tree offset, data offset, names offset (u32 each), and from
version 3 a flags word (u32). The tree is an array of nodes, 14 bytes each (version 1) or 22
(versions 2-3: + a u64 modification time): name offset (u32), flags (u16), then for a
directory (flag 2) child count (u32) and index of the first child (u32), for a file country
(u16), language (u16) and data offset (u32). A name is a u16 length, a u32 hash and the name in
UTF-16BE. A data entry is a u32 size and the bytes; zlib-compressed entries (flag 1) start with
the uncompressed size (u32), zstd ones (flag 4) are a zstd frame.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Iterator

from streamavs.errors import DataError

__all__ = ["read_rcc"]

_DIRECTORY, _ZLIB, _ZSTD = 2, 1, 4
_MAX_FILE = 256 << 20  # no GCompris resource is near this; a larger claimed size means a corrupt file


def read_rcc(path: str | Path, suffixes: tuple[str, ...] = ()) -> Iterator[tuple[str, bytes]]:
    """(resource path, bytes) of every file in the container whose name ends with one of `suffixes` (all if empty).

    DataError names the file when it is not a Qt resource container or is truncated.
    """
    path = Path(path)
    blob = path.read_bytes()
    if blob[:4] != b"qres" or len(blob) < 20:
        raise DataError(f"{path} is not a Qt resource container (expected the magic b'qres', got {blob[:4]!r})")
    version, tree, data, names = struct.unpack_from(">IIII", blob, 4)
    if version not in (1, 2, 3):
        raise DataError(f"{path}: unsupported Qt resource version {version} (this reader knows 1-3)")
    node_size = 14 if version == 1 else 22

    def name_at(offset: int) -> str:
        (length,) = struct.unpack_from(">H", blob, names + offset)
        start = names + offset + 6
        return blob[start:start + 2 * length].decode("utf-16-be")

    def walk(index: int, prefix: str) -> Iterator[tuple[str, bytes]]:
        node = tree + index * node_size
        name_offset, flags = struct.unpack_from(">IH", blob, node)
        name = name_at(name_offset) if index else ""
        full = f"{prefix}/{name}" if name else prefix
        if flags & _DIRECTORY:
            count, first = struct.unpack_from(">II", blob, node + 6)
            for child in range(first, first + count):
                yield from walk(child, full)
            return
        if suffixes and not full.lower().endswith(suffixes):
            return
        (offset,) = struct.unpack_from(">I", blob, node + 10)
        (size,) = struct.unpack_from(">I", blob, data + offset)
        if size > _MAX_FILE or data + offset + 4 + size > len(blob):
            raise DataError(f"{path}: resource {full} claims {size} bytes past the end of the file (truncated?)")
        payload = blob[data + offset + 4:data + offset + 4 + size]
        if flags & _ZLIB:
            payload = zlib.decompress(payload[4:])
        elif flags & _ZSTD:
            raise DataError(f"{path}: resource {full} is zstd-compressed, which this reader does not support")
        yield full, payload

    try:
        yield from walk(0, "")
    except (struct.error, zlib.error, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: corrupt Qt resource container ({exc}); delete it and fetch the media again") from exc
