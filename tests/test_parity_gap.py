"""segmenter.parity.gap, the number every parity test reads: the same figures as the plain float64 formulas, at any
slab size, and without holding float64 copies of whole 150-class logits (1.8 GB at 512x512 before it went slab by
slab; it set the suite's largest test-process peak, 4.06 GB)."""

import tracemalloc

import numpy as np
import pytest

from segmenter.parity import gap


def plain(a, b):
    """The formulas on whole arrays in float64: max|a-b|, |a-b|/|a|, arg-max agreement over axis 1, and the largest
    top-2 margin of `a` where the arg-max differs."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    differ = a.argmax(1) != b.argmax(1)
    top2 = np.sort(a64, axis=1)[:, -2:]
    margin = float((top2[:, 1] - top2[:, 0])[differ].max()) if differ.any() else 0.0
    rel = np.linalg.norm(a64 - b64) / np.linalg.norm(a64)
    return float(np.abs(a64 - b64).max()), float(rel), float(1 - differ.mean()), int(differ.sum()), margin


@pytest.mark.parametrize("chunk", [7, 1000, 1 << 22])
def test_gap_is_the_plain_formulas(chunk):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 5, 33, 17)).astype(np.float32)
    b = a + 0.3 * rng.standard_normal(a.shape).astype(np.float32)  # some pixels' arg-max moves
    g = gap(a, b, chunk=chunk)
    want = plain(a, b)
    assert want[3] > 0, "the case should have disagreeing pixels"
    got = (g.max_abs, g.rel_l2, g.argmax_agree, g.n_disagree, g.tie_margin)
    assert np.allclose(got, want, rtol=1e-12, atol=0), f"{got} vs {want}"


def test_gap_of_other_ranks_and_shape_mismatch():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    g = gap(a, a + 0.5)
    assert (g.max_abs, g.argmax_agree) == (0.5, 1.0)
    assert g.rel_l2 == pytest.approx(0.5 * np.sqrt(12) / np.linalg.norm(a.astype(np.float64)), rel=1e-12)
    with pytest.raises(ValueError, match=r"shapes differ: \(3, 4\) vs \(4, 3\)"):
        gap(a, a.T)


def test_gap_of_whole_logits_holds_no_whole_float64_copy():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((1, 150, 512, 512), dtype=np.float32)  # 157 MB each: ADE20K logits of a 512 image
    b = a + np.float32(1e-3)
    tracemalloc.start()
    try:
        gap(a, b)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 1.5 * a.nbytes, f"gap held {peak / 2**20:.0f} MB at once for two {a.nbytes / 2**20:.0f} MB inputs"
