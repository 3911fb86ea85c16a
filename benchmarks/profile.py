"""Where the time goes: one ViT block's ops, the upsampling and the loss, timed in Paddle and PyTorch at the
model's real shapes (forward, or forward + backward), next to the whole model's time.

    python tools/benchmark.py profile [--model vit_s_linear] [--threads 1] [--repeats 5] [--mode forward train]

Each category runs the same ops as segmenter/models/layers.py (and its twin) on random inputs of the shapes
they see in the model (batch 1 for forward, 2 for train; 512x512 input, 150 classes), interleaved paddle/torch,
median of `repeats`. Per-block categories are multiplied by depth. "model" is the measured whole forward
(or train step with SGD); the difference from the sum is what the isolated ops do not see (patch embedding,
dispatch overhead, cache effects). The twin's model row runs its fused SDPA; its per-op rows the explicit
product, for comparison with Paddle's.
"""

import time
from typing import List, Optional

import numpy as np

from benchmarks import paths as bm  # model table, builders, FLOP count

INIT_STD = 0.02  # the models' trunc-normal init of Linear weights


def categories(B: int, d: int, heads: int, n_cls: int, size: int, train: bool):
    """name -> (per_block, paddle_fn, torch_fn, input shapes); each fn maps its inputs to one output tensor."""
    import paddle
    import paddle.nn.functional as PF
    import torch
    import torch.nn.functional as TF

    from segmenter.models.segmenter import upsample_bilinear as p_up
    from segmenter.pytorch.segmenter import upsample_bilinear as t_up

    g = size // bm.PATCH  # token grid side
    n = g * g + 1  # patch tokens + class token
    hd = d // heads
    rs = np.random.RandomState(0)
    w = {
        k: (rs.randn(*s) * INIT_STD).astype("float32")
        for k, s in (("qkv", (d, 3 * d)), ("proj", (d, d)), ("fc1", (d, 4 * d)), ("fc2", (4 * d, d)))
    }
    pw = {k: paddle.to_tensor(v) for k, v in w.items()}
    tw = {k: torch.from_numpy(v.T.copy()) for k, v in w.items()}  # torch Linear keeps [out, in]
    pb = {k: paddle.zeros([v.shape[1]]) for k, v in w.items()}
    tb = {k: torch.zeros(v.shape[1]) for k, v in w.items()}
    for t in list(pw.values()) + list(pb.values()):
        t.stop_gradient = not train
    for t in list(tw.values()) + list(tb.values()):
        t.requires_grad_(train)

    def p_split(y):  # as segmenter/models/layers.py: heads stacked into contiguous tensors, q scaled
        parts = y.chunk(3 * heads, axis=-1)
        q, k, v = (paddle.stack(parts[i * heads : (i + 1) * heads], axis=1) for i in range(3))
        return (q * hd**-0.5) + k + v

    def t_split(y):
        parts = y.chunk(3 * heads, dim=-1)
        q, k, v = (torch.stack(parts[i * heads : (i + 1) * heads], dim=1) for i in range(3))
        return (q * hd**-0.5) + k + v

    def p_linears(x):  # the block's four projections, fc2 on fc1's output
        h = PF.linear(x, pw["fc1"], pb["fc1"])
        return (
            PF.linear(x, pw["qkv"], pb["qkv"]).sum()
            + PF.linear(x, pw["proj"], pb["proj"]).sum()
            + PF.linear(h, pw["fc2"], pb["fc2"]).sum()
        )

    def t_linears(x):
        h = TF.linear(x, tw["fc1"], tb["fc1"])
        return (
            TF.linear(x, tw["qkv"], tb["qkv"]).sum()
            + TF.linear(x, tw["proj"], tb["proj"]).sum()
            + TF.linear(h, tw["fc2"], tb["fc2"]).sum()
        )

    def p_attn(q, a):  # the two batched matmuls of the explicit attention
        return paddle.matmul(q, q, transpose_y=True).sum() + paddle.matmul(a, q).sum()

    def t_attn(q, a):
        return torch.matmul(q, q.transpose(-2, -1)).sum() + torch.matmul(a, q).sum()

    def p_sdpa(q):
        return PF.scaled_dot_product_attention(
            q.transpose([0, 2, 1, 3]), q.transpose([0, 2, 1, 3]), q.transpose([0, 2, 1, 3]), training=train
        )

    ln = (paddle.ones([d]), paddle.zeros([d]), 1e-5, torch.ones(d), torch.zeros(d), 1e-5)  # weight, bias, eps
    label = np.random.RandomState(1).randint(0, n_cls, (B, size, size))
    p_label, t_label = paddle.to_tensor(label), torch.from_numpy(label)
    from segmenter.engine.losses import SegmenterCrossEntropyLoss

    p_loss = SegmenterCrossEntropyLoss()
    cats = {
        "linear qkv+proj+fc1+fc2": (True, p_linears, t_linears, [(B, n, d)]),
        "attention q@k^T, attn@v": (True, p_attn, t_attn, [(B, heads, n, hd), (B, heads, n, n)]),
        "softmax": (True, lambda a: PF.softmax(a, axis=-1), lambda a: TF.softmax(a, dim=-1), [(B, heads, n, n)]),
        "qkv split into heads, scale q": (True, p_split, t_split, [(B, n, 3 * d)]),
        "heads merge (concat)": (
            True,
            lambda o: paddle.concat(o.unbind(1), axis=-1),
            lambda o: torch.cat(o.unbind(1), dim=-1),
            [(B, heads, n, hd)],
        ),
        "layernorm x2": (
            True,
            lambda x: PF.layer_norm(PF.layer_norm(x, [d], *ln[:3]), [d], *ln[:3]),
            lambda x: TF.layer_norm(TF.layer_norm(x, [d], *ln[3:]), [d], *ln[3:]),
            [(B, n, d)],
        ),
        "gelu": (True, lambda h: PF.gelu(h), lambda h: TF.gelu(h), [(B, n, 4 * d)]),
        "residual adds x2": (True, lambda x, y: x + y + y, lambda x, y: x + y + y, [(B, n, d), (B, n, d)]),
        "upsample logits": (
            False,
            lambda m: p_up(m, [size, size]),
            lambda m: t_up(m, [size, size]),
            [(B, n_cls, g, g)],
        ),
        "sdpa (not used; paddle CPU)": (
            True,
            p_sdpa,
            lambda q: TF.scaled_dot_product_attention(q, q, q),
            [(B, heads, n, hd)],
        ),
    }
    if train:
        cats["loss (engine CE / torch CE)"] = (
            False,
            lambda m: p_loss(m, p_label),
            lambda m: TF.cross_entropy(m, t_label),
            [(B, n_cls, size, size)],
        )
    return cats


def timer(fn, inputs, train: bool, framework: str):
    """A no-argument callable running fn once (forward, or forward + backward of the sum)."""
    import paddle
    import torch

    if framework == "paddle":
        xs = [paddle.to_tensor(a, stop_gradient=not train) for a in inputs]
        if not train:

            def run():
                with paddle.no_grad():
                    fn(*xs).numpy()

            return run

        def run_train():
            fn(*xs).sum().backward()
            for x in xs:
                x.clear_grad()

        return run_train
    xs = [torch.from_numpy(a).requires_grad_(train) for a in inputs]
    if not train:

        def run_t():
            with torch.no_grad():
                fn(*xs)

        return run_t

    def run_t_train():
        fn(*xs).sum().backward()
        for x in xs:
            x.grad = None

    return run_t_train


def model_timers(name: str, train: bool):
    """Whole forward (batch 1) or train step (batch 2, SGD), paddle and torch."""
    import paddle
    import torch
    import torch.nn.functional as TF

    from segmenter.engine.losses import SegmenterCrossEntropyLoss

    pm, tm = bm.build_ours(name), bm.build_twin(name)
    B = bm.TRAIN_BATCH if train else 1
    x = np.random.rand(B, 3, bm.SIZE, bm.SIZE).astype("float32")
    y = np.random.randint(0, bm.N_CLS, (B, bm.SIZE, bm.SIZE))
    px, tx, py, ty = paddle.to_tensor(x), torch.from_numpy(x), paddle.to_tensor(y), torch.from_numpy(y)
    if not train:
        pm.eval()
        tm.eval()

        def p_fwd():
            with paddle.no_grad():
                pm(px)[0].numpy()

        def t_fwd():
            with torch.no_grad():
                tm(tx)

        return p_fwd, t_fwd
    pm.train()
    tm.train()
    p_opt = paddle.optimizer.SGD(learning_rate=1e-3, parameters=pm.parameters())
    t_opt = torch.optim.SGD(tm.parameters(), lr=1e-3)
    loss = SegmenterCrossEntropyLoss()

    def p_step():
        v = loss(pm(px)[0], py)
        v.backward()
        p_opt.step()
        p_opt.clear_grad()
        float(v)

    def t_step():
        v = TF.cross_entropy(tm(tx)[0], ty)
        v.backward()
        t_opt.step()
        t_opt.zero_grad()
        v.item()

    return p_step, t_step


def median_ms(fns, repeats: int):
    """Interleaved timing of several callables: warm-up each, then `repeats` rounds; median ms of each."""
    for f in fns:
        f()
    ts = [[] for _ in fns]
    for _ in range(repeats):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            f()
            ts[i].append(time.perf_counter() - t0)
    return [sorted(t)[len(t) // 2] * 1e3 for t in ts]


def profile(name: str, mode: str, repeats: int) -> None:
    d, depth, heads, dec = bm.MODELS[name]
    train = mode == "train"
    B = bm.TRAIN_BATCH if train else 1
    rows = []
    for cat, (per_block, pf, tf, shapes) in categories(B, d, heads, bm.N_CLS, bm.SIZE, train).items():
        inputs = [np.random.RandomState(2).randn(*s).astype("float32") for s in shapes]
        p, t = median_ms([timer(pf, inputs, train, "paddle"), timer(tf, inputs, train, "torch")], repeats)
        k = depth if per_block else 1
        rows.append((cat + (f" (x{depth})" if per_block else ""), p * k, t * k))
    counted = [r for r in rows if not r[0].startswith("sdpa")]
    sp, st = sum(r[1] for r in counted), sum(r[2] for r in counted)
    mp, mt = median_ms(list(model_timers(name, train)), max(1, repeats // 2))
    flop = bm.model_flops(d, depth, dec) * (B * bm.TRAIN_FLOP_FACTOR if train else 1)
    what = f"forward+backward, batch {B}" if train else "forward, batch 1"
    print(f"\n{name}, {what}, {bm.SIZE}x{bm.SIZE}; ms; % of the sum of the counted categories")
    print(f"{'category':36} {'paddle':>9} {'%':>5} {'torch':>9} {'%':>5} {'p/t':>5}")
    for cat, p, t in rows:
        p_pct, t_pct = (0.0, 0.0) if cat.startswith("sdpa") else (100 * p / sp, 100 * t / st)
        print(f"{cat:36} {p:9.1f} {p_pct:5.1f} {t:9.1f} {t_pct:5.1f} {p / t:5.2f}")
    print(f"{'sum of counted categories':36} {sp:9.1f} {'':5} {st:9.1f} {'':5} {sp / st:5.2f}")
    print(f"{'whole model (measured)':36} {mp:9.1f} {'':5} {mt:9.1f} {'':5} {mp / mt:5.2f}")
    print(f"model FLOPs {flop / 1e9:.1f} G: paddle {flop / mp / 1e6:.1f} GFLOP/s, torch {flop / mt / 1e6:.1f} GFLOP/s")


def main(argv: Optional[List[str]] = None) -> None:
    from segmenter.engine.cli import Parser

    ap = Parser(__doc__.splitlines()[0], prog="tools/benchmark.py profile")
    ap.add_argument("--model", default="vit_s_linear", choices=list(bm.MODELS), help="the model profiled")
    ap.add_argument("--threads", type=int, default=1, help="math threads for both frameworks")
    ap.add_argument("--repeats", type=int, default=5, help="profiled runs per mode")
    ap.add_argument(
        "--mode",
        nargs="+",
        default=["forward", "train"],
        choices=["forward", "train"],
        help="what is profiled: inference forward, training step, or both",
    )
    a = ap.parse_args(argv)
    import paddle
    import torch

    import segmenter  # noqa: F401  (runtime settings: MKL path, malloc)

    paddle.base.core.set_num_threads(a.threads)
    torch.set_num_threads(a.threads)
    keep = segmenter.runtime.cpu_settings().get("malloc_keep_freed")
    print(f"threads {a.threads}; malloc keeps freed memory: {keep}")
    for mode in a.mode:
        profile(a.model, mode, a.repeats)


if __name__ == "__main__":
    main()
