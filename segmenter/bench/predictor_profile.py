"""Where the default path's forward goes: paddle's own per-op profile of the compiled ViT-S/16 linear predictor.

    python tools/benchmark.py predictor_profile [--size 512] [--threads 1] [--runs 4]

Exports the model as the default path does (`deploy.export(fused_attention=True)`, the fused attention kernel in
the graph), builds its oneDNN predictor with `paddle.inference.Config.enable_profile()` (deploy's deleted passes
deleted) and runs it `--runs` times on a random input; paddle prints its op table (calls, total and per-call ms,
share) when the predictor goes. Random weights, 150 classes, batch 1; docs/benchmarks.md reads the table against
each op's matmul floor.
"""

import argparse
import os
import tempfile
from typing import List, Optional

import numpy as np


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="tools/benchmark.py predictor_profile", description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="input side (default: 512)")
    ap.add_argument("--threads", type=int, default=1, help="math threads (default: 1)")
    ap.add_argument("--runs", type=int, default=4, help="predictor runs, the first a warm-up (default: 4)")
    a = ap.parse_args(argv)
    import paddle.inference as paddle_infer

    from segmenter import deploy
    from segmenter.bench.versus import build_ours
    from segmenter.runtime import configure_cpu

    configure_cpu(num_threads=a.threads)
    model = build_ours(a.size)
    model.eval()
    with tempfile.TemporaryDirectory(prefix="segmenter_profile_") as tmp:
        prefix = deploy.export(model, os.path.join(tmp, "m"), (a.size, a.size), batch_size=None, fused_attention=True)
        config = paddle_infer.Config(deploy._model_file(prefix), prefix + ".pdiparams")
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(a.threads)
        config.enable_onednn()
        config.switch_ir_optim(True)
        for name in deploy.ONEDNN_DELETED_PASSES:
            config.delete_pass(name)
        config.enable_profile()
        predictor = paddle_infer.create_predictor(config)
        handle = predictor.get_input_handle(predictor.get_input_names()[0])
        x = np.random.RandomState(0).rand(1, 3, a.size, a.size).astype("float32")
        for _ in range(a.runs):
            handle.reshape(list(x.shape))
            handle.copy_from_cpu(x)
            predictor.run()
        print(f"ViT-S/16 linear at {a.size}x{a.size}, {a.threads} thread(s), {a.runs} runs; paddle's table follows")
        del predictor  # paddle prints the profile as the predictor goes


if __name__ == "__main__":
    main()
