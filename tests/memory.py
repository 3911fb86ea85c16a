"""Hands a test process's freed memory back to the system between tests.

`import segmenter` tells glibc to keep up to 2 GB of freed memory for reuse (segmenter/runtime.py), which is what
a user's long inference run wants; a test process runs hundreds of tests one after another, and each one's models
would stay in its heap, many of them in reference cycles (a model and its optimizer hold each other) that Python's
collector seldom reaches because they are few large objects. After any test that leaves the process above
`TRIM_ABOVE_MB` of resident memory and `GROWTH_MB` more than the last hand-back left (and after each file's last
test) this runs `segmenter.runtime.release_freed_memory` (gc, then `malloc_trim(0)`), so the process's peak is the
heaviest test's, not the sum of them (docs/development.md, Memory).

Each of those collections walks every object the interpreter tracks, and the imports alone (Paddle, PyTorch, timm,
MMSeg and the test modules) make ~600k of them: 0.3-0.8 s a collection, paid after each file, each tool run, each
compile and each heavy test. Once collection has imported every test module, `pytest_collection_finish` collects
and then freezes what is left (`gc.freeze`: the survivors move to a generation no collection walks), and so does
the hand-back after each file (its fixtures and its last test's values dropped by then): a later collection walks
only what the tests made since. What is frozen is what the imports made, alive for good anyway; only a reference
cycle alive at a file's end and dropped later (none of the tests keep one: no session or package fixtures) would
stay unfreed.

segmenter is imported inside the functions: this plugin loads before conftest.py's pytest_configure sets each
worker's OMP_NUM_THREADS, which `import segmenter` reads.
"""

import gc

import pytest

TRIM_ABOVE_MB = 1536  # imports alone (Paddle, PyTorch, timm, MMSeg) hold ~1.1 GB; one hand-back costs ~0.3 s
GROWTH_MB = 384  # ... and only once a test left this much more than the last hand-back did (what stays is live)
_LEFT = [0.0]  # resident MB after the last hand-back
_FILE_DONE = [False]  # the test being torn down is its file's last (or the run's)


def resident_mb() -> float:
    """This process's current resident memory (segmenter.runtime.resident_mb)."""
    from segmenter.runtime import resident_mb as current

    return current()


def hand_back() -> None:
    """Collect reference cycles, then give the heap's free pages back to the system."""
    from segmenter.runtime import release_freed_memory

    release_freed_memory()
    _LEFT[0] = resident_mb()


@pytest.hookimpl(trylast=True)  # after every plugin's collection: the test modules and what they import are loaded
def pytest_collection_finish(session):
    """Freeze the survivors of the imports, so the collections after the tests' hand-backs skip them."""
    try:  # imported first: its entry-point plugins (trio's register_random) look for referrers with
        import hypothesis  # noqa: F401  gc.get_referrers, which does not see frozen objects, and would warn
    except ImportError:
        pass
    gc.collect()
    gc.freeze()


@pytest.hookimpl(trylast=True)  # after pytest's own teardown: the test's (and a file's module) fixtures are gone
def pytest_runtest_teardown(item, nextitem):
    _FILE_DONE[0] = nextitem is None or nextitem.path != item.path
    if not _FILE_DONE[0] and resident_mb() > max(TRIM_ABOVE_MB, _LEFT[0] + GROWTH_MB):
        hand_back()


def pytest_runtest_logfinish(nodeid, location):
    """After a file's last test, once pytest has dropped that test's fixture values (item.funcargs, which it keeps
    through the teardown hooks): hand back, then freeze what is left, which is what the file's tests imported
    (MMSeg's models, Paddle's to_static, ...). Frozen during the teardown, the last test's values would have been
    kept for good (+235 MB of peak over 18 files)."""
    if _FILE_DONE[0]:
        hand_back()
        gc.freeze()
