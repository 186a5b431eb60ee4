"""Checks tools/bundle/text_context.py against upstream: the hard-coded token ids of the two
fixed prompts equal `open_clip.tokenize`'s, and the text tower's penultimate-layer contexts
equal upstream's `FrozenOpenCLIPEmbedder.encode_with_transformer` on a tiny open_clip CLIP with
random weights (exactly, same fp32 ops).

Usage: ~/.cache/img3d/parity/bin/python tools/parity/text_context.py /path/to/CRM

Writes nothing: the converter's constants are checked here, once, and the converter round trip
(pipeline/tests/convert.rs) checks the rest.
"""

import os
import sys

import torch

import common

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from bundle.text_context import NEGATIVE_PROMPT, PROMPT, TextTower, token_ids  # noqa: E402


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    common.add_upstream(sys.argv[1])
    import open_clip
    from open_clip.model import CLIP
    from imagedream.ldm.modules.encoders.modules import FrozenOpenCLIPEmbedder

    for prompt in (PROMPT, NEGATIVE_PROMPT):
        assert open_clip.tokenize([prompt])[0].tolist() == token_ids(prompt)[0].tolist(), prompt
    print("token ids match open_clip.tokenize")

    model = CLIP(
        embed_dim=32,
        vision_cfg=dict(layers=2, width=32, patch_size=14, image_size=28, head_width=16),
        text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=4, layers=3),
    )
    mask = model.attn_mask.clone()  # a buffer, but the causal mask, not a weight
    common.randomize(model, seed=11)
    model.attn_mask.copy_(mask)
    # Upstream's embedder without its __init__ (which downloads ViT-H weights).
    embedder = FrozenOpenCLIPEmbedder.__new__(FrozenOpenCLIPEmbedder)
    torch.nn.Module.__init__(embedder)
    embedder.model, embedder.layer_idx, embedder.device = model.eval(), 1, "cpu"
    tower = TextTower(model.state_dict(), heads=4)
    for prompt in (PROMPT, NEGATIVE_PROMPT):
        with torch.no_grad():
            want = embedder.encode_with_transformer(open_clip.tokenize([prompt]))
        got = tower.penultimate(token_ids(prompt))
        err = (want - got).abs().max().item()
        assert err <= 1e-6, f"{prompt!r}: max abs error {err}"
        print(f"context of {prompt[:20]!r}...: {tuple(got.shape)}, max abs error {err:.1e}")


if __name__ == "__main__":
    main()
