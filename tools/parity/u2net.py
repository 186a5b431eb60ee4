"""Fixture for pipeline/src/u2net.rs: upstream U-2-Net at tiny width, random weights.

Usage: ~/.cache/img3d/parity/bin/python tools/parity/u2net.py /path/to/U-2-Net
(the checkout holding model/u2net.py; e.g. /work/upstream/U-2-Net).

Builds upstream's `U2NET` graph (its own RSU7..RSU4F classes and forward) with small,
deliberately unequal block widths, randomises every weight (`common.randomize`; batch-norm
variances made positive, as trained ones are), runs it in eval mode on a seeded input of odd
size (exercising ceil-mode pooling and upsampling to odd sizes), and writes
  u2net.weights.safetensors   the state dict (upstream keys; num_batches_tracked dropped)
  u2net.io.safetensors        config.encoder [6, 2], config.decoder [5, 2] (mid, out per block),
                              input [1, 3, 45, 67], d0..d6 (the seven sigmoid outputs)
"""

import sys

import torch

import common

# (mid, out) per block: stage1..stage6, then stage1d..stage5d.
ENCODER = [(2, 4), (3, 5), (2, 6), (3, 4), (2, 5), (3, 6)]
DECODER = [(2, 3), (3, 4), (2, 5), (3, 4), (2, 6)]


def tiny_u2net(u2, in_ch=3, out_ch=1, encoder=ENCODER, decoder=DECODER):
    """Upstream U2NET with other block widths: same classes, same forward."""
    net = u2.U2NET.__new__(u2.U2NET)
    torch.nn.Module.__init__(net)
    e, d = encoder, decoder
    net.stage1 = u2.RSU7(in_ch, *e[0])
    net.pool12 = torch.nn.MaxPool2d(2, stride=2, ceil_mode=True)
    net.stage2 = u2.RSU6(e[0][1], *e[1])
    net.pool23 = torch.nn.MaxPool2d(2, stride=2, ceil_mode=True)
    net.stage3 = u2.RSU5(e[1][1], *e[2])
    net.pool34 = torch.nn.MaxPool2d(2, stride=2, ceil_mode=True)
    net.stage4 = u2.RSU4(e[2][1], *e[3])
    net.pool45 = torch.nn.MaxPool2d(2, stride=2, ceil_mode=True)
    net.stage5 = u2.RSU4F(e[3][1], *e[4])
    net.pool56 = torch.nn.MaxPool2d(2, stride=2, ceil_mode=True)
    net.stage6 = u2.RSU4F(e[4][1], *e[5])
    net.stage5d = u2.RSU4F(e[5][1] + e[4][1], *d[4])
    net.stage4d = u2.RSU4(d[4][1] + e[3][1], *d[3])
    net.stage3d = u2.RSU5(d[3][1] + e[2][1], *d[2])
    net.stage2d = u2.RSU6(d[2][1] + e[1][1], *d[1])
    net.stage1d = u2.RSU7(d[1][1] + e[0][1], *d[0])
    sides = [d[0][1], d[1][1], d[2][1], d[3][1], d[4][1], e[5][1]]
    for i, c in enumerate(sides):
        setattr(net, f"side{i + 1}", torch.nn.Conv2d(c, out_ch, 3, padding=1))
    net.outconv = torch.nn.Conv2d(6 * out_ch, out_ch, 1)
    return net


def randomize(net, seed):
    common.randomize(net, seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.abs_().add_(0.5)
    return net.eval()


def state_dict(net):
    return {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def import_u2net(path):
    common.add_upstream(path)
    from model import u2net as u2

    return u2


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    u2 = import_u2net(sys.argv[1])
    net = randomize(tiny_u2net(u2), seed=1)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 3, 45, 67, generator=gen)
    with torch.no_grad():
        outs = net(x)
    common.save_weights("u2net", state_dict(net))
    io = {"config.encoder": torch.tensor(ENCODER), "config.decoder": torch.tensor(DECODER), "input": x}
    io.update({f"d{i}": o for i, o in enumerate(outs)})
    common.save_io("u2net", io)


if __name__ == "__main__":
    main()
