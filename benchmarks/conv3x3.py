"""One 3x3 convolution (stride 1, padding 1) four ways, each in its own process taking turns (benchmarks/_turns.py):
torch's conv2d, paddle's conv2d in a oneDNN predictor (what UPerNetViT's default path runs), and in oneDNN predictors
the same product written as one GEMM over the nine taps plus shifted sums, and as Winograd F(2x2, 3x3).

    python tools/benchmark.py conv3x3 [--cin 2048] [--cout 512] [--size 128] [--repeats 3] [--threads 1]

The default shape is UPerHead's FPN bottleneck in MMSeg's ViT-B UPerNet at 512x512 (2048 -> 512 channels at
128x128, 309 GFLOP: a third of the model), the conv that keeps ours behind MMSeg's there (docs/benchmarks.md).
Random input and weights; every form's output is checked against torch's conv2d.
"""

import argparse
import os
import tempfile
from typing import List, Optional

import numpy as np

FORMS = ("torch conv2d", "paddle conv2d (oneDNN predictor)", "GEMM over the taps (oneDNN)", "Winograd F(2,3) (oneDNN)")


def data(cin: int, cout: int, size: int):
    rs = np.random.RandomState(0)
    return rs.randn(1, cin, size, size).astype("float32"), (rs.randn(cout, cin, 3, 3) * 0.02).astype("float32")


def torch_conv(cin: int, cout: int, size: int):
    from benchmarks._turns import torch_only

    torch_only()
    import torch

    x, w = (torch.from_numpy(a) for a in data(cin, cout, size))
    torch.set_grad_enabled(False)
    return (lambda: torch.nn.functional.conv2d(x, w, padding=1)), {}


def winograd_weights(w: np.ndarray) -> np.ndarray:
    """U = G g G^T for each (out, in) 3x3 kernel: [16, Cout, Cin] (F(2x2, 3x3))."""
    g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)
    return np.einsum("ik,ockl,jl->ijoc", g, w, g).reshape(16, w.shape[0], w.shape[1]).astype("float32")


def paddle_form(form: str, cin: int, cout: int, size: int):
    """A oneDNN predictor of one layer computing the conv as `form` ("conv", "gemm" or "winograd")."""
    from benchmarks.versus import paddle_runtime

    paddle_runtime()
    import paddle
    import paddle.inference as paddle_infer
    import paddle.nn.functional as F

    from segmenter import deploy

    x, w = data(cin, cout, size)
    s = size

    class Conv(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            init = winograd_weights(w) if form == "winograd" else w
            self.w = self.create_parameter(list(init.shape), default_initializer=paddle.nn.initializer.Assign(init))

        def forward(self, x):
            if form == "conv":
                return [F.conv2d(x, self.w, padding=1)]
            if form == "gemm":  # Z[k, o, p] = sum_c W[o, c, k] x[c, p]; y[o, h, w] = sum_k Z[k, o, h + dy, w + dx]
                wk = self.w.transpose([2, 3, 0, 1]).reshape([9 * cout, cin])
                z = F.pad(paddle.matmul(wk, x.reshape([cin, s * s])).reshape([9, cout, s, s]), [1, 1, 1, 1])
                y = z[0, :, 0:s, 0:s]
                for k in range(1, 9):
                    y = y + z[k, :, k // 3 : k // 3 + s, k % 3 : k % 3 + s]
                return [y.unsqueeze(0)]
            t = s // 2  # Winograd F(2x2, 3x3): 4x4 input tiles at stride 2, B^T d B, U (x) V, A^T m A
            xp = F.pad(x, [1, 1, 1, 1])
            d = [xp[:, :, i : i + s : 2, :] for i in range(4)]  # rows of the tiles: [1, C, t, s + 2]
            rows = [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]
            v = []
            for r in rows:
                c = [r[:, :, :, j : j + s : 2] for j in range(4)]  # [1, C, t, t]
                v += [c[0] - c[2], c[1] + c[2], c[2] - c[1], c[1] - c[3]]
            m = paddle.matmul(self.w, paddle.stack(v, 0).reshape([16, cin, t * t]))  # [16, Cout, t * t]
            m = m.reshape([4, 4, cout, t, t])
            a0, a1 = m[0] + m[1] + m[2], m[1] - m[2] - m[3]
            y = [[a[0] + a[1] + a[2], a[1] - a[2] - a[3]] for a in (a0, a1)]  # 2 x 2 outputs per tile
            y = paddle.stack([paddle.stack(y[0], -1), paddle.stack(y[1], -1)], 2)  # [Cout, t, 2, t, 2]
            return [y.reshape([1, cout, s, s])]

    prefix = os.path.join(tempfile.mkdtemp(prefix="segmenter_conv3x3_"), "m")
    spec = paddle.static.InputSpec([1, cin, s, s], "float32", "x")
    paddle.jit.save(paddle.jit.to_static(Conv(), input_spec=[spec], full_graph=True), prefix)
    config = deploy.predictor_config(prefix, None, True)
    config.disable_glog_info()
    pred = paddle_infer.create_predictor(config)
    px = paddle.to_tensor(x)
    return (lambda: pred.run([px])), {}


def main(argv: Optional[List[str]] = None) -> dict:
    ap = argparse.ArgumentParser(prog="tools/benchmark.py conv3x3", description=__doc__.splitlines()[0])
    ap.add_argument("--cin", type=int, default=2048, help="input channels (default: 2048)")
    ap.add_argument("--cout", type=int, default=512, help="output channels (default: 512)")
    ap.add_argument("--size", type=int, default=128, help="map side, even (default: 128)")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (default: 3)")
    ap.add_argument("--threads", type=int, default=None, help="threads of every process (default: every core)")
    a = ap.parse_args(argv)
    from benchmarks._turns import Contender, compare, run_turns

    kw = {"cin": a.cin, "cout": a.cout, "size": a.size}
    cs = [Contender(FORMS[0], "benchmarks.conv3x3:torch_conv", kw)] + [
        Contender(name, "benchmarks.conv3x3:paddle_form", dict(kw, form=form))
        for name, form in zip(FORMS[1:], ("conv", "gemm", "winograd"))
    ]
    for c in cs if a.threads else []:
        c.env["OMP_NUM_THREADS"] = str(a.threads)
    flop = 2 * a.size**2 * a.cout * a.cin * 9
    print(f"3x3 conv {a.cin} -> {a.cout} at {a.size}x{a.size}: {flop / 1e9:.0f} GFLOP; load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="segmenter_conv3x3_") as tmp:
        res = run_turns(cs, a.repeats, save_dir=tmp)
        print("| form | s (median) | GFLOP/s | CPU s | max abs diff to torch |\n|---|---|---|---|---|")
        for c in cs:
            r = res[c.name]
            if not r.get("median"):
                print(f"| {c.name} | failed: {r.get('error')} | | | |")
                continue
            d = compare(r["output"], res[FORMS[0]]["output"])[0] if res[FORMS[0]].get("output") else float("nan")
            rate = flop / r["median"] / 1e9
            print(f"| {c.name} | {r['median']:.3f} | {rate:.0f} | {r['cpu_median']:.3f} | {d:.1e} |")
            r["max_abs_diff"] = d
        return res


if __name__ == "__main__":
    main()
