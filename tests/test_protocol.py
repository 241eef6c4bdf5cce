"""Wire protocol v1: every encoding round-trips; RLE/bits follow their stated conventions;
bad messages raise ProtocolError that names what is wrong."""

from __future__ import annotations

import functools
import json
import struct
import zlib
from typing import Callable

import numpy as np
import pytest

from streamavs.errors import InputError, ProtocolError
from streamavs.protocol import (
    ENCODINGS,
    DecodeLimits,
    Heartbeat,
    MaskMessage,
    decode_mask,
    decode_message,
    decode_png,
    encode_heartbeat,
    encode_mask,
    encode_message,
    encode_png,
    rle_counts,
)

SHAPES = [(1, 1), (1, 9), (3, 5), (7, 13), (224, 224), (17, 31)]


def _mask(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    if kind == "empty":
        return np.zeros(shape, np.float32)
    if kind == "ones":
        return np.ones(shape, np.float32)
    return rng.random(shape, dtype=np.float32)


def _message(prob: np.ndarray, encoding: str = "u8", **over) -> list[bytes]:
    fields = dict(
        stream="cam0", session="abc123", seq=7, t_capture=1700000000.25, t_publish=1700000000.5,
        audio_window=(1699999999.25, 1700000000.25), sounding=0.8, uncertainty=0.1,
        engine={"name": "tiny", "sha256": "0123abcd"}, backend="onnxruntime",
        stage_ms={"engine": 4.5, "pre": 1.0}, dropped=3, audio_overflows=1, encoding=encoding,
    )  # fmt: skip
    fields.update(over)
    return encode_message(prob, **fields)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["random", "empty", "ones"])
def test_round_trip_every_encoding(encoding, shape, kind):
    prob = _mask(kind, shape, np.random.default_rng([shape[0], shape[1], len(kind)]))
    out = decode_mask(encode_mask(prob, encoding), encoding, shape)
    assert out.shape == shape
    if encoding == "u8":
        assert out.dtype == np.float32
        assert np.abs(out - prob).max() <= 0.5 / 255 + 1e-6
    else:
        assert out.dtype == np.bool_
        np.testing.assert_array_equal(out, prob >= 0.5)


def test_binary_threshold_is_inclusive_and_configurable():
    prob = np.array([[0.49, 0.5, 0.7]], np.float32)
    for enc in ("bits", "png", "rle"):
        assert decode_mask(encode_mask(prob, enc), enc, (1, 3)).tolist() == [[False, True, True]]
        assert decode_mask(encode_mask(prob, enc, threshold=0.6), enc, (1, 3)).tolist() == [[False, False, True]]


def test_rle_hand_computed_example_is_column_major():
    # column 0 = 0,1,0 and column 1 = 1,1,0 -> runs 0:1, 1:1, 0:1, 1:2, 0:1
    mask = np.array([[0, 1], [1, 1], [0, 0]], bool)
    assert rle_counts(mask).tolist() == [1, 1, 1, 2, 1]
    payload = encode_mask(mask.astype(np.float32), "rle")
    assert payload == struct.pack("<5I", 1, 1, 1, 2, 1)
    np.testing.assert_array_equal(decode_mask(payload, "rle", (3, 2)), mask)


def test_rle_follows_coco_convention():
    # COCO: counts start with a background run, 0 when the first pixel is foreground.
    assert rle_counts(np.ones((2, 2), bool)).tolist() == [0, 4]
    assert rle_counts(np.zeros((2, 3), bool)).tolist() == [6]
    # Only pixel (row 0, col 1) set: column-major order puts it at index 2 (row-major would be 1).
    mask = np.zeros((2, 2), bool)
    mask[0, 1] = True
    assert rle_counts(mask).tolist() == [2, 1, 1]
    first = np.zeros((2, 2), bool)
    first[0, 0] = True
    assert rle_counts(first).tolist() == [0, 1, 3]


def test_bits_hand_computed_example_big_bit_order():
    mask = np.array([[1, 0, 0, 0, 0, 0, 0, 1, 1, 0]], np.float32)
    assert encode_mask(mask, "bits") == bytes([0b10000001, 0b10000000])


def test_u8_and_png_bytes():
    prob = np.array([[0.0, 1.0], [0.5, 0.2]], np.float32)
    assert encode_mask(prob, "u8") == bytes([0, 255, 128, 51])  # row-major, rint(p * 255)
    png = encode_mask(prob, "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    assert struct.unpack(">II", png[16:24]) == (2, 2)  # width, height
    assert decode_png(png).tolist() == [[0, 255], [255, 0]]  # binary * 255


def test_png_from_other_writers_and_for_other_readers():
    cv2 = pytest.importorskip("cv2")
    img = np.zeros((40, 30), np.uint8)
    img[5:20, 3:25] = 255
    ok, buf = cv2.imencode(".png", img)  # OpenCV uses PNG row filters: exercises the fallback
    assert ok
    np.testing.assert_array_equal(decode_mask(buf.tobytes(), "png", (40, 30)), img == 255)
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(encode_png(img), np.uint8), cv2.IMREAD_UNCHANGED), img)


def test_message_round_trip_fields():
    prob = np.random.default_rng(0).random((5, 6), dtype=np.float32)
    frames = _message(prob, "bits")
    assert frames[0] == b"mask.cam0"
    msg = decode_message(frames)
    assert isinstance(msg, MaskMessage)
    assert (msg.stream, msg.session, msg.seq, msg.shape, msg.encoding) == ("cam0", "abc123", 7, (5, 6), "bits")
    assert (msg.t_capture, msg.t_publish) == (1700000000.25, 1700000000.5)
    assert msg.audio_window == (1699999999.25, 1700000000.25)
    assert (msg.sounding, msg.uncertainty, msg.dropped, msg.audio_overflows) == (0.8, 0.1, 3, 1)
    assert msg.engine == {"name": "tiny", "sha256": "0123abcd"} and msg.backend == "onnxruntime"
    assert msg.stage_ms == {"engine": 4.5, "pre": 1.0} and msg.threshold == 0.5
    np.testing.assert_array_equal(msg.mask, prob >= 0.5)
    with pytest.raises(AttributeError):
        msg.seq = 8  # frozen


def test_heartbeat_round_trip():
    hb = decode_message(encode_heartbeat(stream="cam0", session="s1", seq=3, t_publish=12.5))
    assert hb == Heartbeat(stream="cam0", session="s1", seq=3, t_publish=12.5)


def _with_header(frames: list[bytes], **changes) -> list[bytes]:
    header = json.loads(frames[1])
    for key, value in changes.items():
        if value is ...:
            del header[key]
        else:
            header[key] = value
    return [frames[0], json.dumps(header).encode(), frames[2]]


GOOD = _message(np.full((4, 5), 0.75, np.float32))


@pytest.mark.parametrize(
    "frames, expected",
    [
        (_with_header(GOOD, seq=..., shape=...), "lacks required key(s): seq, shape"),
        (_with_header(GOOD, schema="other"), "schema must be 'streamavs.mask'"),
        (_with_header(GOOD, v=2), "speaks protocol v1, the message is v2"),
        (_with_header(GOOD, encoding="jpeg"), "'jpeg'; valid encodings: u8, bits, png, rle"),
        (_with_header(GOOD, shape=[4, 6]), "u8 payload of shape 4x6 must be 24 bytes, got 20"),
        (_with_header(GOOD, shape=[4, 0]), "'shape' must be [H, W] of positive integers"),
        (_with_header(GOOD, seq=-1), "'seq' must be a non-negative integer"),
        (_with_header(GOOD, t_capture="now"), "'t_capture' must be a finite number"),
        (_with_header(GOOD, stream="cam1"), "does not match header stream 'cam1'"),
        (_with_header(GOOD, engine={"name": "x"}), "'engine' must be an object"),
        ([GOOD[0], b"{not json", GOOD[2]], "header UTF-8 JSON"),
        ([GOOD[0], b"[1, 2]", GOOD[2]], "must be a JSON object, got list"),
        (GOOD[:2], "3 frames [topic, header, payload], got 2"),
        ([b"frames.cam0", GOOD[1], GOOD[2]], "topic must start with 'mask.' or 'hb.'"),
        (encode_heartbeat(stream="a", session="s", seq=0, t_publish=1.0)[:2] + [b"x"], "empty payload"),
    ],
)
def test_bad_messages_name_the_problem(frames, expected):
    with pytest.raises(ProtocolError) as err:
        decode_message(frames)
    assert expected in str(err.value)


def test_bad_payloads_name_the_problem():
    with pytest.raises(ProtocolError, match=r"rle counts sum to 5 pixels, header shape 2x3 has 6"):
        decode_mask(struct.pack("<2I", 2, 3), "rle", (2, 3))
    with pytest.raises(ProtocolError, match="only the first run may be 0"):
        decode_mask(struct.pack("<3I", 3, 0, 3), "rle", (2, 3))
    with pytest.raises(ProtocolError, match="non-empty sequence of uint32"):
        decode_mask(b"\x01\x00\x00", "rle", (1, 1))
    with pytest.raises(ProtocolError, match="padding bits"):
        decode_mask(bytes([0b11000000]), "bits", (1, 1))
    with pytest.raises(ProtocolError, match="must be ceil"):
        decode_mask(bytes(3), "bits", (3, 3))
    with pytest.raises(ProtocolError, match="png payload is 2x3, header shape is 3x2"):
        decode_mask(encode_png(np.zeros((2, 3), np.uint8)), "png", (3, 2))
    with pytest.raises(ProtocolError, match="PNG signature"):
        decode_mask(b"GIF89a" + bytes(40), "png", (1, 1))
    with pytest.raises(ProtocolError, match="pixels 0 or 255 only"):
        decode_mask(encode_png(np.full((2, 2), 7, np.uint8)), "png", (2, 2))
    bad_crc = bytearray(encode_png(np.zeros((2, 2), np.uint8)))
    bad_crc[29] ^= 0xFF  # last byte of the IHDR CRC
    with pytest.raises(ProtocolError, match="'IHDR' has a bad CRC"):
        decode_png(bytes(bad_crc))
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))  # colour type 2: RGB
    rgb = b"\x89PNG\r\n\x1a\n" + ihdr + _chunk(b"IDAT", zlib.compress(b"\0\0\0\0"))
    with pytest.raises(ProtocolError, match="8-bit grayscale, got bit depth 8, colour type 2"):
        decode_png(rgb)


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def test_encode_rejects_bad_input_with_advice():
    with pytest.raises(InputError, match="valid encodings: u8, bits, png, rle"):
        encode_mask(np.zeros((2, 2), np.float32), "jpg")
    with pytest.raises(InputError, match=r"in \[0, 1\].*sigmoid"):
        encode_mask(np.full((2, 2), 1.5, np.float32))
    with pytest.raises(InputError, match=r"in \[0, 1\]"):
        encode_mask(np.full((2, 2), np.nan, np.float32))
    with pytest.raises(InputError, match=r"astype\(np.float32\) / 255"):
        encode_mask(np.zeros((2, 2), np.uint8))
    with pytest.raises(InputError, match=r"2-D \(H, W\)"):
        encode_mask(np.zeros((1, 2, 2), np.float32))
    with pytest.raises(InputError, match="no dots"):
        _message(np.zeros((2, 2), np.float32), stream="a.b")
    with pytest.raises(InputError, match="finite"):
        _message(np.zeros((2, 2), np.float32), sounding=float("nan"))


# ------------------------------------------------------------------------ hostile messages
# Messages no correct publisher sends, each of which used to cost a subscriber memory or raise
# something other than ProtocolError. test_publish.py sends them over real sockets too.
BOMB_BYTES = 400_000_000  # what the zlib bomb inflates to (about 400 kB compressed at level 9)


@functools.lru_cache(maxsize=1)
def zlib_bomb() -> bytes:
    """A zlib stream of BOMB_BYTES zeros, compressed in 1 MiB pieces so that building it is cheap."""
    zeros, deflate = bytes(1 << 20), zlib.compressobj(9)
    parts = [deflate.compress(zeros) for _ in range(BOMB_BYTES >> 20)]
    return b"".join(parts) + deflate.flush()


def _png(w: int, h: int, idat: bytes, depth: int = 8, color: int = 0) -> bytes:
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + ihdr + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _mask_frames(shape, encoding: str, payload: bytes) -> list[bytes]:
    return [GOOD[0], _with_header(GOOD, shape=list(shape), encoding=encoding)[1], payload]


def _literal(key: str, text: str) -> list[bytes]:
    """GOOD with the JSON text of header[key] replaced by `text` (for numbers JSON cannot hold)."""
    frames = _with_header(GOOD, **{key: "@@"})
    return [frames[0], frames[1].replace(b'"@@"', text.encode()), frames[2]]


def hostile_messages() -> dict[str, tuple[Callable[[], list[bytes]], str]]:
    """name -> (a function making the frames, text the ProtocolError must contain)."""
    limit = "more than this decoder's limit"
    short_ihdr = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", b"\0\0\0\x04\0") + _chunk(b"IDAT", zlib.compress(bytes(24)))
    deep = b"[" * 30000 + b"]" * 30000  # 60 kB: under the header size limit
    return {
        "rle 4 bytes, shape 20000x20000": (
            lambda: _mask_frames((20000, 20000), "rle", struct.pack("<I", 20000**2)), limit),
        "rle 4 bytes, shape 65535x65535": (
            lambda: _mask_frames((65535, 65535), "rle", struct.pack("<I", 65535**2)), limit),
        "u8, shape 65535x65535": (lambda: _mask_frames((65535, 65535), "u8", b""), limit),
        "png bomb, 20000x20000": (
            lambda: _mask_frames((20000, 20000), "png", _png(20000, 20000, zlib_bomb())), limit),
        "png bomb, IHDR 20000x20000 in a 4x5 header": (
            lambda: _mask_frames((4, 5), "png", _png(20000, 20000, zlib_bomb())),
            "png payload is 20000x20000, header shape is 4x5"),
        "png bomb, 2000x2000 (under the cap) inflating to 400 MB": (
            lambda: _mask_frames((2000, 2000), "png", _png(2000, 2000, zlib_bomb())),
            "must inflate to 4002000 bytes, got more"),
        "png with a 5-byte IHDR": (
            lambda: _mask_frames((4, 5), "png", short_ihdr), "one IHDR chunk of 13 bytes, got one of 5"),
        "png bit depth 1": (
            lambda: _mask_frames((4, 5), "png", _png(5, 4, zlib.compress(bytes(8)), depth=1)), "bit depth 1"),
        "json nested 30000 deep": (lambda: [GOOD[0], deep, GOOD[2]], "nests JSON arrays/objects 30000 deep"),
        "json nested in a key": (
            lambda: _literal("backend", "[" * 1000 + "]" * 1000), "nests JSON arrays/objects 1001 deep"),
        "header of 100 kB": (lambda: _with_header(GOOD, backend="x" * 100_000), "the header is 100"),
        "v true": (lambda: _with_header(GOOD, v=True), "`v` must be the integer 1"),
        "v 1.0": (lambda: _with_header(GOOD, v=1.0), "`v` must be the integer 1"),
        "NaN audio_window": (lambda: _with_header(GOOD, audio_window=[float("nan"), 1.0]), "'NaN'"),
        "Infinity sounding": (lambda: _with_header(GOOD, sounding=float("inf")), "'Infinity'"),
        "1e999 stage_ms": (lambda: _literal("stage_ms", '{"engine": 1e999}'), "'1e999' (out of the float range)"),
        "-1e999 threshold": (lambda: _literal("threshold", "-1e999"), "must be finite"),
        "threshold a string": (lambda: _with_header(GOOD, threshold="0.5"), "'threshold' must be a finite number"),
        "400-digit t_capture": (lambda: _literal("t_capture", "9" * 400), "'t_capture' must be a finite number"),
        "seq 2**64": (lambda: _with_header(GOOD, seq=2**64), "'seq' must be a non-negative integer (at most 2**63"),
        "stream ../x": (
            lambda: [b"mask.../x", _with_header(GOOD, stream="../x")[1], GOOD[2]], "1-64 characters"),
        "rle with more runs than pixels": (
            lambda: _mask_frames((4, 5), "rle", struct.pack("<22I", *[1] * 22)), "at most 21 runs"),
        "shape of 3 numbers": (lambda: _with_header(GOOD, shape=[4, 5, 1]), "'shape' must be [H, W]"),
        "shape [true, 20]": (lambda: _with_header(GOOD, shape=[True, 20]), "'shape' must be [H, W]"),
        "topic not ASCII": (lambda: [b"mask.\xff", GOOD[1], GOOD[2]], "must be ASCII"),
        "header not UTF-8": (lambda: [GOOD[0], b'{"a": "\xff"}', GOOD[2]], "header UTF-8 JSON"),
    }  # fmt: skip


@pytest.mark.parametrize("name", list(hostile_messages()))
def test_hostile_message_is_a_protocol_error_naming_it(name):
    make, expected = hostile_messages()[name]
    with pytest.raises(ProtocolError) as err:
        decode_message(make())
    assert expected in str(err.value)


def test_limits_are_configurable_and_say_how_to_raise_them():
    frames = _mask_frames((100, 100), "rle", struct.pack("<I", 10_000))
    with pytest.raises(ProtocolError) as err:
        decode_message(frames, DecodeLimits(max_pixels=9_999))
    assert "mask shape 100x100 is 10000 pixels, more than this decoder's limit of 9999" in str(err.value)
    assert "Subscriber(limits=DecodeLimits(max_pixels=...))" in str(err.value)
    assert decode_message(frames, DecodeLimits(max_pixels=10_000)).mask.shape == (100, 100)
    with pytest.raises(ProtocolError, match="nests JSON arrays/objects 2 deep, more than this decoder.s limit of 1;"):
        decode_message(GOOD, DecodeLimits(max_json_depth=1))  # the header nests 2 deep
    with pytest.raises(InputError, match="max_pixels must be a positive integer, got 0"):
        DecodeLimits(max_pixels=0)


def test_decoders_reject_what_is_not_bytes_or_a_shape():
    with pytest.raises(ProtocolError, match="frames must be bytes, got int"):
        decode_message([GOOD[0], GOOD[1], 5])
    with pytest.raises(ProtocolError, match="'shape' must be"):
        decode_mask(bytes(4), "u8", (2, 2, 1))
    with pytest.raises(ProtocolError, match="valid encodings"):
        decode_mask(bytes(4), ["u8"], (2, 2))


def test_png_checks_come_before_opencv_unfilters_rows():
    cv2 = pytest.importorskip("cv2")
    img = np.zeros((33, 47), np.uint8)
    img[4:20, 7:40] = 255
    ok, buf = cv2.imencode(".png", img)  # OpenCV writes PNG row filters: decoded by OpenCV
    assert ok
    np.testing.assert_array_equal(decode_png(buf.tobytes(), (33, 47)), img)
    raw = np.zeros((2, 1 + 3), np.uint8)  # (H, 1 + W)
    raw[:, 0] = 9  # filter type 9 does not exist
    with pytest.raises(ProtocolError, match="row filter types are 0-4, got 9"):
        decode_png(_png(3, 2, zlib.compress(raw.tobytes())))
    with pytest.raises(ProtocolError, match="must inflate to 8 bytes, got less"):
        decode_png(_png(3, 2, zlib.compress(bytes(7))))
    with pytest.raises(ProtocolError, match="does not inflate"):
        decode_png(_png(3, 2, b"not zlib"))


def test_interlaced_png_is_checked_then_decoded():
    pytest.importorskip("cv2")
    img = (np.random.default_rng(3).random((13, 11)) > 0.5).astype(np.uint8) * 255
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes:  # Adam7: each pass is a small image of filter-0 rows
        sub = img[y0::dy, x0::dx]  # (rows, cols) of this pass
        if sub.size:
            raw += np.hstack([np.zeros((sub.shape[0], 1), np.uint8), sub]).tobytes()
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", 11, 13, 8, 0, 0, 0, 1))
    png = b"\x89PNG\r\n\x1a\n" + ihdr + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")
    np.testing.assert_array_equal(decode_mask(png, "png", (13, 11)), img == 255)
    bomb = b"\x89PNG\r\n\x1a\n" + ihdr + _chunk(b"IDAT", zlib.compress(raw + bytes(10_000)))
    with pytest.raises(ProtocolError, match=f"must inflate to {len(raw)} bytes, got more"):
        decode_png(bomb)
