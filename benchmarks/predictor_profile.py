"""Where the default path's forward goes: paddle's own per-op profile of the compiled ViT-S/16 linear predictor.

    python tools/benchmark.py predictor_profile [--size 512] [--threads 1] [--runs 4] [--bf16]
    python tools/benchmark.py predictor_profile --upsample [--size 512] [--threads 1] [--runs 7]

Exports the model as the default path does (`deploy.export(fused_attention=True)`, the fused attention kernel in
the graph), builds its oneDNN predictor with `paddle.inference.Config.enable_profile()` (deploy's deleted passes
deleted) and runs it `--runs` times on a random input; paddle prints its op table (calls, total and per-call ms,
share) when the predictor goes. Random weights, 150 classes, batch 1; docs/benchmarks.md reads the table against
each op's matmul floor. `--upsample` times the logits' bilinear upsampling alone (150 classes from size/16 to size)
in oneDNN predictors, as the model writes it (models.segmenter.separable_product: the product over H first) and
with the product over W first, medians of --runs interleaved runs.
"""

import argparse
import os
import tempfile
from typing import List, Optional

import numpy as np


def upsample_orders(size: int, threads: int, runs: int) -> None:
    """The two orders of the separable bilinear product, each exported alone and run by a oneDNN predictor."""
    import statistics
    import time

    import paddle
    import paddle.nn.functional as F

    from segmenter import deploy
    from segmenter.models.segmenter import bilinear_weights, separable_product

    g = size // 16
    a = bilinear_weights(g, size).astype("float32")  # [H, h], the same for W; constants built in the trace, as the
    # model's upsample_bilinear builds them (jit.save cannot save tensors a forward closes over)

    class HFirst(paddle.nn.Layer):
        def forward(self, x):
            return [separable_product(x, paddle.to_tensor(a), paddle.to_tensor(a))]

    class WFirst(paddle.nn.Layer):
        def forward(self, x):
            c, h, w = x.shape[1:]
            y = paddle.matmul(x.reshape([-1, w]), paddle.to_tensor(np.ascontiguousarray(a.T)))  # [B * C * h, W]
            return [paddle.matmul(paddle.to_tensor(a), y.reshape([-1, c, h, size]))]  # [B, C, H, W]

    x = np.random.RandomState(0).rand(1, 150, g, g).astype("float32")
    ref = F.interpolate(paddle.to_tensor(x), size=[size, size], mode="bilinear").numpy()
    spec, xt = paddle.static.InputSpec([None, 150, g, g], "float32", "x"), paddle.to_tensor(x)
    fns = {}
    with tempfile.TemporaryDirectory(prefix="segmenter_upsample_") as tmp:
        for name, layer in (("H first (the model's)", HFirst()), ("W first", WFirst())):
            prefix = os.path.join(tmp, name.split()[0])
            paddle.jit.save(paddle.jit.to_static(layer, input_spec=[spec], full_graph=True), prefix)
            pred = deploy.create_predictor(prefix, threads, True)
            d = float(np.abs(pred(x)[0] - ref).max())
            print(f"{name}: oneDNN {pred.use_onednn}, max|diff| against F.interpolate {d:.1e}")
            fns[name] = lambda p=pred, t=xt: p.run_tensors(t)
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    for k, ts in times.items():
        print(f"{k}: {1000 * statistics.median(ts):.1f} ms (median of {runs})")


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="tools/benchmark.py predictor_profile", description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="input side (default: 512)")
    ap.add_argument("--threads", type=int, default=1, help="math threads (default: 1)")
    ap.add_argument("--runs", type=int, default=4, help="predictor runs, the first a warm-up (default: 4)")
    ap.add_argument("--upsample", action="store_true", help="time the logits' upsampling alone, two product orders")
    ap.add_argument("--bf16", action="store_true", help="profile the oneDNN bf16 predictor (--precision bf16's config)")
    a = ap.parse_args(argv)
    if a.upsample:
        from segmenter.runtime import configure_cpu

        configure_cpu(num_threads=a.threads)
        return upsample_orders(a.size, a.threads, a.runs)
    import paddle.inference as paddle_infer

    from benchmarks.versus import build_ours
    from segmenter import deploy
    from segmenter.runtime import configure_cpu

    configure_cpu(num_threads=a.threads)
    model = build_ours(a.size)
    model.eval()
    with tempfile.TemporaryDirectory(prefix="segmenter_profile_") as tmp:
        prefix = deploy.export(model, os.path.join(tmp, "m"), (a.size, a.size), batch_size=None, fused_attention=True)
        # the default path's predictor, at bf16 as --precision bf16 makes it
        config = deploy.predictor_config(prefix, a.threads, use_onednn=True, precision="bf16" if a.bf16 else "fp32")
        config.enable_profile()
        predictor = paddle_infer.create_predictor(config)
        handle = predictor.get_input_handle(predictor.get_input_names()[0])
        x = np.random.RandomState(0).rand(1, 3, a.size, a.size).astype("float32")
        for _ in range(a.runs):
            handle.reshape(list(x.shape))
            handle.copy_from_cpu(x)
            predictor.run()
        print(
            f"ViT-S/16 linear at {a.size}x{a.size}{', bf16' if a.bf16 else ''}, {a.threads} thread(s), {a.runs} runs; "
            "paddle's table follows"
        )
        del predictor  # paddle prints the profile as the predictor goes


if __name__ == "__main__":
    main()
