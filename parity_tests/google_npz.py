"""Google's ViT .npz layout (google-research/vision_transformer), as timm's `_load_weights` reads it, written from
a timm model's state dict by an independent, hand-checked list (JAX is not installed): conv kernels HWIO, Dense
kernels [in, out], q/k/v kernels [D, heads, hd], out kernel [heads, hd, D], LayerNorm scale/bias, blocks counted
from 0. The tests read each file back with timm's own loader before they trust it."""

from typing import Dict

import numpy as np


def hwio(w: np.ndarray) -> np.ndarray:
    """A conv kernel [O, I, kh, kw] as Flax stores it: [kh, kw, I, O]."""
    return w.transpose(2, 3, 1, 0)


def vit_arrays(s: Dict[str, np.ndarray], heads: int) -> Dict[str, np.ndarray]:
    """The ViT part (patch embedding, tokens, every encoder block, final norm, head) of a timm state dict `s`."""
    out = {
        "embedding/kernel": hwio(s["patch_embed.proj.weight"]),
        "embedding/bias": s["patch_embed.proj.bias"],
        "cls": s["cls_token"],
        "Transformer/posembed_input/pos_embedding": s["pos_embed"],
        "Transformer/encoder_norm/scale": s["norm.weight"],
        "Transformer/encoder_norm/bias": s["norm.bias"],
        "head/kernel": s["head.weight"].T,
        "head/bias": s["head.bias"],
    }
    D = s["cls_token"].shape[-1]
    hd = D // heads
    for b in sorted({int(k.split(".")[1]) for k in s if k.startswith("blocks.")}):
        p, f = f"blocks.{b}.", f"Transformer/encoderblock_{b}/"
        out[f + "LayerNorm_0/scale"], out[f + "LayerNorm_0/bias"] = s[p + "norm1.weight"], s[p + "norm1.bias"]
        out[f + "LayerNorm_2/scale"], out[f + "LayerNorm_2/bias"] = s[p + "norm2.weight"], s[p + "norm2.bias"]
        for n in (0, 1):
            out[f + f"MlpBlock_3/Dense_{n}/kernel"] = s[p + f"mlp.fc{n + 1}.weight"].T
            out[f + f"MlpBlock_3/Dense_{n}/bias"] = s[p + f"mlp.fc{n + 1}.bias"]
        w, bias = s[p + "attn.qkv.weight"], s[p + "attn.qkv.bias"]  # [3D, D], [3D]
        for n, qkv in enumerate(("query", "key", "value")):
            out[f + f"MultiHeadDotProductAttention_1/{qkv}/kernel"] = w[n * D : (n + 1) * D].T.reshape(D, heads, hd)
            out[f + f"MultiHeadDotProductAttention_1/{qkv}/bias"] = bias[n * D : (n + 1) * D].reshape(heads, hd)
        out[f + "MultiHeadDotProductAttention_1/out/kernel"] = s[p + "attn.proj.weight"].T.reshape(heads, hd, D)
        out[f + "MultiHeadDotProductAttention_1/out/bias"] = s[p + "attn.proj.bias"]
    return out
