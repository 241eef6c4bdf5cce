"""Mask-stream wire protocol v1: encode and decode `[topic, header, payload]` messages.

The full specification, written for clients in any language, is docs/protocol.md. In short:

- ``topic``: ASCII ``mask.<stream>`` or ``hb.<stream>`` (heartbeat, empty payload); optionally
  ``frame.<stream>`` (a JPEG preview frame, :mod:`streamavs.protocol_frame`), which v1 clients
  never subscribe to.
- ``header``: UTF-8 JSON object (``schema`` "streamavs.mask", ``v`` 1, ``session``, ``seq`` ...).
- ``payload``: the (H, W) mask in the header's ``encoding`` (``u8``, ``bits``, ``png`` or
  ``rle``; their byte layouts and decode limits are in :mod:`streamavs.protocol_payload`).

Binary encodings mark a pixel foreground when ``probability >= threshold``. Payload codecs
live in streamavs.protocol_payload and the decoder limits (DecodeLimits: largest mask, header
size and nesting) in streamavs.protocol_limits; both are re-exported here, the one import path.
Every malformed message, whatever is wrong with it, raises ProtocolError and nothing else.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from streamavs.errors import InputError, ProtocolError
from streamavs.protocol_frame import (  # noqa: F401  (re-exported)
    FRAME_ENCODING,
    FRAME_PREFIX,
    FRAME_SCHEMA,
    FrameMessage,
    check_jpeg,
    check_quality,
    encode_jpeg,
)
from streamavs.protocol_limits import DEFAULT_LIMITS, MAX_UINT, DecodeLimits  # noqa: F401  (re-exported)
from streamavs.protocol_payload import (  # noqa: F401  (re-exported: one import path for users)
    DEFAULT_THRESHOLD,
    ENCODINGS,
    PNG_SIGNATURE,
    _check_encoding,
    _chunk,
    check_shape,
    decode_mask,
    decode_png,
    encode_mask,
    encode_png,
    rle_counts,
)

SCHEMA = "streamavs.mask"
VERSION = 1
MASK_PREFIX = "mask."
HEARTBEAT_PREFIX = "hb."
STREAM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# Keys every mask header carries; heartbeats carry HEARTBEAT_KEYS only.
HEARTBEAT_KEYS = ("schema", "v", "session", "seq", "stream", "t_publish")
MASK_KEYS = HEARTBEAT_KEYS + (
    "t_capture", "audio_window", "shape", "encoding", "sounding", "uncertainty",
    "engine", "backend", "stage_ms", "dropped", "audio_overflows",
)  # fmt: skip
FRAME_KEYS = HEARTBEAT_KEYS + ("t_capture", "shape", "encoding", "quality")


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
    audio_padded: bool = False  # optional header key: part of the audio window was zeros
    payload: bytes = field(default=b"", repr=False)  # the mask as it arrived, in `encoding` (decoders set it)

    @property
    def topic(self) -> str:
        return MASK_PREFIX + self.stream

    def binary(self, threshold: float | None = None) -> np.ndarray:
        """The (H, W) bool mask: thresholded probabilities for ``u8``, the mask itself otherwise."""
        if self.mask.dtype == np.bool_:
            return self.mask
        if threshold is None:
            threshold = self.threshold if self.threshold is not None else DEFAULT_THRESHOLD
        return self.mask >= threshold


@dataclass(frozen=True)
class Heartbeat:
    """A decoded heartbeat (topic ``hb.<stream>``): the publisher is alive."""

    stream: str
    session: str
    seq: int
    t_publish: float



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
    threshold: float = DEFAULT_THRESHOLD,
    audio_padded: bool = False,
) -> list[bytes]:
    """Build the frames ``[topic, header, payload]`` of one mask message (times in Unix seconds).

    audio_padded: part of the audio window was zeros (optional key, sent only when true)."""
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
    if audio_padded:
        header["audio_padded"] = True
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


def encode_frame(
    jpeg: bytes,
    *,
    stream: str,
    session: str,
    seq: int,
    t_capture: float,
    t_publish: float,
    shape: tuple[int, int],
    quality: int,
    index: int | None = None,
) -> list[bytes]:
    """Build the frames ``[topic, header, jpeg]`` of one preview frame (topic ``frame.<stream>``).

    `shape` is the JPEG's (H, W); `t_capture` the same number as the frame's mask message."""
    check_stream_name(stream)
    h, w = (int(v) for v in shape)
    header = {
        "schema": FRAME_SCHEMA, "v": VERSION, "session": session, "seq": int(seq), "stream": stream,
        "t_capture": float(t_capture), "t_publish": float(t_publish), "shape": [h, w],
        "encoding": FRAME_ENCODING, "quality": check_quality(quality),
    }  # fmt: skip
    if index is not None:
        header["index"] = int(index)
    try:
        head = _dumps(header)
    except ValueError as exc:
        raise InputError(f"frame message times must be finite numbers: {exc}") from exc
    return [(FRAME_PREFIX + stream).encode("ascii"), head, bytes(jpeg)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    try:
        return _is_number(value) and math.isfinite(value)
    except OverflowError:  # an integer too large for a float (JSON allows 400-digit numbers)
        return False


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_UINT


def _is_engine(value: Any) -> bool:
    return isinstance(value.get("name"), str) and isinstance(value.get("sha256"), str)


# kind -> (check, what it expects, for the error message)
_KINDS = {
    "uint": (_is_uint, "a non-negative integer (at most 2**63 - 1)"),
    "number": (_is_finite, "a finite number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "stream": (lambda v: isinstance(v, str) and STREAM_NAME.match(v) is not None, "1-64 characters of A-Z a-z 0-9 _ -"),
    "window": (lambda v: isinstance(v, list) and len(v) == 2 and all(map(_is_finite, v)),
               "[start, end] of finite Unix seconds"),
    "ms": (lambda v: isinstance(v, dict) and all(map(_is_finite, v.values())),
           "an object of stage name -> finite milliseconds"),
    "engine": (lambda v: isinstance(v, dict) and _is_engine(v), 'an object {"name": str, "sha256": str}'),
}  # fmt: skip


def _field(header: Mapping[str, Any], key: str, kind: str) -> Any:
    """Fetch and type-check one header value; `kind` is a key of _KINDS (shapes: check_shape)."""
    value = header[key]
    check, expected = _KINDS[kind]
    if not check(value):
        got = repr(value)
        got = got if len(got) <= 80 else got[:77] + "..."
        raise ProtocolError(f"header key {key!r} must be {expected}, got {got}")
    return value


def _frame_bytes(frame: Any) -> bytes:
    if isinstance(frame, bytes):
        return frame
    try:
        return memoryview(frame).tobytes()
    except TypeError as exc:
        raise ProtocolError(f"message frames must be bytes, got {type(frame).__name__}") from exc


def _parse_header(frames: Sequence[Any], limits: DecodeLimits) -> tuple[str, dict, bytes]:
    """(topic, header, payload) of a message with its frame count, topic and version checked."""
    if not isinstance(frames, (list, tuple)) or len(frames) != 3:
        got = f"{len(frames)}" if isinstance(frames, (list, tuple)) else f"a {type(frames).__name__}"
        raise ProtocolError(f"a v1 message has 3 frames [topic, header, payload], got {got}")
    topic_b, head_b, payload = (_frame_bytes(f) for f in frames)
    try:
        topic = topic_b.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"the topic must be ASCII: {exc}") from exc
    header = limits.load_header(head_b)
    if not isinstance(header, dict):
        raise ProtocolError(f"the header must be a JSON object, got {type(header).__name__}")
    prefix = next((p for p in (MASK_PREFIX, HEARTBEAT_PREFIX, FRAME_PREFIX) if topic.startswith(p)), None)
    if prefix is None:
        raise ProtocolError(
            f"topic must start with 'mask.' or 'hb.' (or 'frame.', a preview frame), got {topic[:80]!r}"
        )
    keys = {MASK_PREFIX: MASK_KEYS, HEARTBEAT_PREFIX: HEARTBEAT_KEYS, FRAME_PREFIX: FRAME_KEYS}[prefix]
    missing = [k for k in keys if k not in header]
    if missing:
        raise ProtocolError(f"header of {topic[:80]!r} lacks required key(s): {', '.join(missing)}")
    schema = FRAME_SCHEMA if prefix == FRAME_PREFIX else SCHEMA
    if header["schema"] != schema:
        raise ProtocolError(f"header schema must be {schema!r}, got {repr(header['schema'])[:80]}")
    version = header["v"]
    if type(version) is not int or version != VERSION:  # bool is an int in Python, not in v1
        raise ProtocolError(
            f"this client speaks protocol v{VERSION}, the message is v{repr(version)[:40]} (`v` must be the "
            f"integer {VERSION}); use a StreamAVS subscriber of the same version as the publisher"
        )
    return topic, header, payload


def decode_message(
    frames: Sequence[bytes], limits: DecodeLimits = DEFAULT_LIMITS
) -> MaskMessage | Heartbeat | FrameMessage:
    """Decode and validate the frames of one message (a mask, a heartbeat or a preview frame).

    Raises ProtocolError naming what is wrong, and never another exception, for any frames: a
    message over `limits` (mask pixels, header bytes, JSON depth) is rejected before the
    decoder allocates for it.
    """
    topic, header, payload = _parse_header(frames, limits)
    is_hb = topic.startswith(HEARTBEAT_PREFIX)
    stream = _field(header, "stream", "stream")
    if topic.partition(".")[2] != stream:
        raise ProtocolError(f"topic {topic[:80]!r} does not match header stream {stream!r}")
    session, seq = _field(header, "session", "str"), _field(header, "seq", "uint")
    t_publish = float(_field(header, "t_publish", "number"))
    if topic.startswith(FRAME_PREFIX):
        return _decode_frame(header, payload, stream, session, seq, t_publish, limits)
    if is_hb:
        if payload:
            raise ProtocolError(f"a heartbeat has an empty payload, got {len(payload)} bytes")
        return Heartbeat(stream=stream, session=session, seq=seq, t_publish=t_publish)
    encoding = _field(header, "encoding", "str")
    _check_encoding(encoding, ProtocolError)
    shape = check_shape(header["shape"], limits)
    window = _field(header, "audio_window", "window")
    threshold = float(_field(header, "threshold", "number")) if "threshold" in header else None
    audio_padded = _field(header, "audio_padded", "bool") if "audio_padded" in header else False
    return MaskMessage(
        stream=stream, session=session, seq=seq,
        t_capture=float(_field(header, "t_capture", "number")), t_publish=t_publish,
        audio_window=(float(window[0]), float(window[1])), shape=shape, encoding=encoding,
        sounding=float(_field(header, "sounding", "number")),
        uncertainty=float(_field(header, "uncertainty", "number")),
        engine=dict(_field(header, "engine", "engine")), backend=_field(header, "backend", "str"),
        stage_ms={str(k): float(v) for k, v in _field(header, "stage_ms", "ms").items()},
        dropped=_field(header, "dropped", "uint"), audio_overflows=_field(header, "audio_overflows", "uint"),
        mask=decode_mask(payload, encoding, shape, limits), threshold=threshold, audio_padded=audio_padded,
        payload=payload,
    )  # fmt: skip


def _decode_frame(
    header: dict, payload: bytes, stream: str, session: str, seq: int, t_publish: float, limits: DecodeLimits
) -> FrameMessage:
    """The FrameMessage of a ``frame.<stream>`` message whose common keys were checked."""
    if header["encoding"] != FRAME_ENCODING:
        raise ProtocolError(f"a frame's encoding must be {FRAME_ENCODING!r}, got {repr(header['encoding'])[:40]}")
    quality = _field(header, "quality", "uint")
    if not 1 <= quality <= 100:
        raise ProtocolError(f"header key 'quality' must be in 1..100, got {quality}")
    shape = check_shape(header["shape"], limits)
    check_jpeg(payload, shape)
    index = _field(header, "index", "uint") if "index" in header else None
    return FrameMessage(
        stream=stream, session=session, seq=seq, t_capture=float(_field(header, "t_capture", "number")),
        t_publish=t_publish, shape=shape, quality=quality, jpeg=payload, index=index,
    )  # fmt: skip
