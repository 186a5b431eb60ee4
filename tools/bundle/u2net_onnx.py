"""rembg's `u2net.onnx` -> U-2-Net state dict under upstream's names (`U-2-Net/model/u2net.py`
`U2NET`), as `pipeline/src/u2net.rs` loads it.

An exported model may keep the state-dict names and its batch norms, or (exported with
constant folding, as deployment models often are) fold each batch norm into the convolution
before it and name the weights anonymously. Names therefore cannot be relied on: the
convolutions are matched by the order the network runs them, which the exporter preserves, and
every shape is checked against the order's expectation. A folded batch norm becomes an identity
one (scale 1, shift 0, mean 0, variance 1 - eps) behind the folded convolution, which computes
the same function.
"""

import numpy as np

BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default, as U-2-Net and the Rust port use

# (module, RSU height) in the order U2NET.forward runs them. RSU4F's layer names are RSU4's.
STAGES = [
    ("stage1", 7), ("stage2", 6), ("stage3", 5), ("stage4", 4), ("stage5", 4), ("stage6", 4),
    ("stage5d", 4), ("stage4d", 4), ("stage3d", 5), ("stage2d", 6), ("stage1d", 7),
]
SIDES = ["side1", "side2", "side3", "side4", "side5", "side6", "outconv"]


def rebnconv_order():
    """Names of the REBNCONV blocks in execution order: per RSU block `rebnconvin`, the
    encoder `rebnconv1..L`, then the decoder `rebnconv(L-1)d..1d`."""
    names = []
    for stage, height in STAGES:
        names.append(f"{stage}.rebnconvin")
        names += [f"{stage}.rebnconv{i}" for i in range(1, height + 1)]
        names += [f"{stage}.rebnconv{i}d" for i in range(height - 1, 0, -1)]
    return names


def convert(graph):
    """The state dict (name -> float32 numpy array) of the U-2-Net in `graph`."""
    convs = [n for n in graph.nodes if n.op_type == "Conv"]
    bns = [n for n in graph.nodes if n.op_type == "BatchNormalization"]
    blocks = rebnconv_order()
    expected = len(blocks) + len(SIDES)
    if len(convs) != expected:
        raise ValueError(f"expected U-2-Net's {expected} convolutions, the model has {len(convs)}")
    if len(bns) not in (0, len(blocks)):
        raise ValueError(f"expected {len(blocks)} batch norms (or none, folded), the model has {len(bns)}")

    def tensor(node, index, what):
        if index >= len(node.inputs) or node.inputs[index] not in graph.tensors:
            raise ValueError(f"{node!r}: its {what} is not a constant tensor")
        return np.asarray(graph.tensors[node.inputs[index]], dtype=np.float32)

    state = {}
    names = [f"{b}.conv_s1" for b in blocks] + SIDES
    for name, conv in zip(names, convs):
        state[f"{name}.weight"] = tensor(conv, 1, "weight")
        if len(conv.inputs) > 2:
            state[f"{name}.bias"] = tensor(conv, 2, "bias")
        else:
            state[f"{name}.bias"] = np.zeros(state[f"{name}.weight"].shape[0], np.float32)
        check_named(conv.inputs[1], f"{name}.weight")
    for block, conv_name in zip(blocks, names):
        out_ch = state[f"{conv_name}.weight"].shape[0]
        prefix = f"{block}.bn_s1"
        if bns:
            bn = bns[blocks.index(block)]
            for index, key in enumerate(["weight", "bias", "running_mean", "running_var"], start=1):
                state[f"{prefix}.{key}"] = tensor(bn, index, key)
                check_named(bn.inputs[index], f"{prefix}.{key}")
        else:
            state[f"{prefix}.weight"] = np.ones(out_ch, np.float32)
            state[f"{prefix}.bias"] = np.zeros(out_ch, np.float32)
            state[f"{prefix}.running_mean"] = np.zeros(out_ch, np.float32)
            state[f"{prefix}.running_var"] = np.full(out_ch, 1.0 - BN_EPS, np.float32)
    check_shapes(state)
    return state


def check_named(actual, expected):
    """Where the exporter kept state-dict names, they must agree with the execution order."""
    if "." in actual and not actual.startswith("onnx::") and actual != expected:
        raise ValueError(f"the convolution order does not match the names: {actual} where {expected} was expected")


def check_shapes(state):
    """Each block's input channels follow from the graph: an RSU's `rebnconvin` takes the
    block input, its encoder convolutions chain, each decoder one takes two concatenated maps."""
    for stage, height in STAGES:
        mid = state[f"{stage}.rebnconv1.conv_s1.weight"].shape[0]
        out = state[f"{stage}.rebnconvin.conv_s1.weight"].shape[0]
        for i in range(1, height + 1):
            w = state[f"{stage}.rebnconv{i}.conv_s1.weight"]
            want_in = out if i == 1 else mid
            if w.shape[:2] != (mid, want_in):
                raise ValueError(f"{stage}.rebnconv{i}: shape {w.shape}, expected ({mid}, {want_in}, ...)")
        for i in range(height - 1, 0, -1):
            w = state[f"{stage}.rebnconv{i}d.conv_s1.weight"]
            want_out = out if i == 1 else mid
            if w.shape[:2] != (want_out, 2 * mid):
                raise ValueError(f"{stage}.rebnconv{i}d: shape {w.shape}, expected ({want_out}, {2 * mid}, ...)")
    outconv = state["outconv.weight"]
    if outconv.shape[1] != 6 * outconv.shape[0]:
        raise ValueError(f"outconv: shape {outconv.shape}, expected 6 side outputs")


def widths(state):
    """The architecture the weights imply, as `U2netConfig` spells it (encoder and decoder
    `{mid, out}` per block), to check against the bundle config."""
    def block(stage):
        return {"mid": int(state[f"{stage}.rebnconv1.conv_s1.weight"].shape[0]),
                "out": int(state[f"{stage}.rebnconvin.conv_s1.weight"].shape[0])}
    return {
        "encoder": [block(s) for s, _ in STAGES[:6]],
        "decoder": [block(s) for s, _ in STAGES[6:][::-1]],
        "in_ch": int(state["stage1.rebnconvin.conv_s1.weight"].shape[1]),
        "out_ch": int(state["outconv.weight"].shape[0]),
    }
