"""Per-size state that a long run would otherwise grow without bound (benchmarks/long_runs.py measures the runs)."""

import paddle

from segmenter.engine import compiled


class Echo(paddle.nn.Layer):
    """A model that returns its input as logits: the compiled path's bookkeeping without a forward's cost."""

    def forward(self, x):
        return [x]


def test_the_compiled_model_forgets_the_oldest_sizes_past_its_cap(monkeypatch):
    """Fed a new input size every call (the demo page's uploads), the sizes counted towards compiling stay at
    MAX_SEEN, the oldest forgotten first; a size seen again while counted still compiles on its second sight."""
    monkeypatch.setattr(compiled, "MAX_SEEN", 8)
    net = compiled.CompiledModel(Echo(), min_tokens=10**9)  # nothing compiles: only the counting is watched
    sizes = [(3, 8 + k, 8) for k in range(20)]
    for s in sizes:
        net(paddle.zeros([1, *s]))
    assert list(net.seen) == sizes[-8:], f"counted {len(net.seen)} sizes: {list(net.seen)[:3]}..."
    net(paddle.zeros([1, *sizes[-1]]))
    assert net.seen[sizes[-1]] == 2 and len(net.seen) == 8, dict(net.seen)


def test_the_long_run_figures_are_the_committed_runs():
    """docs/benchmarks.md's long-run and demo-latency tables state what the committed JSONs of those runs hold."""
    import json
    import os
    import re

    from benchmarks.long_runs import growth

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    page = open(os.path.join(root, "docs", "benchmarks.md")).read()
    runs = json.load(open(os.path.join(root, "docs", "benchmarks", "long_runs.json")))["results"]
    rows = re.findall(
        r"^\| [^|]+ \| ([\d,]+) (?:requests|images|files) \| (\d+) \| (\d+) MB \| (\d+) MB \| \+(\d+) MB \|$",
        page,
        re.M,
    )
    want = [
        (f"{r['curve'][-1][0]:,}", f"{r['seconds']:.0f}", *(f"{abs(v):.0f}" for v in growth(r))) for r in runs.values()
    ]
    assert rows == want, f"page {rows}, JSON {want}"
    latency = json.load(open(os.path.join(root, "docs", "benchmarks", "demo_latency.json")))["rows"]
    rows = re.findall(
        r"^\| [^|]+ \| (\d) \| ([\d.]+) s \| ([\d.]+) s \| ([\d.]+) s \| ([\d.]+) s \| ([\d.]+) \| (\d+) ms \|$",
        page,
        re.M,
    )
    want = [
        (
            str(r["clients"]),
            *(f"{r[k] / 1000:.2f}" for k in ("p50_ms", "p99_ms", "model_p50_ms", "queued_p50_ms")),
            f"{r['per_s']:.2f}",
            f"{r['probe_max_ms']:.0f}",
        )
        for r in latency
    ]
    assert rows == want, f"page {rows}, JSON {want}"
