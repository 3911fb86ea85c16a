"""R50+ViT-B/16 (timm's vit_base_r50_s16_384, the hybrid backbone) at 512x512: the forward of our Paddle SegmenterViT
against timm's own forward_features, the same random weights (converted from timm's state dict), measured in one
run with the models taking turns rep by rep. Then where the time goes: the ResNet stem (its root, each stage) and
the 1x1 projection, timed the same way in both, and the transformer as the rest of the whole forward.

    python tools/benchmark.py hybrid [--repeats 3] [--size 512] [--batch 1]
"""

import argparse
import os
import statistics
import sys
from typing import Callable, Dict, List, Optional

import numpy as np

from benchmarks.upernet import timed

MODEL = "vit_base_r50_s16_384"


def parts(embed, stem_only: bool) -> Dict[str, Callable]:
    """The hybrid patch embedding's pieces in order (timm's names, ours the same): name -> module."""
    if stem_only:
        return {"stem": embed.backbone, "proj": embed.proj}
    out = {"stem (7x7 conv, GN, pool)": embed.backbone.stem}
    for i, stage in enumerate(embed.backbone.stages):
        out[f"stage {i} ({len(stage.blocks)} bottlenecks)"] = stage
    out["proj (1x1 to D)"] = embed.proj
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each model after one warm-up (default 3)")
    p.add_argument("--size", type=int, default=512, help="square input side in pixels (default 512)")
    p.add_argument("--batch", type=int, default=1, help="images per forward (default 1)")
    args = p.parse_args(argv)

    import paddle
    import timm
    import torch

    import segmenter  # noqa: F401  (our runtime settings, as every user of the package gets them)
    import segmenter.models as pm
    from segmenter.convert.core import strip_prefix, to_canonical

    torch.manual_seed(0)
    ref = timm.create_model(MODEL, pretrained=False, img_size=args.size).eval()
    conv = to_canonical({k: v.numpy() for k, v in ref.state_dict().items()}, "timm", MODEL)
    bb = conv.arch.backbone_config()
    bb.pop("type")
    ours = pm.SegmenterViT(**bb)
    ours.set_state_dict({k: paddle.to_tensor(v) for k, v in strip_prefix(conv.state, "backbone.").items()})
    ours.eval()

    x = np.random.RandomState(0).randn(args.batch, 3, args.size, args.size).astype(np.float32)
    xp, xt = paddle.to_tensor(x), torch.from_numpy(x)

    def run_paddle(fn, inp):
        def run():
            with paddle.no_grad():
                return fn(inp).numpy()

        return run

    def run_torch(fn, inp):
        def run():
            with torch.no_grad():
                return fn(inp).numpy()

        return run

    # Inputs of each piece: the previous piece's output, computed once per framework.
    stem_only = not hasattr(ref.patch_embed.backbone, "stages")
    p_parts, t_parts = parts(ours.patch_embed, stem_only), parts(ref.patch_embed, stem_only)
    runs: Dict[str, Callable] = {
        "whole forward: ours (Paddle)": run_paddle(ours, xp),
        f"whole forward: timm {timm.__version__} forward_features": run_torch(ref.forward_features, xt),
    }
    hp, ht = xp, xt
    for name in p_parts:
        runs[f"{name}: ours"] = run_paddle(p_parts[name], hp)
        runs[f"{name}: timm"] = run_torch(t_parts[name], ht)
        with paddle.no_grad():
            hp = p_parts[name](hp)
        with torch.no_grad():
            ht = t_parts[name](ht)

    # The transformer alone, on the same tokens (timm's, after the class token and positions are added).
    with torch.no_grad():
        tokens = ref._pos_embed(ref.patch_embed(xt))  # [B, 1 + N, D]
    tp = paddle.to_tensor(tokens.numpy())

    def p_blocks(t):
        for blk in ours.blocks:
            t = blk(t)
        return ours.norm(t)

    runs["transformer (12 blocks + norm): ours"] = run_paddle(p_blocks, tp)
    runs["transformer (12 blocks + norm): timm"] = run_torch(lambda t: ref.norm(ref.blocks(t)), tokens)

    all_times, firsts = timed(list(runs.values()), args.repeats)
    med = {name: statistics.median(ts) for name, ts in zip(runs, all_times)}
    names = list(runs)
    diff = float(np.abs(firsts[0] - firsts[1]).max() / np.abs(firsts[1]).max())
    print(
        f"{MODEL} (R50+ViT-B/16, 12 blocks) at {args.size}x{args.size}, batch {args.batch}, CPU "
        f"({os.cpu_count()} CPUs; torch {torch.get_num_threads()} threads; a shared machine: compare the ratios, "
        f"measured in this one run); median of {args.repeats} after one warm-up, the runs taking turns"
    )
    print(f"ours vs timm tokens: max|diff| / max|timm| = {diff:.1e}")
    print("| piece | ours (Paddle) s | timm (PyTorch) s | ours / timm |")
    print("|---|---|---|---|")
    rows = [("whole forward", names[0], names[1])]
    rows += [(n, f"{n}: ours", f"{n}: timm") for n in p_parts]
    for label, a, b in rows:
        print(f"| {label} | {med[a]:.4f} | {med[b]:.4f} | {med[a] / med[b]:.2f} |")
    stem_p = sum(med[f"{n}: ours"] for n in p_parts)
    stem_t = sum(med[f"{n}: timm"] for n in p_parts)
    print(f"| hybrid embedding (sum of the pieces) | {stem_p:.4f} | {stem_t:.4f} | {stem_p / stem_t:.2f} |")
    label = "transformer (12 blocks + norm)"
    a, b = med[f"{label}: ours"], med[f"{label}: timm"]
    print(f"| {label}, on the same tokens | {a:.4f} | {b:.4f} | {a / b:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
