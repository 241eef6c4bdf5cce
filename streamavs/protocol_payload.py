"""Mask payloads of wire protocol v1: encode an (H, W) mask, and decode it within DecodeLimits.

``u8``   probabilities rounded to 0..255, row-major, H*W bytes.
``bits`` binary mask packed 8 pixels a byte, row-major, first pixel in the most significant
         bit (``np.packbits`` big bit order), ceil(H*W/8) bytes, padding bits zero.
``png``  8-bit grayscale PNG of the *binary* mask times 255 (pixels are 0 or 255).
``rle``  COCO uncompressed RLE of the binary mask: run lengths over the column-major
         (Fortran-order) pixels, alternating background/foreground and starting with a
         background run (0 when the first pixel is foreground), as uint32 little-endian.

Decoders check the payload size against the encoding and the header shape before they
allocate, and never allocate more than a few times H*W bytes (H*W <= DecodeLimits.max_pixels).
PNGs are inflated here with a cap on the output; OpenCV only un-filters PNGs whose rows use
filters other than None (which this module never writes), after the size checks.
"""

from __future__ import annotations

import struct
import zlib
from typing import Sequence

import numpy as np

from streamavs.errors import InputError, ProtocolError
from streamavs.protocol_limits import DEFAULT_LIMITS, DecodeLimits

ENCODINGS = ("u8", "bits", "png", "rle")
# Binary encodings keep pixels with probability >= threshold; this one when the sender names none
# (an engine's manifest states its own, thresholds.mask).
DEFAULT_THRESHOLD = 0.5
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Adam7 passes: (first column, first row, column step, row step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _check_encoding(encoding: object, error: type[Exception]) -> None:
    if not isinstance(encoding, str) or encoding not in ENCODINGS:
        raise error(f"unknown mask encoding {encoding!r}; valid encodings: {', '.join(ENCODINGS)}")


# ---------------------------------------------------------------------------------- encode
def encode_mask(prob: np.ndarray, encoding: str = "u8", threshold: float = DEFAULT_THRESHOLD) -> bytes:
    """Encode an (H, W) probability mask (float in [0, 1], or bool) as a protocol v1 payload.

    Binary encodings (bits, png, rle) keep pixels with ``prob >= threshold``.
    """
    _check_encoding(encoding, InputError)
    prob = np.asarray(prob)
    if prob.ndim != 2 or prob.shape[0] < 1 or prob.shape[1] < 1:
        raise InputError(f"a mask must be a non-empty 2-D (H, W) array, got shape {prob.shape}")
    if prob.dtype == np.bool_:
        binary = prob
        if encoding == "u8":
            return (prob.astype(np.uint8) * 255).tobytes()
    elif np.issubdtype(prob.dtype, np.floating):
        lo, hi = float(prob.min()), float(prob.max())
        if not (lo >= 0.0 and hi <= 1.0):  # also false for NaN
            raise InputError(
                f"mask probabilities must lie in [0, 1], got values in [{lo}, {hi}]; "
                "apply a sigmoid to logits before publishing"
            )
        if encoding == "u8":
            return np.rint(prob * 255.0).astype(np.uint8).tobytes()  # (H, W) row-major
        binary = prob >= threshold
    else:
        raise InputError(
            f"a mask must be float probabilities in [0, 1] or bool, got dtype {prob.dtype}; "
            "convert 0..255 images with img.astype(np.float32) / 255"
        )
    if encoding == "bits":
        return np.packbits(binary.ravel(), bitorder="big").tobytes()
    if encoding == "png":
        return encode_png(binary.astype(np.uint8) * 255)
    return rle_counts(binary).astype("<u4").tobytes()


def rle_counts(binary: np.ndarray) -> np.ndarray:
    """COCO uncompressed RLE counts (int64) of an (H, W) bool mask: column-major runs, zeros first."""
    flat = np.asarray(binary, dtype=bool).ravel(order="F")  # (H*W,) column by column, as COCO
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate(([0], change, [flat.size])))
    if flat[0]:
        counts = np.concatenate(([0], counts))  # the first run is always background
    return counts.astype(np.int64)


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def encode_png(img: np.ndarray, level: int = 1) -> bytes:
    """An (H, W) uint8 image as an 8-bit grayscale, non-interlaced PNG (filter None on every row).

    zlib level 1 by default: on 224x224 masks it is 2-10x faster than level 6 (bounded worst
    case on noisy masks) for payloads of a few hundred bytes on typical blob masks.
    """
    img = np.ascontiguousarray(img, dtype=np.uint8)
    h, w = img.shape
    raw = np.zeros((h, w + 1), np.uint8)  # (H, 1 + W): filter-type byte 0, then the row
    raw[:, 1:] = img
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # depth 8, grayscale, deflate, no interlace
    idat = zlib.compress(raw.tobytes(), level)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


# ---------------------------------------------------------------------------------- decode
def check_shape(shape: object, limits: DecodeLimits = DEFAULT_LIMITS) -> tuple[int, int]:
    """(H, W) from a header's shape: two positive integers with H*W <= limits.max_pixels."""
    ok = isinstance(shape, (list, tuple)) and len(shape) == 2
    ok = ok and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in shape)
    if not ok:
        got = repr(shape)
        got = got if len(got) <= 80 else got[:77] + "..."
        raise ProtocolError(f"header key 'shape' must be [H, W] of positive integers, got {got}")
    h, w = int(shape[0]), int(shape[1])
    limits.check_pixels(h, w)
    return h, w


def decode_mask(
    payload: bytes, encoding: str, shape: Sequence[int], limits: DecodeLimits = DEFAULT_LIMITS
) -> np.ndarray:
    """Decode a payload to an (H, W) mask: float32 in [0, 1] for ``u8``, bool otherwise.

    Raises ProtocolError (and nothing else) when the payload does not match `encoding` and
    `shape`, or when the shape exceeds `limits`; the size is checked before allocating.
    """
    _check_encoding(encoding, ProtocolError)
    h, w = check_shape(shape, limits)
    n = h * w
    try:
        buf = memoryview(payload).cast("B")
    except TypeError as exc:
        raise ProtocolError(f"a payload must be bytes, got {type(payload).__name__}") from exc
    if encoding == "u8":
        if len(buf) != n:
            raise ProtocolError(f"u8 payload of shape {h}x{w} must be {n} bytes, got {len(buf)}")
        return np.frombuffer(buf, np.uint8).reshape(h, w).astype(np.float32) / np.float32(255.0)
    if encoding == "bits":
        return _decode_bits(buf, h, w)
    if encoding == "png":
        img = decode_png(bytes(buf), (h, w), limits)
        if np.count_nonzero((img != 0) & (img != 255)):
            raise ProtocolError("png payload must hold a binary mask (pixels 0 or 255 only)")
        return img == 255
    return _decode_rle(buf, h, w)


def _decode_bits(buf: memoryview, h: int, w: int) -> np.ndarray:
    n = h * w
    expected = (n + 7) // 8
    if len(buf) != expected:
        raise ProtocolError(f"bits payload of shape {h}x{w} must be ceil({n}/8) = {expected} bytes, got {len(buf)}")
    packed = np.frombuffer(buf, np.uint8)
    if n % 8 and packed[-1] & (0xFF >> (n % 8)):
        raise ProtocolError("bits payload has non-zero padding bits after the last pixel")
    bits = np.unpackbits(packed, count=n, bitorder="big")  # (H*W,) 0 or 1
    return bits.view(bool).reshape(h, w)


def _decode_rle(buf: memoryview, h: int, w: int) -> np.ndarray:
    n = h * w
    if len(buf) % 4 or not len(buf):
        raise ProtocolError(f"rle payload must be a non-empty sequence of uint32 counts, got {len(buf)} bytes")
    if len(buf) // 4 > n + 1:  # at most one run per pixel, plus a leading 0
        raise ProtocolError(f"rle payload has {len(buf) // 4} counts, a {h}x{w} mask has at most {n + 1} runs")
    counts = np.frombuffer(buf, "<u4").astype(np.int64)  # (R,)
    total = int(counts.sum())
    if total != n:
        raise ProtocolError(f"rle counts sum to {total} pixels, header shape {h}x{w} has {n}")
    if counts.size > 1 and not counts[1:].all():
        raise ProtocolError("rle counts after the first must be positive (only the first run may be 0)")
    values = (np.arange(counts.size) % 2).astype(bool)  # runs alternate 0, 1, 0, ...
    return np.repeat(values, counts).reshape((h, w), order="F")  # (H, W) from column-major


# ----------------------------------------------------------------------------------- PNG
def _png_chunks(data: bytes) -> tuple[tuple[int, ...], list[bytes]]:
    """The IHDR fields and IDAT bodies of a PNG, with signature, order, lengths and CRCs checked."""
    if not data.startswith(PNG_SIGNATURE):
        raise ProtocolError("png payload does not start with the PNG signature 89 50 4E 47 0D 0A 1A 0A")
    pos, idat, ihdr = len(PNG_SIGNATURE), [], None
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if len(body) != length or pos + 12 + length > len(data):
            raise ProtocolError(f"png chunk {tag!r} is truncated")
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        if crc != zlib.crc32(tag + body):
            raise ProtocolError(f"png chunk {tag!r} has a bad CRC")
        pos += 12 + length
        if ihdr is None and tag != b"IHDR":
            raise ProtocolError(f"png payload must start with an IHDR chunk, got {tag!r} first")
        if tag == b"IHDR":
            if ihdr is not None or length != 13:
                raise ProtocolError(f"png payload must have one IHDR chunk of 13 bytes, got one of {length}")
            ihdr = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat.append(body)
        elif tag == b"IEND":
            break
    if ihdr is None or not idat:
        raise ProtocolError("png payload lacks an IHDR or IDAT chunk")
    return ihdr, idat


def _raw_png_size(h: int, w: int, interlace: int) -> int:
    """Bytes of filtered scanlines (a filter byte + W bytes per row) of an 8-bit grayscale image."""
    if interlace == 0:
        return h * (w + 1)
    size = 0
    for x0, y0, dx, dy in _ADAM7:
        cols, rows = max(0, -(-(w - x0) // dx)), max(0, -(-(h - y0) // dy))
        size += rows * (cols + 1) if cols and rows else 0
    return size


def decode_png(
    data: bytes, shape: Sequence[int] | None = None, limits: DecodeLimits = DEFAULT_LIMITS
) -> np.ndarray:
    """Decode an 8-bit grayscale PNG to an (H, W) uint8 array, checking its structure.

    The IHDR is checked (size against `shape` when given and `limits.max_pixels`; bit depth 8,
    colour type 0) before the image data is inflated, and inflating stops at the size the IHDR
    implies, so a zlib bomb costs no memory. Raises ProtocolError on any bad PNG.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise ProtocolError(f"a png payload must be bytes, got {type(data).__name__}")
    if shape is not None:
        shape = check_shape(shape, limits)
    ihdr, idat = _png_chunks(bytes(data))
    w, h, depth, color, compression, filter_method, interlace = ihdr
    if shape is not None and (h, w) != tuple(shape):
        raise ProtocolError(f"png payload is {h}x{w}, header shape is {shape[0]}x{shape[1]}")
    if h < 1 or w < 1:
        raise ProtocolError(f"png payload must be at least 1x1, got {h}x{w}")
    limits.check_pixels(h, w)
    if depth != 8 or color != 0:
        raise ProtocolError(f"png payload must be 8-bit grayscale, got bit depth {depth}, colour type {color}")
    if compression != 0 or filter_method != 0 or interlace not in (0, 1):
        raise ProtocolError(
            f"png payload has compression {compression}, filter method {filter_method}, interlace {interlace}; "
            "PNG defines 0, 0 and 0 or 1"
        )
    expected, data = _raw_png_size(h, w, interlace), b"".join(idat)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, expected + 1)  # at most one byte too many
    except zlib.error as exc:
        raise ProtocolError(f"png image data does not inflate: {exc}") from exc
    if len(raw) != expected or not inflater.eof:
        got = "more" if len(raw) > expected else ("less" if len(raw) < expected else "an unfinished stream")
        raise ProtocolError(f"png image data of a {h}x{w} image must inflate to {expected} bytes, got {got}")
    if interlace == 0:
        rows = np.frombuffer(raw, np.uint8).reshape(h, w + 1)  # (H, 1 + W)
        if not rows[:, 0].any():  # every row uses filter None: no un-filtering needed
            return rows[:, 1:]
        if rows[:, 0].max() > 4:
            raise ProtocolError(f"png row filter types are 0-4, got {int(rows[:, 0].max())}")
    return _unfilter_with_opencv(ihdr, data, h, w)


def _unfilter_with_opencv(ihdr: tuple[int, ...], idat: bytes, h: int, w: int) -> np.ndarray:
    """Decode a checked PNG whose rows use filters or interlacing (other writers do) with OpenCV.

    Only the checked IHDR and image data are handed over (ancillary chunks are dropped), so
    OpenCV allocates no more than the checks above allowed.
    """
    import cv2

    png = PNG_SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", *ihdr)) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    try:
        img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ProtocolError(f"png payload does not decode: {exc}") from exc
    if img is None or img.shape != (h, w) or img.dtype != np.uint8:
        raise ProtocolError(f"png payload does not decode to a {h}x{w} 8-bit grayscale image")
    return img
