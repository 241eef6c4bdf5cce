"""What an ONNX model file holds (IR version, opsets, operator types), read without the ``onnx`` package.

The runtime must stay light: ``onnx`` is a training extra and ONNX Runtime's Python API does not
list a model's nodes. An ONNX file is one protobuf message (``ModelProto``, onnx/onnx.proto), so a
small reader of the protobuf wire format gets what the loader checks: ``ir_version`` (field 1),
``opset_import`` (8: domain 1, version 2) and ``graph`` (7) -> ``node`` (1) -> ``op_type`` (4).
Every other field (weights included) is skipped by its length, so reading a 13 MB engine costs a
few milliseconds. Protobuf never renumbers a field, so these numbers hold for every ONNX version.
Nodes inside functions and control-flow subgraphs are not read (the exported engines have none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

__all__ = ["OnnxSummary", "QUANTIZATION_OPS", "read_onnx_summary"]

# Operators that only a quantized (INT8) graph holds: QDQ pairs (what `streamavs export --int8`
# writes, ONNX Runtime static quantization in QDQ form), dynamic quantization, integer kernels.
# Operator types starting with "QLinear" (the QOperator form) count as well.
QUANTIZATION_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger",
                              "MatMulInteger"})

_MODEL_IR_VERSION, _MODEL_GRAPH, _MODEL_OPSET_IMPORT = 1, 7, 8  # ModelProto fields
_OPSET_DOMAIN, _OPSET_VERSION = 1, 2  # OperatorSetIdProto fields
_GRAPH_NODE = 1  # GraphProto field
_NODE_OP_TYPE = 4  # NodeProto field
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5  # protobuf wire types (3 and 4, groups, are not used by ONNX)


@dataclass(frozen=True)
class OnnxSummary:
    """ir_version: the file's ONNX IR version; opsets: operator-set domain ("" is ai.onnx) -> version;
    op_types: the operator types of the main graph's nodes."""

    ir_version: int
    opsets: dict[str, int]
    op_types: frozenset[str]

    @property
    def quantization_ops(self) -> tuple[str, ...]:
        """The graph's quantization operator types, sorted: some in an INT8 engine, none in a float one."""
        return tuple(sorted(op for op in self.op_types if op in QUANTIZATION_OPS or op.startswith("QLinear")))

    @property
    def quantized(self) -> bool:
        """True when the graph holds quantization operators (an INT8 engine), False for a float graph."""
        return bool(self.quantization_ops)

    def describe(self) -> str:
        """e.g. "ONNX IR version 10, opset 18" (the ai.onnx operator set; ONNX Runtime's error names any other)."""
        return f"ONNX IR version {self.ir_version}, opset {self.opsets.get('') or self.opsets.get('ai.onnx', 'none')}"


def read_onnx_summary(data: bytes) -> OnnxSummary:
    """The summary of the ONNX model serialised in `data`.

    Raises ValueError when `data` is not a protobuf message with a graph (a damaged or non-ONNX file).
    """
    ir_version, opsets, graph = 0, {}, None
    for field, wire, value in _fields(data, 0, len(data)):
        if field == _MODEL_IR_VERSION and wire == _VARINT:
            ir_version = value
        elif field == _MODEL_OPSET_IMPORT and wire == _BYTES:
            domain, version = "", 0
            for f, w, v in _fields(data, *value):
                if f == _OPSET_DOMAIN and w == _BYTES:
                    domain = _text(data, v)
                elif f == _OPSET_VERSION and w == _VARINT:
                    version = v
            opsets[domain] = version
        elif field == _MODEL_GRAPH and wire == _BYTES:
            graph = value
    if graph is None:
        raise ValueError("no graph in the model")
    op_types = set()
    for field, wire, value in _fields(data, *graph):
        if field == _GRAPH_NODE and wire == _BYTES:
            op_types.update(_text(data, v) for f, w, v in _fields(data, *value) if f == _NODE_OP_TYPE and w == _BYTES)
    return OnnxSummary(ir_version, opsets, frozenset(op_types))


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of each field of the message in data[start:end]; value is
    an int for a varint, a (start, end) span for length-delimited bytes, None for fixed-width."""
    pos = start
    while pos < end:
        key, pos = _varint(data, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise ValueError(f"field number 0 at byte {pos}")
        if wire == _VARINT:
            value, pos = _varint(data, pos, end)
        elif wire == _BYTES:
            length, pos = _varint(data, pos, end)
            value, pos = (pos, pos + length), pos + length
        elif wire in (_FIXED64, _FIXED32):
            value, pos = None, pos + (8 if wire == _FIXED64 else 4)
        else:
            raise ValueError(f"wire type {wire} at byte {pos}")
        if pos > end:
            raise ValueError(f"field {field} runs past the end of its message (byte {end})")
        yield field, wire, value


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The base-128 varint at data[pos] and the position after it."""
    value = shift = 0
    while pos < end and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ValueError(f"truncated or overlong varint before byte {pos}")


def _text(data: bytes, span: object) -> str:
    start, end = span  # type: ignore[misc]
    return data[start:end].decode("utf-8", errors="replace")
