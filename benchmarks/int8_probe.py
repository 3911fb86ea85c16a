"""Can paddle 3.3.1 run our model in int8 on oneDNN? The three routes it offers, tried on the quickstart model.

    python tools/benchmark.py int8_probe [--config C --weights W]   (default: trains tests/test_precision.py's model)

1. The static-graph post-training quantization (`paddle.static.quantization.PostTrainingQuantization`, then
   `Quant2Int8OnednnPass`) reads a legacy program (`<model>.pdmodel`): export one with FLAGS_enable_pir_api=0.
2. The dygraph post-training quantization (`paddle.quantization.PTQ`, AbsmaxObserver on every Linear and Conv2D,
   calibrated on the training images), its int8-simulating model evaluated, then exported and run by predictors
   (oneDNN with and without `enable_onednn_int8()`, MKL).
3. `enable_onednn_int8()` on the plain fp32 export (nothing tells it the scales).
Each step prints what it measured or the error paddle gave; docs/deployment.md ("int8") has the figures.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from typing import List, Optional

import numpy as np

from benchmarks import ROOT

LEGACY_EXPORT = """
import sys
import segmenter
from segmenter import deploy
from segmenter.engine.run import load_config, load_model
m = load_model(load_config(sys.argv[1]), sys.argv[2])
deploy.export(m, sys.argv[3], (32, 32), batch_size=None)
"""


def last_error(text: str) -> str:
    """The line of an error paddle printed that names it."""
    lines = [ln.strip() for ln in text.splitlines() if "Error" in ln and ln.strip()]
    return lines[-1][:300] if lines else text.strip().splitlines()[-1][:300]


def trained_quickstart(tmp: str) -> tuple:
    """(config, weights) of tests/test_precision.py's model: the quickstart config trained 60 iterations."""
    from segmenter.engine.run import load_config, run_train
    from tests.test_precision import QUICK

    cfg = os.path.join(tmp, "quick.yml")
    with open(cfg, "w") as f:
        f.write(QUICK.format(root=ROOT))
    run_train(load_config(cfg), os.path.join(tmp, "run"), seed=0, save_interval=60, log_iters=1000)
    return cfg, os.path.join(tmp, "run", "iter_60")


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="tools/benchmark.py int8_probe", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="a config (default: train tests/test_precision.py's model)")
    ap.add_argument("--weights", default=None, help="its weights (with --config)")
    a = ap.parse_args(argv)
    import paddle
    import paddle.inference as pi
    from paddle.quantization import PTQ, QuantConfig
    from paddle.quantization.observers import AbsmaxObserver

    import segmenter  # noqa: F401
    from segmenter import deploy
    from segmenter.engine.builder import Builder
    from segmenter.engine.evaluate import evaluate
    from segmenter.engine.run import load_config, load_model

    with tempfile.TemporaryDirectory() as tmp:
        cfg_path, weights = (a.config, a.weights) if a.config else trained_quickstart(tmp)
        cfg = load_config(cfg_path)
        model = load_model(cfg, weights)
        b = Builder(cfg)
        train, val = b.train_dataset, b.val_dataset

        r = subprocess.run(
            [sys.executable, "-c", LEGACY_EXPORT, cfg_path, weights, os.path.join(tmp, "legacy", "model")],
            capture_output=True,
            text=True,
            env=dict(os.environ, FLAGS_enable_pir_api="0", PYTHONPATH=ROOT),
            timeout=600,
        )
        legacy = [] if r.returncode else [f for f in os.listdir(os.path.join(tmp, "legacy")) if f.endswith(".pdmodel")]
        print(f"1. legacy program for PostTrainingQuantization: {legacy or last_error(r.stderr)}")

        qc = QuantConfig(activation=None, weight=None)
        qc.add_type_config([paddle.nn.Linear, paddle.nn.Conv2D], activation=AbsmaxObserver(), weight=AbsmaxObserver())
        ptq = PTQ(qc)
        observed = ptq.quantize(model, inplace=False)
        observed.eval()
        with paddle.no_grad():
            for i in range(len(train)):  # the calibration set: the training images
                observed(paddle.to_tensor(train[i]["img"][None]))
        int8 = ptq.convert(observed, inplace=False)
        fp32_m = evaluate(model, val, model.num_classes, progress=False, fast_path=False)["mIoU"]
        int8_m = evaluate(int8, val, model.num_classes, progress=False, fast_path=False)["mIoU"]
        x = np.stack([val[i]["img"] for i in range(len(val))]).astype("float32")
        with paddle.no_grad():
            ref, sim = model(paddle.to_tensor(x))[0].numpy(), int8(paddle.to_tensor(x))[0].numpy()
        print(
            f"2. dygraph PTQ ({sum('Quant' in type(m).__name__ for m in observed.sublayers())} layers, calibrated on "
            f"{len(train)} training images), int8 simulated in dygraph: mIoU {int8_m:.4f} against fp32 {fp32_m:.4f}, "
            f"argmax agreement {100 * float((sim.argmax(1) == ref.argmax(1)).mean()):.2f}%"
        )
        try:
            prefix = deploy.export(int8, os.path.join(tmp, "ptq", "model"), (32, 32), batch_size=None)
            print("   export, variable batch: done")
        except Exception as e:  # noqa: BLE001 (what paddle says is the finding)
            print(f"   export, variable batch: {last_error(str(e))}")
            prefix = deploy.export(int8, os.path.join(tmp, "ptq", "model"), (32, 32), batch_size=len(val))
            print(f"   export, batch {len(val)}: done")
        for name, onednn, int8_on in (("oneDNN", True, False), ("oneDNN int8", True, True), ("MKL", False, False)):
            c = deploy.predictor_config(prefix, 1, onednn)
            if int8_on:
                c.enable_onednn_int8()
            c.disable_glog_info()
            try:
                out = pi.create_predictor(c).run([paddle.to_tensor(x)])[0].numpy()
                agree = float((out.argmax(1) == ref.argmax(1)).mean())
                print(f"   {name} predictor: argmax agreement {100 * agree:.2f}%")
            except Exception as e:  # noqa: BLE001
                print(f"   {name} predictor: {last_error(str(e))}")

        prefix = deploy.export(model, os.path.join(tmp, "fp32", "model"), (32, 32), batch_size=None)
        outs = {}
        for int8_on in (False, True):
            c = deploy.predictor_config(prefix, 1, True)
            if int8_on:
                c.enable_onednn_int8()
            c.disable_glog_info()
            outs[int8_on] = pi.create_predictor(c).run([paddle.to_tensor(x)])[0].numpy()
        same = np.array_equal(outs[False], outs[True])
        print(f"3. enable_onednn_int8() on the fp32 export: logits {'bitwise' if same else 'not'} the fp32 predictor's")


if __name__ == "__main__":
    main()
