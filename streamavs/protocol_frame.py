"""Preview frames of the mask stream: the optional topic ``frame.<stream>`` (an addition to v1).

A publisher started with a preview rate (``streamavs run --preview-fps N``) also sends
downscaled JPEG copies of some video frames, for viewers such as ``streamavs view``. v1 clients
subscribe to ``mask.`` and ``hb.`` and never receive them. Layout (docs/protocol.md):

- ``topic``: ASCII ``frame.<stream>``.
- ``header``: JSON with ``schema`` "streamavs.frame", ``v`` 1, the publisher's ``session``, its
  own ``seq`` (per topic, +1 each frame), ``stream``, ``t_capture`` (the same number as the mask
  of that frame, so a client pairs them by equality), ``t_publish``, ``shape`` [H, W] of the
  JPEG, ``encoding`` "jpeg", ``quality`` (1-100) and, optionally, ``index`` (the frame's number
  in its source).
- ``payload``: a baseline or progressive JPEG of exactly ``shape``.

Decoding checks the JPEG's own size (its SOF marker) against ``shape`` and the payload size
against ``MAX_JPEG_OVERHEAD + 3 * H * W`` before anything decodes the pixels.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from streamavs.errors import InputError, ProtocolError

FRAME_SCHEMA = "streamavs.frame"
FRAME_PREFIX = "frame."
FRAME_ENCODING = "jpeg"
MAX_JPEG_OVERHEAD = 65_536  # bytes a JPEG may have beyond 3 * H * W (headers, tables, tiny images)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # start-of-frame markers
_NO_LENGTH = {0x01, *range(0xD0, 0xD8)}  # TEM and RST0-7 carry no length field


@dataclass(frozen=True, eq=False)
class FrameMessage:
    """One preview frame (topic ``frame.<stream>``). Times are Unix seconds.

    `jpeg` holds the payload as sent (checked: a JPEG whose size is `shape`); :meth:`image`
    decodes it. `index` is the frame's number in its source when the publisher sent it.
    """

    stream: str
    session: str
    seq: int
    t_capture: float
    t_publish: float
    shape: tuple[int, int]
    quality: int
    jpeg: bytes
    index: int | None = None

    @property
    def topic(self) -> str:
        return FRAME_PREFIX + self.stream

    def image(self) -> np.ndarray:
        """The frame as (H, W, 3) uint8 RGB (decoded with OpenCV)."""
        import cv2

        bgr = cv2.imdecode(np.frombuffer(self.jpeg, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None or bgr.shape[:2] != self.shape:
            raise ProtocolError(f"the JPEG of frame seq {self.seq} does not decode to its shape {self.shape}")
        return bgr[:, :, ::-1]  # (H, W, 3) RGB


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 RGB image at `quality` (1-100)."""
    import cv2

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise InputError(f"a preview frame must be an (H, W, 3) uint8 RGB image, got {img.shape} {img.dtype}")
    check_quality(quality)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise InputError(f"OpenCV could not encode a {img.shape} frame as JPEG")
    return buf.tobytes()


def check_quality(quality: object) -> int:
    """`quality` when it is an integer in 1..100, else InputError."""
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise InputError(f"JPEG quality must be an integer in 1..100, got {quality!r}; 75 is a good default")
    return quality


def jpeg_shape(payload: bytes) -> tuple[int, int]:
    """(H, W) from a JPEG's start-of-frame marker, without decoding it; ProtocolError if there is none.

    Walks the marker segments from SOI (FF D8) to the first SOFn: only their length fields are read.
    """
    n = len(payload)
    if n < 4 or payload[0] != 0xFF or payload[1] != 0xD8:
        raise ProtocolError("a frame payload must be a JPEG (starting with FF D8)")
    i = 2
    while i + 4 <= n:
        if payload[i] != 0xFF:
            raise ProtocolError(f"JPEG marker expected at byte {i}, got 0x{payload[i]:02x}")
        marker = payload[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _NO_LENGTH:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            break
        (length,) = struct.unpack_from(">H", payload, i + 2)
        if length < 2:
            raise ProtocolError(f"JPEG segment at byte {i} has an invalid length {length}")
        if marker in _SOF:
            if i + 9 > n or length < 8:
                break
            h, w = struct.unpack_from(">HH", payload, i + 5)
            return h, w
        i += 2 + length
    raise ProtocolError("the frame payload is a JPEG without a frame header (SOF) before its image data")


def check_jpeg(payload: bytes, shape: tuple[int, int]) -> None:
    """ProtocolError unless `payload` is a JPEG of exactly `shape` within the size limit."""
    h, w = shape
    limit = MAX_JPEG_OVERHEAD + 3 * h * w
    if len(payload) > limit:
        raise ProtocolError(f"a {h}x{w} JPEG frame is at most {limit} bytes, got {len(payload)}")
    if (got := jpeg_shape(payload)) != (h, w):
        raise ProtocolError(f"the frame JPEG is {got[0]}x{got[1]} but its header shape says {h}x{w}")
