"""A minimal reader of ONNX model files: the graph's nodes and its weights, nothing else.

ONNX files are protocol buffers (onnx/onnx.proto). Converting weights needs only the graph's
nodes (op type, inputs, outputs) in file order and its tensors (initializers, and `Constant`
nodes some exporters emit instead), so this reads exactly those fields with a small wire-format
parser instead of depending on the `onnx` package. Tensors are returned as numpy arrays that
share the file's buffer (no copy until converted).
"""

import numpy as np

# onnx.proto field numbers.
MODEL_GRAPH = 7
GRAPH_NODE, GRAPH_INITIALIZER = 1, 5
NODE_INPUT, NODE_OUTPUT, NODE_NAME, NODE_OP_TYPE, NODE_ATTRIBUTE = 1, 2, 3, 4, 5
ATTR_NAME, ATTR_T = 1, 5
TENSOR_DIMS, TENSOR_DATA_TYPE, TENSOR_FLOAT_DATA, TENSOR_INT32_DATA = 1, 2, 4, 5
TENSOR_INT64_DATA, TENSOR_NAME, TENSOR_RAW_DATA, TENSOR_DOUBLE_DATA = 7, 8, 9, 10
TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 13, 14

# TensorProto.DataType -> numpy dtype (little-endian, as ONNX stores raw data).
DTYPES = {1: "<f4", 2: "u1", 3: "i1", 5: "<i2", 6: "<i4", 7: "<i8", 9: "?", 10: "<f2", 11: "<f8"}


class OnnxError(ValueError):
    """The file is not an ONNX model this reader understands."""


def _varint(buf, pos):
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise OnnxError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def fields(buf):
    """Yields (field number, wire type, value) of one message; length-delimited values are
    memoryview slices, varints ints, fixed 32/64-bit values raw bytes."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise OnnxError(f"unsupported wire type {wire}")
        if pos > end:
            raise OnnxError("truncated message")
        yield number, wire, value


def _ints(wire, value):
    """A repeated int64 field: packed (wire 2) or one varint (wire 0)."""
    if wire == 0:
        return [value]
    out, pos = [], 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(v)
    return out


def read_tensor(buf):
    """(name, numpy array) of a TensorProto."""
    name, dims, dtype, raw, floats, ints64, ints32, doubles = "", [], None, None, [], [], [], []
    for number, wire, value in fields(buf):
        if number == TENSOR_DIMS:
            dims += _ints(wire, value)
        elif number == TENSOR_DATA_TYPE:
            dtype = value
        elif number == TENSOR_NAME:
            name = bytes(value).decode()
        elif number == TENSOR_RAW_DATA:
            raw = value
        elif number == TENSOR_FLOAT_DATA:
            floats.append(np.frombuffer(value, "<f4"))  # packed, or one fixed32
        elif number == TENSOR_INT64_DATA:
            ints64 += _ints(wire, value)
        elif number == TENSOR_INT32_DATA:
            ints32 += _ints(wire, value)
        elif number == TENSOR_DOUBLE_DATA:
            doubles.append(np.frombuffer(value, "<f8"))
        elif number in (TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION) and value:
            raise OnnxError(f"tensor {name or '?'}: external data is not supported")
    if dtype not in DTYPES:
        raise OnnxError(f"tensor {name}: unsupported data type {dtype}")
    if raw is not None:
        array = np.frombuffer(raw, DTYPES[dtype])
    elif floats:
        array = np.concatenate(floats)
    elif doubles:
        array = np.concatenate(doubles)
    elif ints64:
        array = np.array(ints64, dtype="<u8").view("<i8")
    elif ints32:
        array = np.array(ints32, dtype="<i8").astype(DTYPES[dtype])
    else:
        array = np.zeros(0, DTYPES[dtype])
    count = int(np.prod(dims)) if dims else 1
    if array.size != count:
        raise OnnxError(f"tensor {name}: {array.size} values for shape {dims}")
    return name, array.reshape(dims)


class Node:
    """One graph node: its op type, name, input and output value names."""

    def __init__(self, op_type, name, inputs, outputs, tensor_attrs):
        self.op_type, self.name, self.inputs, self.outputs = op_type, name, inputs, outputs
        self.tensor_attrs = tensor_attrs

    def __repr__(self):
        return f"{self.op_type}({', '.join(self.inputs)}) -> {', '.join(self.outputs)}"


def read_node(buf):
    op_type, name, inputs, outputs, tensors = "", "", [], [], {}
    for number, _, value in fields(buf):
        if number == NODE_INPUT:
            inputs.append(bytes(value).decode())
        elif number == NODE_OUTPUT:
            outputs.append(bytes(value).decode())
        elif number == NODE_NAME:
            name = bytes(value).decode()
        elif number == NODE_OP_TYPE:
            op_type = bytes(value).decode()
        elif number == NODE_ATTRIBUTE:
            attr_name, tensor = "", None
            for n, _, v in fields(value):
                if n == ATTR_NAME:
                    attr_name = bytes(v).decode()
                elif n == ATTR_T:
                    tensor = read_tensor(v)[1]
            if tensor is not None:
                tensors[attr_name] = tensor
    return Node(op_type, name, inputs, outputs, tensors)


class Graph:
    """The nodes (in file order, which exporters write topologically) and every constant
    tensor by value name (initializers and `Constant` node outputs)."""

    def __init__(self, nodes, tensors):
        self.nodes, self.tensors = nodes, tensors

    def producer(self, value):
        """The node whose output is `value`, if any."""
        for node in self.nodes:
            if value in node.outputs:
                return node
        return None


def read_model(data):
    """The graph of an ONNX model given its file bytes."""
    view = memoryview(data)
    graph = None
    try:
        for number, wire, value in fields(view):
            if number == MODEL_GRAPH and wire == 2:
                graph = value
    except OnnxError as e:
        raise OnnxError(f"not an ONNX model: {e}") from None
    if graph is None:
        raise OnnxError("not an ONNX model: no graph")
    nodes, tensors = [], {}
    for number, _, value in fields(graph):
        if number == GRAPH_NODE:
            nodes.append(read_node(value))
        elif number == GRAPH_INITIALIZER:
            name, array = read_tensor(value)
            tensors[name] = array
    for node in nodes:
        if node.op_type == "Constant" and "value" in node.tensor_attrs:
            tensors[node.outputs[0]] = node.tensor_attrs["value"]
    return Graph(nodes, tensors)
