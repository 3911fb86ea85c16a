"""Memory of the compiled path's first call at an input size (engine/compiled.py), against the dygraph forward's.

    python tools/benchmark.py compile_memory [--models vit_s hybrid] [--sizes 512 1024x2048] [--threads 1]

Each (model, size) runs in fresh subprocesses, random weights, batch 1, 150 classes:
- `dygraph`: the peak resident memory one dygraph forward adds over the built model's;
- `compiled`: the same for the first call of a CompiledModel (compile_after=1: the dygraph reference, the export,
  the predictor(s) and their check), and for its second call (the predictor alone), with the memory each phase of
  the first call added (sampled from /proc/self/statm every 2 ms by a thread, phases marked by wrapping
  deploy.export, deploy.create_predictor and Predictor._run), compiled here also above compiled.MAX_TOKENS;
- `--profile` adds a third child that walks the old order by hand (export, dygraph reference, oneDNN predictor and
  its run, MKL predictor and its run) and prints what each phase added and what it left behind.
Models: vit_s (ViT-S/16 linear) and hybrid (R50+ViT-B/16 linear as configs/_base_/segmenter_vit_base_r50.yml,
`--hybrid-depth` transformer blocks: 12 is slow on 2 cores).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from benchmarks import ROOT
from segmenter.runtime import PeakRSS, resident_mb

N_CLS = 150


def parse_size(s: str) -> Tuple[int, int]:
    h, _, w = s.partition("x")
    return int(h), int(w or h)


class Sampler(PeakRSS):
    """runtime.PeakRSS, started at once, that also stops the process past `limit_mb` and keeps phases: `mark(name)`
    closes one (its peak and end RSS over the start)."""

    def __init__(self, period: float = 0.002, limit_mb: float = 0.0):
        super().__init__(period)
        self.limit_mb = limit_mb
        self.phases: List[Tuple[str, float, float]] = []  # (name, peak MB over base, end MB over base)
        self.__enter__()

    def _watch(self):
        while not self._stop.wait(self.period):
            self.peak = max(self.peak, resident_mb())
            if self.limit_mb and self.peak - self.base > self.limit_mb:  # report the phase that ran away, and stop
                self.phases.append(("(over --limit-mb here)", round(self.peak - self.base, 1), 0.0))
                print("RESULT " + json.dumps({"peak_mb": None, "over_limit": True, "phases": self.phases}), flush=True)
                os._exit(3)

    def mark(self, name: str) -> None:
        now = resident_mb()
        peak = max(self.peak, now)
        self.phases.append((name, round(peak - self.base, 1), round(now - self.base, 1)))
        self.peak = now

    def stop(self) -> float:
        self.__exit__()
        return max(p for _, p, _ in self.phases) if self.phases else 0.0


def build(model: str, size: Tuple[int, int], hybrid_depth: int):
    import paddle

    from segmenter.models import Segmenter, SegmenterViT

    paddle.seed(0)
    if model == "tiny":  # logits-dominated (150 classes, 1 block of width 32): tests/test_compiled.py's bound
        bb = SegmenterViT(img_size=list(size), embed_dim=32, depth=1, num_heads=2)
    elif model == "vit_s":
        bb = SegmenterViT(img_size=list(size), embed_dim=384, depth=12, num_heads=6)
    else:
        bb = SegmenterViT(
            img_size=list(size),
            stem_layers=[3, 4, 9],
            patch_size=1,
            embed_dim=768,
            depth=hybrid_depth,
            num_heads=12,
            norm_eps=1e-6,
            pos_embed_interp="bicubic",
        )
    m = Segmenter(N_CLS, bb, {"name": "linear"})
    m.eval()
    return m


def child(kind: str, model: str, size: Tuple[int, int], threads: int, hybrid_depth: int, limit_mb: float) -> dict:
    import paddle

    import segmenter  # noqa: F401
    from segmenter import deploy
    from segmenter.engine import compiled
    from segmenter.runtime import configure_cpu, release_freed_memory

    configure_cpu(num_threads=threads)
    m = build(model, size, hybrid_depth)
    x = paddle.to_tensor(np.random.RandomState(0).rand(1, 3, *size).astype("float32"))
    release_freed_memory()
    s = Sampler(limit_mb=limit_mb)
    out: Dict[str, object] = {}
    with paddle.no_grad():
        if kind == "dygraph":
            t0 = time.perf_counter()
            m(x)[0].numpy()
            out["seconds"] = time.perf_counter() - t0
            s.mark("dygraph forward")
        elif kind == "compiled":
            wrap = {}  # phase marks around the pieces of CompiledModel._compile

            def marked(obj, name, label):
                real = getattr(obj, name)
                wrap[(obj, name)] = real

                def f(*a, **k):
                    s.mark(f"up to {label}")
                    try:
                        return real(*a, **k)
                    finally:
                        s.mark(label)

                setattr(obj, name, f)

            marked(deploy, "export", "export (to_static + save)")
            marked(deploy, "create_predictor", "create predictor")
            marked(deploy.Predictor, "_run", "predictor run")
            net = compiled.CompiledModel(
                m, compile_after=1, num_threads=threads, max_tokens=10**9, min_tokens=0
            )  # all sizes
            t0 = time.perf_counter()
            net(x)[0].numpy()
            out["first_seconds"] = time.perf_counter() - t0
            s.mark("first call, rest")
            for (obj, name), real in wrap.items():
                setattr(obj, name, real)
            first = max(p for _, p, _ in s.phases)
            t0 = time.perf_counter()
            net(x)[0].numpy()
            out["second_seconds"] = time.perf_counter() - t0
            s.mark("second call")
            out["second_mb"] = s.phases[-1][1]
            out["first_mb"], out["compiled"] = (
                first,
                ["oneDNN" if p.use_onednn else "MKL" for p in net.predictors.values()] or [net.failed],
            )
        else:  # the old order, by hand
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                prefix = deploy.export(m, os.path.join(tmp, "model"), size, batch_size=None)
                s.mark("export (to_static + save)")
                ref = m(x)[0].numpy()
                s.mark("dygraph reference (held)")
                for use_onednn in (True, False):
                    name = "oneDNN" if use_onednn else "MKL"
                    pred = deploy.create_predictor(prefix, threads, use_onednn)
                    s.mark(f"create {name} predictor")
                    got = pred(x.numpy())[0]
                    s.mark(f"{name} run")
                    out[f"{name}_diff"] = float(np.abs(got - ref).max())
                    del pred, got
                    release_freed_memory()
                    s.mark(f"{name} freed + trim")
    out["peak_mb"] = s.stop()
    out["phases"] = s.phases
    return out


def run_child(kind: str, model: str, size: str, threads: int, hybrid_depth: int, limit_mb: float) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.compile_memory", "--child", kind, "--models", model, "--sizes", size]
    cmd += ["--threads", str(threads), "--hybrid-depth", str(hybrid_depth), "--limit-mb", str(limit_mb)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in r.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"peak_mb": None, "note": f"failed rc={r.returncode}: {r.stderr.strip().splitlines()[-1:]}"}


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="tools/benchmark.py compile_memory", description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["vit_s", "hybrid"], choices=("vit_s", "hybrid", "tiny"))
    ap.add_argument("--sizes", nargs="+", default=["512", "1024x2048"], help="sides or HxW (height x width)")
    ap.add_argument("--threads", type=int, default=1, help="math threads (default 1)")
    ap.add_argument("--hybrid-depth", type=int, default=2, help="transformer blocks of the hybrid (default 2)")
    ap.add_argument("--limit-mb", type=float, default=6000, help="a child stops past this much added RSS (6000)")
    ap.add_argument("--profile", action="store_true", help="also walk the old order phase by phase")
    ap.add_argument("--json", default=None, help="write the rows here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        res = child(a.child, a.models[0], parse_size(a.sizes[0]), a.threads, a.hybrid_depth, a.limit_mb)
        print("RESULT " + json.dumps(res))
        return
    rows = []
    for model in a.models:
        for size in a.sizes:
            row = {"model": model, "size": size}
            for kind in ("dygraph", "compiled") + (("profile",) if a.profile else ()):
                row[kind] = run_child(kind, model, size, a.threads, a.hybrid_depth, a.limit_mb)
            rows.append(row)
            dy, co = row["dygraph"], row["compiled"]
            ratio = co.get("first_mb") / dy["peak_mb"] if dy.get("peak_mb") and co.get("first_mb") else None
            print(
                f"{model} {size}: dygraph forward +{dy.get('peak_mb')} MB ({dy.get('seconds', 0):.1f} s); "
                f"compiled first call +{co.get('first_mb')} MB ({co.get('first_seconds', 0):.1f} s, "
                f"{co.get('compiled')}), ratio {ratio and round(ratio, 2)}; "
                f"second call +{co.get('second_mb')} MB ({co.get('second_seconds', 0):.1f} s)",
                flush=True,
            )
            for kind in ("compiled", "profile"):
                for name, peak, end in row.get(kind, {}).get("phases", []):
                    print(f"    {kind:8s} {name:36s} peak +{peak:7.1f} MB, after +{end:7.1f} MB")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
