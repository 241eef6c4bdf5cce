"""The length a Matroska/WebM file's header states (Segment Info Duration), read from its first bytes.

FFmpeg's ``container.duration`` cannot stand in for it: where the header states no length (a live
recording, written to a pipe) FFmpeg estimates one from the bit rate and the file size, and does not
say which it did (8 s for a complete 3 s file of mpeg4 + mp2). This reads what the file states, or
nothing. EBML layout: an element is an ID, a size, then its payload; IDs keep their length marker bits,
sizes drop them, and a size of all ones is unknown (the element runs to the end of its parent).
"""

from __future__ import annotations

import struct
from pathlib import Path

__all__ = ["segment_duration_s"]

_HEAD_BYTES = 1 << 20  # the Info element sits before the first Cluster, in the first few KB
_EBML, _SEGMENT, _INFO, _CLUSTER = 0x1A45DFA3, 0x18538067, 0x1549A966, 0x1F43B675
_TIMESTAMP_SCALE, _DURATION = 0x2AD7B1, 0x4489  # in Info: ns per tick (default 1 ms); length in ticks
_DEFAULT_TIMESTAMP_SCALE = 1_000_000


def segment_duration_s(path: str | Path) -> float | None:
    """Seconds of the Segment Info Duration of the Matroska/WebM file at `path` (as its timestamps
    count: from 0, so also where it ends); None when it states none, the file is not Matroska, or its
    header is cut off or unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read(_HEAD_BYTES)
        if not data.startswith(_EBML.to_bytes(4, "big")):
            return None
        for element, start, stop in _children(data, 0, len(data)):
            if element != _SEGMENT:
                continue
            for child, c_start, c_stop in _children(data, start, min(stop, len(data))):
                if child == _CLUSTER or c_stop > len(data):  # the media has begun, or Info is cut off
                    return None
                if child == _INFO:
                    return _duration_s(data, c_start, c_stop)
            return None
    except (OSError, ValueError):
        return None
    return None


def _duration_s(data: bytes, start: int, stop: int) -> float | None:
    """Seconds of the Duration in the Info element whose payload is data[start:stop] (None without one)."""
    scale, ticks = _DEFAULT_TIMESTAMP_SCALE, None
    for element, c_start, c_stop in _children(data, start, stop):
        payload = data[c_start:c_stop]
        if element == _TIMESTAMP_SCALE:
            scale = int.from_bytes(payload, "big")
        elif element == _DURATION and len(payload) in (4, 8):  # a big-endian float
            (ticks,) = struct.unpack(">f" if len(payload) == 4 else ">d", payload)
    return ticks * scale / 1e9 if ticks is not None and ticks > 0 and scale > 0 else None


def _children(data: bytes, start: int, stop: int):
    """(ID, payload start, payload end) of each element in data[start:stop]; one of unknown size ends
    at `stop`. Raises ValueError where the bytes are not EBML."""
    pos = start
    while pos < stop:
        element, pos, _ = _vint(data, pos)
        size, pos, length = _vint(data, pos)
        size &= (1 << 7 * length) - 1  # drop the length marker
        end = stop if size == (1 << 7 * length) - 1 else pos + size
        yield element, pos, end
        pos = end


def _vint(data: bytes, pos: int) -> tuple[int, int, int]:
    """(value with its length marker, position after it, its length in bytes) of the EBML variable-size
    integer at data[pos]: its first byte's leading zeros + 1 give the length (1 to 8)."""
    if pos >= len(data) or data[pos] == 0:
        raise ValueError(f"no EBML number at byte {pos}")
    length = 9 - data[pos].bit_length()
    if pos + length > len(data):
        raise ValueError(f"EBML number at byte {pos} runs past the bytes read")
    return int.from_bytes(data[pos:pos + length], "big"), pos + length, length
