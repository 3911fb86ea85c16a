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
