"""CPU runtime settings for Paddle: thread count and MKL's code path on AMD processors.

Why this exists (measured on a 2-core AMD EPYC, paddlepaddle 3.3.1, see docs/benchmarks/history.md):

1. Paddle's dense matmul on CPU calls `cblas_sgemm` from the MKLML library it ships (libmklml_intel.so).
   That MKL picks its kernels by CPU vendor: on a non-Intel processor it takes a generic SSE path unless
   `MKL_DEBUG_CPU_TYPE=5` asks for the AVX2 kernels. With it, a 2048^3 fp32 matmul goes from ~38 to
   ~99 GFLOP/s on one thread. MKL reads the variable at its first call, so setting it after
   `import paddle` but before the first matmul is enough. We set it only on AMD processors: on Intel the
   same value would *disable* AVX-512.
2. Paddle's eager mode starts with one math thread (`paddle.base.core.set_num_threads` is never called
   unless OMP/MKL variables say otherwise), so it used one of the two cores: ~99 -> ~175 GFLOP/s with 2.
   PyTorch defaults to one thread per physical core. We set Paddle's count to the cores this process may
   run on, unless the user chose a count through `OMP_NUM_THREADS` or `configure_cpu(num_threads=...)`.
3. glibc's malloc serves blocks above its mmap threshold (at most 32 MB) with fresh `mmap` pages and returns
   them at `free`, and gives the top of its heap back to the system beyond a trim threshold; a ViT-S forward at
   512x512 allocates ~0.9 GB of such blocks (attention maps, MLP activations, logits), so every forward took
   ~225k page faults, each zero-filling a page before the kernel that asked for it could run: ~30% of the
   forward, in Paddle and in PyTorch alike. `configure_malloc()` keeps freed memory in the heap for reuse
   (`mallopt(M_MMAP_MAX, 0)`, and `M_TRIM_THRESHOLD` at its 2 GB maximum: with 1 GB, a batch of five windows,
   whose 786 MB of logits are freed along with their copy, still faulted for 1-2 s per batch). The cost: up to
   2 GB of freed memory stays with the process instead of going back to the system.

`import segmenter` calls `configure_malloc()` (also without Paddle) and `configure_cpu()` once; set
`SEGMENTER_CPU_TUNING=0` to leave the defaults.
The deployment predictor takes its own thread count (`segmenter.deploy.create_predictor`).
"""

import ctypes
import gc
import os
import sys
from typing import Dict, Optional, Tuple, Union

_STATE: Dict[str, Union[int, str, bool, None]] = {}
# `import paddle` writes OMP_NUM_THREADS=1 into os.environ when it is unset (paddle/base/__init__.py), so the
# user's own value is read once, here: segmenter/__init__.py imports this module before Paddle. If Paddle was
# imported first, its "1" cannot be told from the user's and is ignored (use configure_cpu(num_threads=1)).
_USER_OMP_NUM_THREADS = None if "paddle" in sys.modules else os.environ.get("OMP_NUM_THREADS")


CPUINFO = "/proc/cpuinfo"
# The CPU flags of bf16 arithmetic: AVX-512 BF16 (a dot product of bf16 pairs into fp32, Cooper Lake, Zen 4 and
# later) or AMX's bf16 tiles (Sapphire Rapids and later). oneDNN runs its bf16 kernels on them; elsewhere it emulates
# bf16 through fp32 (slower than fp32 itself) or has no bf16 kernel at all.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
PRECISIONS = ("fp32", "bf16")  # inference precisions; bf16 runs through oneDNN's predictor (engine/compiled.py)


def cpuinfo_field(name: str) -> str:
    """The first `name` line's value in /proc/cpuinfo (`vendor_id`, `model name`, `flags`), '' where absent."""
    try:
        with open(CPUINFO) as f:
            for line in f:
                if line.split(":", 1)[0].strip() == name:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_vendor() -> str:
    """The `vendor_id` of /proc/cpuinfo (`AuthenticAMD`, `GenuineIntel`), or '' where it can't be read."""
    return cpuinfo_field("vendor_id")


def bf16_flags() -> Tuple[str, ...]:
    """Which of BF16_FLAGS this CPU reports (empty where /proc/cpuinfo cannot be read: not Linux)."""
    flags = set(cpuinfo_field("flags").split())
    return tuple(f for f in BF16_FLAGS if f in flags)


def check_precision(precision: str, what: str = "precision") -> str:
    """`precision` if this machine runs inference at it, else a ValueError in one line naming `what` (the option or
    key the value came from) and what to use instead. fp16 has no CPU kernels in paddle; bf16 needs BF16_FLAGS."""
    if precision == "fp16":
        raise ValueError(
            f"{what} fp16: there is no fp16 inference on the CPU (paddle's fp16 kernels are CUDA-only); use bf16 on "
            f"a CPU with {' or '.join(BF16_FLAGS)}, or fp32."
        )
    if precision not in PRECISIONS:
        raise ValueError(f"{what} {precision!r} is not one of {', '.join(PRECISIONS)}.")
    if precision == "bf16" and not bf16_flags():
        cpu = cpuinfo_field("model name") or "this CPU"
        raise ValueError(
            f"{what} bf16 needs a CPU with bf16 arithmetic ({' or '.join(BF16_FLAGS)} in {CPUINFO}); {cpu} has "
            f"neither, and oneDNN would emulate bf16 slower than fp32: use fp32."
        )
    return precision


def available_cores() -> int:
    """Cores this process may run on (its affinity mask; cgroup quotas are not read)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """`OMP_NUM_THREADS` when the user set it (before importing Paddle), else the available cores split evenly
    between the processes `paddle.distributed.launch` started on this machine (`PADDLE_LOCAL_SIZE`), at least one
    each."""
    env = _USER_OMP_NUM_THREADS or ""
    if env.isdigit() and int(env) > 0:
        return int(env)
    local = os.environ.get("PADDLE_LOCAL_SIZE", "1")
    return max(1, available_cores() // (int(local) if local.isdigit() and int(local) > 0 else 1))


def configure_cpu(
    num_threads: Optional[int] = None, mkl_avx2_on_amd: bool = True
) -> Dict[str, Union[int, str, bool, None]]:
    """Set Paddle's CPU math threads and, on AMD, MKL's AVX2 code path; returns what was set.

    Args:
        num_threads (int, optional): Threads for Paddle's CPU kernels. Default: `default_threads()`.
        mkl_avx2_on_amd (bool, optional): On AMD processors set `MKL_DEBUG_CPU_TYPE=5` if the user did not
            set it. Has no effect once MKL ran its first kernel in this process. Default: True.
    """
    import paddle

    n = default_threads() if num_threads is None else int(num_threads)
    if n < 1:
        raise ValueError(f"configure_cpu: num_threads={num_threads} must be >= 1.")
    vendor = cpu_vendor()
    if mkl_avx2_on_amd and vendor == "AuthenticAMD":
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")
    paddle.base.core.set_num_threads(n)
    _STATE.update(num_threads=n, vendor=vendor, mkl_debug_cpu_type=os.environ.get("MKL_DEBUG_CPU_TYPE"))
    return dict(_STATE)


def cpu_settings() -> Dict[str, Union[int, str, bool, None]]:
    """What `configure_cpu` last set in this process (empty if it never ran)."""
    return dict(_STATE)


def _glibc() -> Optional[ctypes.CDLL]:
    """The C library on Linux, None elsewhere or where it cannot be loaded."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def resident_mb() -> float:
    """This process's current resident memory in MB (/proc/self/statm), 0 where it cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def available_mb() -> Optional[float]:
    """Memory this process could still take, in MB: /proc/meminfo's MemAvailable, lowered to the room left under a
    cgroup v2 limit (a container's) where there is one; None where neither can be read (not Linux)."""
    room = []
    try:
        with open("/proc/meminfo") as f:
            room += [int(line.split()[1]) / 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit.isdigit():
            with open("/sys/fs/cgroup/memory.current") as f:
                room.append((int(limit) - int(f.read().strip())) / 2**20)
    except (OSError, ValueError):
        pass
    return min(room) if room else None


class PeakRSS:
    """The most resident memory (MB) this process added while in `with PeakRSS() as p:`, sampled from
    /proc/self/statm every `period` seconds by a thread (and at both ends); `p.added_mb` after the block."""

    def __init__(self, period: float = 0.002):
        self.period, self.added_mb = period, 0.0

    def __enter__(self) -> "PeakRSS":
        import threading

        self.base = self.peak = resident_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(self.period):
            self.peak = max(self.peak, resident_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.added_mb = max(self.peak, resident_mb()) - self.base


def release_freed_memory(collect: bool = True) -> None:
    """Collect reference cycles, then give glibc's free heap pages back to the system: `configure_malloc` keeps up
    to 2 GB of them for reuse, which one-off work (a compile, a finished test) need not hold. The trim is a no-op
    off glibc. `collect=False` skips the collection (0.3-0.4 s with Paddle's objects loaded; the trim alone took
    50-160 ms of a demo server's 0.5 GB), for a caller whose freed memory holds no cycles."""
    if collect:
        gc.collect()
    libc = _glibc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def configure_malloc(trim_threshold: int = 2**31 - 1) -> bool:
    """Keep freed memory in the glibc heap instead of unmapping it; returns whether glibc accepted it.

    Framework-neutral (it tunes the C allocator both Paddle and PyTorch use on CPU); a no-op off glibc Linux
    or under another allocator (jemalloc, tcmalloc), where `mallopt` is absent or ignored.

    Args:
        trim_threshold (int, optional): Free bytes at the top of the heap before glibc gives them back (a C int,
            so at most 2**31 - 1). Default: 2**31 - 1.
    """
    libc = _glibc()
    if libc is None:
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    ok = bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, int(trim_threshold)))
    _STATE.update(malloc_keep_freed=ok)
    return ok


def tuning_enabled() -> bool:
    """False when the user set `SEGMENTER_CPU_TUNING=0`."""
    return os.environ.get("SEGMENTER_CPU_TUNING", "1") != "0"


def configure_at_import() -> None:
    """Called by `segmenter/__init__.py` once Paddle imported; honours `SEGMENTER_CPU_TUNING=0`."""
    if tuning_enabled():
        configure_cpu()
