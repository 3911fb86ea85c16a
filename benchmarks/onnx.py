"""onnxruntime beside the Paddle predictor and the PyTorch twin: seconds and ratio to the hardware floor at 512x512,
and ONNX-vs-Paddle logits at 512x512 and at a second size (one export per size). One run, one process.

    python -m benchmarks.onnx [--models vit_s_linear vit_s_mask] [--repeats 3] [--json onnx_bench.json]

The floor is tools/benchmark.py's: the model's matmul/conv FLOPs over the faster of paddle's and torch's fp32
GFLOP/s on a 2048^3 matmul (model_flops and timed from benchmarks.paths).
"""

import argparse
import json
import os
import tempfile

import numpy as np

from benchmarks.paths import MODELS, N_CLS, SIZE, model_flops, timed  # the same models, FLOPs and timer

SECOND_SIZE = (500, 660)  # not a multiple of 16 (padding) and another grid (resampled position embedding)


def matmul_floor(repeats: int = 5) -> dict:
    """fp32 GFLOP/s of a 2048^3 matmul in paddle and torch."""
    import paddle
    import torch

    n = 2048
    a = np.random.rand(n, n).astype("float32")
    pa, ta = paddle.to_tensor(a), torch.from_numpy(a)
    return {
        "paddle_gflops": 2 * n**3 / timed(lambda: (pa @ pa).numpy(), repeats) / 1e9,
        "torch_gflops": 2 * n**3 / timed(lambda: ta @ ta, repeats) / 1e9,
    }


def bench_model(name: str, repeats: int, tmp: str) -> dict:
    """Seconds of the Paddle predictor, onnxruntime and the twin at 512x512; ONNX max|diff| at two sizes."""
    import paddle
    import torch

    from segmenter import deploy
    from segmenter.models import Segmenter, SegmenterViT
    from segmenter.parity import load_into_torch, paddle_state
    from segmenter.pytorch import Segmenter as TSegmenter
    from segmenter.pytorch import SegmenterViT as TSegmenterViT

    d, depth, heads, dec = MODELS[name]
    dcfg = {"name": dec} if dec == "linear" else {"name": dec, "n_layers": 2, "d_model": d, "n_heads": d // 64}
    paddle.seed(0)
    m = Segmenter(N_CLS, SegmenterViT(embed_dim=d, depth=depth, num_heads=heads), dcfg)
    m.eval()
    t = TSegmenter(N_CLS, TSegmenterViT(embed_dim=d, depth=depth, num_heads=heads), dcfg)
    load_into_torch(t, paddle_state(m))
    t.eval()
    out = {"model": name}
    for h, w in [(SIZE, SIZE), SECOND_SIZE]:
        path = deploy.export_onnx(m, os.path.join(tmp, f"{name}_{h}x{w}.onnx"), (h, w))
        sess = deploy.create_onnx_session(path)
        x = np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32)
        with paddle.no_grad():
            ref = m(paddle.to_tensor(x))[0].numpy()
        out[f"onnx_max_abs_{h}x{w}"] = float(np.abs(sess.run(None, {"x": x})[0] - ref).max())
        if (h, w) == (SIZE, SIZE):
            out["onnx_s"] = timed(lambda sess=sess, x=x: sess.run(None, {"x": x}), repeats)
            prefix = deploy.export(m, os.path.join(tmp, f"{name}_pd"), (h, w), batch_size=None)
            pred = deploy.create_predictor(prefix)
            out["predictor_max_abs"] = float(np.abs(pred(x)[0] - ref).max())
            out["predictor_s"] = timed(lambda pred=pred, x=x: pred(x), repeats)
            tx = torch.from_numpy(x)
            with torch.no_grad():
                out["twin_s"] = timed(lambda tx=tx: t(tx), repeats)
        del sess
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["vit_s_linear"], choices=list(MODELS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    import onnxruntime
    import paddle

    import segmenter  # noqa: F401  (paddle threads / MKL settings, as every tool)

    mm = matmul_floor()
    best = max(mm["paddle_gflops"], mm["torch_gflops"])
    print(
        f"matmul 2048^3 fp32: paddle {mm['paddle_gflops']:.1f} GFLOP/s, torch {mm['torch_gflops']:.1f} GFLOP/s; "
        f"paddle {paddle.__version__}, onnxruntime {onnxruntime.__version__}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models:
            r = bench_model(name, a.repeats, tmp)
            r["floor_s"] = model_flops(MODELS[name][0], MODELS[name][1], MODELS[name][3]) / (best * 1e9)
            rows.append(r)
    print(f"{'model':14} {'path':18} {'sec':>7} {'x floor':>8}")
    for r in rows:
        for path, key in [("paddle predictor", "predictor_s"), ("onnxruntime", "onnx_s"), ("twin (torch)", "twin_s")]:
            print(f"{r['model']:14} {path:18} {r[key]:7.3f} {r[key] / r['floor_s']:8.2f}")
        print(
            f"{r['model']:14} onnxruntime / paddle predictor = {r['onnx_s'] / r['predictor_s']:.2f}; ONNX vs Paddle "
            f"max|diff| {SIZE}x{SIZE} {r[f'onnx_max_abs_{SIZE}x{SIZE}']:.1e}, {SECOND_SIZE[0]}x{SECOND_SIZE[1]} "
            f"{r[f'onnx_max_abs_{SECOND_SIZE[0]}x{SECOND_SIZE[1]}']:.1e}"
        )
    res = {"matmul": mm, "rows": rows}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
