"""Hands a test process's freed memory back to the system between tests.

`import segmenter` tells glibc to keep up to 2 GB of freed memory for reuse (segmenter/runtime.py), which is what
a user's long inference run wants; a test process runs hundreds of tests one after another, and each one's models
would stay in its heap, many of them in reference cycles (a model and its optimizer hold each other) that Python's
collector seldom reaches because they are few large objects. After any test that leaves the process above
`TRIM_ABOVE_MB` of resident memory and `GROWTH_MB` more than the last hand-back left (and after each file's last
test) this runs `segmenter.runtime.release_freed_memory` (gc, then `malloc_trim(0)`), so the process's peak is the
heaviest test's, not the sum of them (docs/development.md, Memory).

segmenter is imported inside the functions: this plugin loads before conftest.py's pytest_configure sets each
worker's OMP_NUM_THREADS, which `import segmenter` reads.
"""

import pytest

TRIM_ABOVE_MB = 1536  # imports alone (Paddle, PyTorch, timm, MMSeg) hold ~1.1 GB; one hand-back costs ~0.3 s
GROWTH_MB = 384  # ... and only once a test left this much more than the last hand-back did (what stays is live)
_LEFT = [0.0]  # resident MB after the last hand-back


def resident_mb() -> float:
    """This process's current resident memory (segmenter.runtime.resident_mb)."""
    from segmenter.runtime import resident_mb as current

    return current()


def hand_back() -> None:
    """Collect reference cycles, then give the heap's free pages back to the system."""
    from segmenter.runtime import release_freed_memory

    release_freed_memory()
    _LEFT[0] = resident_mb()


@pytest.hookimpl(trylast=True)  # after pytest's own teardown: the test's (and a file's module) fixtures are gone
def pytest_runtest_teardown(item, nextitem):
    now = resident_mb()
    if nextitem is None or nextitem.path != item.path or now > max(TRIM_ABOVE_MB, _LEFT[0] + GROWTH_MB):
        hand_back()
