"""Limits a mask-stream decoder enforces before it allocates anything (wire protocol v1).

A correct publisher never comes near them: they exist so that one hostile or corrupt message
(a 4-byte RLE payload claiming a 65535x65535 mask, a PNG zlib bomb, a header nested 30,000 levels
deep) costs the subscriber an error, not gigabytes. docs/protocol.md, section "Limits", is the
specification; :class:`DecodeLimits` holds the values and the checks that need no payload.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamavs.errors import InputError, ProtocolError

_OPEN, _CLOSE = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)
_QUOTE, _BACKSLASH = ord('"'), ord("\\")

MAX_UINT = 2**63 - 1  # integers (seq, dropped, ...) fit a signed 64-bit integer, as C clients read them


@dataclass(frozen=True)
class DecodeLimits:
    """What one message may ask of a decoder. Pass to ``Subscriber(limits=...)`` or ``decode_message``.

    max_pixels: largest H * W of a mask (default 16 Mpixel = 4096 x 4096). It bounds every
        allocation of a payload decoder: a mask is never larger than this many pixels.
    max_header_bytes: largest header frame (UTF-8 JSON) in bytes; a v1 header is about 500.
    max_json_depth: deepest nesting of JSON arrays/objects in the header; a v1 header has 2.
    """

    max_pixels: int = 16 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    max_json_depth: int = 16

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_header_bytes", "max_json_depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"DecodeLimits.{name} must be a positive integer, got {value!r}")

    def check_pixels(self, h: int, w: int) -> int:
        """Return H * W, or raise ProtocolError when it exceeds `max_pixels`."""
        n = h * w
        if n > self.max_pixels:
            raise ProtocolError(
                f"mask shape {h}x{w} is {n} pixels, more than this decoder's limit of {self.max_pixels}; "
                "if the publisher really sends masks this large, raise it with "
                "Subscriber(limits=DecodeLimits(max_pixels=...)) (CLI: --max-pixels)"
            )
        return n

    def load_header(self, head: bytes) -> Any:
        """Parse a header frame: size, nesting depth and finite numbers are checked before use.

        Returns the parsed JSON value (the caller checks that it is an object).
        """
        if len(head) > self.max_header_bytes:
            raise ProtocolError(
                f"the header is {len(head)} bytes, more than this decoder's limit of {self.max_header_bytes}; "
                "a v1 header is about 500 bytes (raise DecodeLimits(max_header_bytes=...) if yours are larger)"
            )
        depth = _json_depth(head)
        if depth > self.max_json_depth:
            raise ProtocolError(
                f"the header nests JSON arrays/objects {depth} deep, more than this decoder's limit of "
                f"{self.max_json_depth}; a v1 header nests 2 deep"
            )
        try:
            return json.loads(head.decode("utf-8"), parse_float=_finite_float, parse_constant=_no_constant)
        except ProtocolError:
            raise
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            raise ProtocolError(f"expected the header UTF-8 JSON of a v1 message; it does not parse: {exc}") from exc


DEFAULT_LIMITS = DecodeLimits()


def _json_depth(head: bytes) -> int:
    """Deepest bracket nesting of a JSON text, brackets inside strings excluded; linear time.

    Exact for valid JSON. For invalid JSON it is still at least the depth json.loads reaches
    before it fails, because up to that point the text is a valid JSON prefix.
    """
    b = np.frombuffer(head, np.uint8)  # (N,)
    if not b.size:
        return 0
    idx = np.arange(b.size)
    # A quote is escaped when an odd number of backslashes precede it.
    last_plain = np.maximum.accumulate(np.where(b == _BACKSLASH, -1, idx))  # (N,) last non-backslash <= i
    run_before = np.concatenate(([0], idx[:-1] - last_plain[:-1]))  # (N,) backslashes just before i
    quote = (b == _QUOTE) & (run_before % 2 == 0)
    inside = np.cumsum(quote) % 2 == 1  # (N,) within a string (its opening quote included)
    step = np.isin(b, _OPEN).astype(np.int64) - np.isin(b, _CLOSE).astype(np.int64)
    step[inside] = 0
    return int(np.cumsum(step).max(initial=0))


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf
        raise ProtocolError(f"header numbers must be finite, got {text[:40]!r} (out of the float range)")
    return value


def _no_constant(text: str) -> float:
    raise ProtocolError(f"header numbers must be finite, got {text!r} (not JSON; a correct publisher never sends it)")
