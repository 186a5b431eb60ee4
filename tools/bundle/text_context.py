"""The constant text contexts of CRM's two fixed prompts, computed with a stage checkpoint's
own OpenCLIP text tower, so the Rust pipeline never needs the text tower or a tokenizer.

Mirrors `FrozenOpenCLIPEmbedder(layer="penultimate").encode_with_transformer`
(thu-ml/CRM `imagedream/ldm/modules/encoders/modules.py`): token embedding + positional
embedding, every residual block but the last (causal mask), `ln_final`. The blocks are
open_clip's `ResidualAttentionBlock` (`open_clip/transformer.py`): pre-LayerNorm
`nn.MultiheadAttention` and a GELU MLP, no layer scale (ViT-H-14's text config).

Upstream computes the contexts on CUDA in fp16 (`TwoStagePipeline(dtype=torch.float16)`); here
they are computed once in fp32, which differs from upstream's by fp16 rounding only.
"""

import torch
import torch.nn.functional as F

# The prompts (thu-ml/CRM `pipelines.py`: `stage1_sample` / `stage2_sample` use "3D assets";
# the negative prompt is `stage1_sample`'s default `neg_texts`, which stage 2's sampler also
# uses as its `uc`).
PROMPT = "3D assets"
NEGATIVE_PROMPT = (
    "uniform low no texture ugly, boring, bad anatomy, blurry, pixelated,  obscure, unnatural "
    "colors, poor lighting, dull, and unclear."
)

# `open_clip.tokenize(text)` of the two prompts (CLIP's BPE, start 49406, end 49407, padded
# with 0 to 77 tokens), as open_clip 3.3's tokenizer produces them; the prompts are fixed, so
# the tokenizer and its vocabulary are not a dependency. tools/parity/text_tokens.py checks
# these against open_clip.
CONTEXT_LENGTH = 77
TOKENS = {
    PROMPT: [49406, 274, 323, 13170, 49407],
    NEGATIVE_PROMPT: [
        49406, 11075, 1042, 871, 16505, 8159, 267, 12519, 267, 2103, 15376, 267, 21977, 267,
        14384, 943, 267, 33337, 267, 569, 3288, 5389, 267, 3665, 5799, 267, 19433, 267, 537,
        32955, 269, 49407,
    ],
}

# Keys of the text tower under the OpenCLIP model's state dict.
TEXT_KEYS = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.")


def token_ids(prompt):
    """[1, 77] int64 token ids of a fixed prompt."""
    ids = TOKENS[prompt]
    return torch.tensor([ids + [0] * (CONTEXT_LENGTH - len(ids))], dtype=torch.int64)


class TextTower:
    """The text tower's weights (a dict under open_clip's names, prefix removed)."""

    def __init__(self, state, heads=None):
        self.state = {k: v.float() for k, v in state.items() if k.startswith(TEXT_KEYS)}
        missing = [k for k in ("token_embedding.weight", "positional_embedding", "ln_final.weight") if k not in self.state]
        if missing:
            raise ValueError(f"the text tower is incomplete: missing {', '.join(missing)}")
        self.width = self.state["token_embedding.weight"].shape[1]
        self.layers = len({k.split(".")[2] for k in self.state if k.startswith("transformer.resblocks.")})
        # open_clip's text towers use 64-wide heads (ViT-H-14: width 1024, 16 heads).
        self.heads = heads or max(1, self.width // 64)
        if self.width % self.heads:
            raise ValueError(f"text width {self.width} is not divisible by {self.heads} heads")

    def w(self, key):
        try:
            return self.state[key]
        except KeyError:
            raise ValueError(f"the text tower lacks {key}") from None

    @torch.no_grad()
    def penultimate(self, tokens):
        """`encode_with_transformer` with layer="penultimate": [B, 77] -> [B, 77, width]."""
        x = F.embedding(tokens, self.w("token_embedding.weight")) + self.w("positional_embedding")
        n = x.shape[1]
        mask = torch.full((n, n), float("-inf")).triu_(1)  # open_clip build_causal_mask
        x = x.permute(1, 0, 2)  # NLD -> LND, as open_clip's nn.MultiheadAttention is not batch-first
        for i in range(self.layers - 1):
            p = f"transformer.resblocks.{i}."
            h = F.layer_norm(x, (self.width,), self.w(p + "ln_1.weight"), self.w(p + "ln_1.bias"))
            h, _ = F.multi_head_attention_forward(
                h, h, h, self.width, self.heads,
                self.w(p + "attn.in_proj_weight"), self.w(p + "attn.in_proj_bias"),
                None, None, False, 0.0,
                self.w(p + "attn.out_proj.weight"), self.w(p + "attn.out_proj.bias"),
                training=False, need_weights=False, attn_mask=mask,
            )
            x = x + h
            h = F.layer_norm(x, (self.width,), self.w(p + "ln_2.weight"), self.w(p + "ln_2.bias"))
            h = F.linear(h, self.w(p + "mlp.c_fc.weight"), self.w(p + "mlp.c_fc.bias"))
            h = F.linear(F.gelu(h), self.w(p + "mlp.c_proj.weight"), self.w(p + "mlp.c_proj.bias"))
            x = x + h
        x = x.permute(1, 0, 2)
        return F.layer_norm(x, (self.width,), self.w("ln_final.weight"), self.w("ln_final.bias"))

    def contexts(self):
        """(context of PROMPT, context of NEGATIVE_PROMPT), each [1, 77, width] fp32."""
        return self.penultimate(token_ids(PROMPT)), self.penultimate(token_ids(NEGATIVE_PROMPT))
