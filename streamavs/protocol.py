"""Mask-stream wire protocol v1: encode and decode `[topic, header, payload]` messages.

The full specification, written for clients in any language, is docs/protocol.md. In short:

- ``topic``: ASCII ``mask.<stream>`` or ``hb.<stream>`` (heartbeat, empty payload).
- ``header``: UTF-8 JSON object (``schema`` "streamavs.mask", ``v`` 1, ``session``, ``seq`` ...).
- ``payload``: the (H, W) mask in the header's ``encoding``:

  ``u8``   probabilities rounded to 0..255, row-major, H*W bytes.
  ``bits`` binary mask packed 8 pixels a byte, row-major, first pixel in the most significant
           bit (``np.packbits`` big bit order), ceil(H*W/8) bytes, padding bits zero.
  ``png``  8-bit grayscale PNG of the *binary* mask times 255 (pixels are 0 or 255).
  ``rle``  COCO uncompressed RLE of the binary mask: run lengths over the column-major
           (Fortran-order) pixels, alternating background/foreground and starting with a
           background run (0 when the first pixel is foreground), as uint32 little-endian.

Binary encodings mark a pixel foreground when ``probability >= threshold``. This module
needs numpy, json and zlib only (OpenCV decodes PNGs whose rows use PNG filters other than
None, which this module never writes).
"""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from streamavs.errors import InputError, ProtocolError

SCHEMA = "streamavs.mask"
VERSION = 1
ENCODINGS = ("u8", "bits", "png", "rle")
MASK_PREFIX = "mask."
HEARTBEAT_PREFIX = "hb."
STREAM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# Keys every mask header carries; heartbeats carry HEARTBEAT_KEYS only.
HEARTBEAT_KEYS = ("schema", "v", "session", "seq", "stream", "t_publish")
MASK_KEYS = HEARTBEAT_KEYS + (
    "t_capture", "audio_window", "shape", "encoding", "sounding", "uncertainty",
    "engine", "backend", "stage_ms", "dropped", "audio_overflows",
)  # fmt: skip

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True, eq=False)  # eq=False: identity comparison (a field is an ndarray)
class MaskMessage:
    """One decoded mask message. Times are Unix seconds (wall clock of the publisher's host).

    `mask` is (H, W): float32 probabilities in [0, 1] for ``u8`` (multiples of 1/255), bool for
    the binary encodings ``bits``, ``png`` and ``rle``.
    """

    stream: str
    session: str
    seq: int
    t_capture: float
    t_publish: float
    audio_window: tuple[float, float]
    shape: tuple[int, int]
    encoding: str
    sounding: float
    uncertainty: float
    engine: Mapping[str, str]
    backend: str
    stage_ms: Mapping[str, float]
    dropped: int
    audio_overflows: int
    mask: np.ndarray
    threshold: float | None = None  # optional header key: the threshold of binary encodings

    @property
    def topic(self) -> str:
        return MASK_PREFIX + self.stream

    def binary(self, threshold: float | None = None) -> np.ndarray:
        """The (H, W) bool mask: thresholded probabilities for ``u8``, the mask itself otherwise."""
        if self.mask.dtype == np.bool_:
            return self.mask
        if threshold is None:
            threshold = self.threshold if self.threshold is not None else 0.5
        return self.mask >= threshold


@dataclass(frozen=True)
class Heartbeat:
    """A decoded heartbeat (topic ``hb.<stream>``): the publisher is alive."""

    stream: str
    session: str
    seq: int
    t_publish: float


# ---------------------------------------------------------------------------------- payloads
def _check_encoding(encoding: str, error: type[Exception]) -> None:
    if encoding not in ENCODINGS:
        raise error(f"unknown mask encoding {encoding!r}; valid encodings: {', '.join(ENCODINGS)}")


def encode_mask(prob: np.ndarray, encoding: str = "u8", threshold: float = 0.5) -> bytes:
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


def decode_mask(payload: bytes, encoding: str, shape: Sequence[int]) -> np.ndarray:
    """Decode a payload to an (H, W) mask: float32 in [0, 1] for ``u8``, bool otherwise.

    Raises ProtocolError when the payload does not match `encoding` and `shape`.
    """
    _check_encoding(encoding, ProtocolError)
    h, w = (int(s) for s in shape)
    n = h * w
    buf = memoryview(payload)
    if encoding == "u8":
        if len(buf) != n:
            raise ProtocolError(f"u8 payload of shape {h}x{w} must be {n} bytes, got {len(buf)}")
        return np.frombuffer(buf, np.uint8).reshape(h, w).astype(np.float32) / np.float32(255.0)
    if encoding == "bits":
        expected = (n + 7) // 8
        if len(buf) != expected:
            raise ProtocolError(
                f"bits payload of shape {h}x{w} must be ceil({n}/8) = {expected} bytes, got {len(buf)}"
            )
        bits = np.unpackbits(np.frombuffer(buf, np.uint8), bitorder="big")
        if bits[n:].any():
            raise ProtocolError("bits payload has non-zero padding bits after the last pixel")
        return bits[:n].reshape(h, w).astype(bool)
    if encoding == "png":
        img = decode_png(bytes(buf))
        if img.shape != (h, w):
            raise ProtocolError(f"png payload is {img.shape[0]}x{img.shape[1]}, header shape is {h}x{w}")
        if np.count_nonzero((img != 0) & (img != 255)):
            raise ProtocolError("png payload must hold a binary mask (pixels 0 or 255 only)")
        return img == 255
    # rle
    if len(buf) % 4 or not len(buf):
        raise ProtocolError(f"rle payload must be a non-empty sequence of uint32 counts, got {len(buf)} bytes")
    counts = np.frombuffer(buf, "<u4").astype(np.int64)
    total = int(counts.sum())
    if total != n:
        raise ProtocolError(f"rle counts sum to {total} pixels, header shape {h}x{w} has {n}")
    if counts.size > 1 and not counts[1:].all():
        raise ProtocolError("rle counts after the first must be positive (only the first run may be 0)")
    values = (np.arange(counts.size) % 2).astype(bool)  # runs alternate 0, 1, 0, ...
    return np.repeat(values, counts).reshape((h, w), order="F")  # (H, W) from column-major


# ----------------------------------------------------------------------------------- PNG
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


def decode_png(data: bytes) -> np.ndarray:
    """Decode an 8-bit grayscale PNG to an (H, W) uint8 array, checking its structure."""
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
        if tag == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat.append(body)
        elif tag == b"IEND":
            break
    if ihdr is None or not idat:
        raise ProtocolError("png payload lacks an IHDR or IDAT chunk")
    w, h, depth, color, _, _, interlace = ihdr
    if depth != 8 or color != 0:
        raise ProtocolError(f"png payload must be 8-bit grayscale, got bit depth {depth}, colour type {color}")
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as exc:
        raise ProtocolError(f"png image data does not inflate: {exc}") from exc
    if interlace == 0 and len(raw) == h * (w + 1):
        rows = np.frombuffer(raw, np.uint8).reshape(h, w + 1)  # (H, 1 + W)
        if not rows[:, 0].any():  # every row uses filter None: no un-filtering needed
            return rows[:, 1:]
    import cv2  # other writers may use PNG row filters or interlacing

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.shape != (h, w) or img.dtype != np.uint8:
        raise ProtocolError(f"png payload does not decode to a {h}x{w} 8-bit grayscale image")
    return img


# -------------------------------------------------------------------------------- messages
def _dumps(header: dict) -> bytes:
    return json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")


def check_stream_name(stream: str) -> str:
    """Return `stream` when it is a valid stream name (1-64 of A-Z a-z 0-9 _ -), else raise InputError."""
    if not isinstance(stream, str) or not STREAM_NAME.match(stream):
        raise InputError(f"stream names are 1-64 characters of A-Z a-z 0-9 _ - (no dots), got {stream!r}")
    return stream


def encode_message(
    mask_prob: np.ndarray,
    *,
    stream: str,
    session: str,
    seq: int,
    t_capture: float,
    t_publish: float,
    audio_window: tuple[float, float],
    sounding: float,
    uncertainty: float,
    engine: Mapping[str, str],
    backend: str,
    stage_ms: Mapping[str, float],
    dropped: int,
    audio_overflows: int,
    encoding: str = "u8",
    threshold: float = 0.5,
) -> list[bytes]:
    """Build the frames ``[topic, header, payload]`` of one mask message (times in Unix seconds)."""
    check_stream_name(stream)
    if not (isinstance(engine, Mapping) and _is_engine(engine)):
        raise InputError(f"engine must be a mapping with str 'name' and 'sha256' (hex prefix), got {engine!r}")
    payload = encode_mask(mask_prob, encoding, threshold)
    h, w = np.shape(mask_prob)
    header = {
        "schema": SCHEMA, "v": VERSION, "session": session, "seq": int(seq), "stream": stream,
        "t_capture": float(t_capture), "t_publish": float(t_publish),
        "audio_window": [float(audio_window[0]), float(audio_window[1])],
        "shape": [int(h), int(w)], "encoding": encoding, "threshold": float(threshold),
        "sounding": float(sounding), "uncertainty": float(uncertainty),
        "engine": {"name": engine["name"], "sha256": engine["sha256"]}, "backend": str(backend),
        "stage_ms": {str(k): float(v) for k, v in stage_ms.items()},
        "dropped": int(dropped), "audio_overflows": int(audio_overflows),
    }  # fmt: skip
    try:
        head = _dumps(header)
    except ValueError as exc:  # NaN or infinity in a float field
        raise InputError(f"mask message fields must be finite numbers: {exc}") from exc
    return [(MASK_PREFIX + stream).encode("ascii"), head, payload]


def encode_heartbeat(*, stream: str, session: str, seq: int, t_publish: float) -> list[bytes]:
    """Build the frames ``[topic, header, b""]`` of one heartbeat."""
    check_stream_name(stream)
    header = {
        "schema": SCHEMA, "v": VERSION, "session": session, "seq": int(seq), "stream": stream,
        "t_publish": float(t_publish),
    }  # fmt: skip
    return [(HEARTBEAT_PREFIX + stream).encode("ascii"), _dumps(header), b""]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_engine(value: Any) -> bool:
    return isinstance(value.get("name"), str) and isinstance(value.get("sha256"), str)


def _field(header: Mapping[str, Any], key: str, kind: str) -> Any:
    """Fetch and type-check one header value; `kind` is int, uint, number, str, window, shape, ms."""
    value = header[key]
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "uint": isinstance(value, int) and not isinstance(value, bool) and value >= 0,
        "number": _is_number(value) and math.isfinite(value),
        "str": isinstance(value, str),
        "window": isinstance(value, list) and len(value) == 2
        and all(_is_number(v) for v in value),
        "shape": isinstance(value, list) and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value),
        "ms": isinstance(value, dict) and all(_is_number(v) for v in value.values()),
        "engine": isinstance(value, dict) and _is_engine(value),
    }[kind]  # fmt: skip
    if not ok:
        expected = {
            "int": "an integer", "uint": "a non-negative integer", "number": "a finite number",
            "str": "a string", "window": "[start, end] in Unix seconds", "shape": "[H, W] of positive integers",
            "ms": "an object of stage name -> milliseconds", "engine": 'an object {"name": str, "sha256": str}',
        }[kind]  # fmt: skip
        raise ProtocolError(f"header key {key!r} must be {expected}, got {value!r}")
    return value


def decode_message(frames: Sequence[bytes]) -> MaskMessage | Heartbeat:
    """Decode and validate the frames of one message; raises ProtocolError naming what is wrong."""
    if len(frames) != 3:
        raise ProtocolError(f"a v1 message has 3 frames [topic, header, payload], got {len(frames)}")
    topic_b, head_b, payload = (bytes(f) if not isinstance(f, bytes) else f for f in frames)
    try:
        topic = topic_b.decode("ascii")
        header = json.loads(head_b.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"the topic must be ASCII and the header UTF-8 JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ProtocolError(f"the header must be a JSON object, got {type(header).__name__}")
    is_hb = topic.startswith(HEARTBEAT_PREFIX)
    if not (is_hb or topic.startswith(MASK_PREFIX)):
        raise ProtocolError(f"topic must start with 'mask.' or 'hb.', got {topic!r}")
    missing = [k for k in (HEARTBEAT_KEYS if is_hb else MASK_KEYS) if k not in header]
    if missing:
        raise ProtocolError(f"header of {topic!r} lacks required key(s): {', '.join(missing)}")
    if header["schema"] != SCHEMA:
        raise ProtocolError(f"header schema must be {SCHEMA!r}, got {header['schema']!r}")
    if header["v"] != VERSION:
        raise ProtocolError(
            f"this client speaks protocol v{VERSION}, the message is v{header['v']!r}; "
            "use a StreamAVS subscriber of the same version as the publisher"
        )
    stream = _field(header, "stream", "str")
    prefix = HEARTBEAT_PREFIX if is_hb else MASK_PREFIX
    if topic != prefix + stream:
        raise ProtocolError(f"topic {topic!r} does not match header stream {stream!r}")
    session, seq = _field(header, "session", "str"), _field(header, "seq", "uint")
    t_publish = float(_field(header, "t_publish", "number"))
    if is_hb:
        if payload:
            raise ProtocolError(f"a heartbeat has an empty payload, got {len(payload)} bytes")
        return Heartbeat(stream=stream, session=session, seq=seq, t_publish=t_publish)
    encoding = _field(header, "encoding", "str")
    _check_encoding(encoding, ProtocolError)
    shape = tuple(_field(header, "shape", "shape"))
    window = _field(header, "audio_window", "window")
    threshold = header.get("threshold")
    return MaskMessage(
        stream=stream, session=session, seq=seq,
        t_capture=float(_field(header, "t_capture", "number")), t_publish=t_publish,
        audio_window=(float(window[0]), float(window[1])), shape=shape, encoding=encoding,
        sounding=float(_field(header, "sounding", "number")),
        uncertainty=float(_field(header, "uncertainty", "number")),
        engine=dict(_field(header, "engine", "engine")), backend=_field(header, "backend", "str"),
        stage_ms={str(k): float(v) for k, v in _field(header, "stage_ms", "ms").items()},
        dropped=_field(header, "dropped", "uint"), audio_overflows=_field(header, "audio_overflows", "uint"),
        mask=decode_mask(payload, encoding, shape),
        threshold=float(threshold) if _is_number(threshold) else None,
    )  # fmt: skip
