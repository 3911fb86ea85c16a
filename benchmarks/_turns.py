"""Contenders in their own processes, taking turns rep by rep: the harness of the fair comparisons (versus, upernet).

Two runtimes in one process distort each other (torch's spinning OpenMP threads slowed paddle's dygraph 1.6x at two
threads), and one thread each is not how anyone runs either. Here each contender is a worker process with every
core; the driver starts them one at a time (a build or a `torch.compile` never overlaps another's), then asks each
in turn for one timed rep, pausing `pause` seconds before every turn so the previous worker's OpenMP threads stop
spinning (Intel's runtime spins 200 ms by default, GNU's far less). A load that comes and goes on the machine
falls on every contender alike; ratios are taken between medians of the same rounds.

A contender is `module:function` and keyword arguments; the function builds it in the worker and returns `(run,
info)`: `run()` does one rep and returns what it computed (the first rep's output can be saved for a check), `info`
a dict the driver reports (what compiled, which kernel). This module is also the worker's entry point:

    python -m benchmarks._turns --worker benchmarks.versus:ours_default '{"size": 512}'
"""

import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from benchmarks import ROOT

TAG = "TURNS "  # prefix of the protocol's lines on a worker's stdout (libraries print there too)
PAUSE_S = 0.3
MIN_FREE_MB = 2048.0  # a worker starts only with this much memory available (the machine is shared)
# `import paddle` writes OMP_NUM_THREADS=1 into os.environ when it is unset; a worker started from a driver that had
# imported paddle would inherit it, and torch, numpy's OpenBLAS, onnxruntime and segmenter.runtime all read it: every
# contender on one thread. The user's own value is read here, before the driver imports paddle (or is unknown).
_USER_OMP = os.environ.get("OMP_NUM_THREADS") if "paddle" not in sys.modules else None


@dataclass
class Contender:
    """One row of a comparison: `name` shown in the table, `target` = 'module:function', `kwargs` its arguments."""

    name: str
    target: str
    kwargs: dict = field(default_factory=dict)
    env: Dict[str, str] = field(default_factory=dict)  # extra environment of its process
    root: str = ROOT  # the checkout whose `segmenter` it imports (the harness and topics are this one's): A/B


class Worker:
    """The driver's handle on one contender's process."""

    def __init__(self, c: Contender, log_dir: str):
        self.c = c
        self.log = os.path.join(log_dir, f"{len(os.listdir(log_dir))}.log")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
        env["SEGMENTER_CHECKOUT"] = os.path.abspath(c.root)
        env.pop("OMP_NUM_THREADS", None)  # every core, unless the user set it (see _USER_OMP)
        if _USER_OMP is not None:
            env["OMP_NUM_THREADS"] = _USER_OMP
        env.update(c.env)
        self.err = open(self.log, "w")
        self.p = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._turns", "--worker", c.target, json.dumps(c.kwargs)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.err,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.info: dict = {}
        self.failed: Optional[str] = None

    def read(self) -> dict:
        """The next protocol line; a worker that exited gives {'error': its last stderr line}."""
        for line in self.p.stdout:
            if line.startswith(TAG):
                return json.loads(line[len(TAG) :])
        self.p.wait()
        self.err.flush()
        with open(self.log) as f:
            tail = [s for s in f.read().strip().splitlines() if s.strip()][-1:]
        return {"error": f"exited rc={self.p.returncode}: {tail[0][:300] if tail else ''} (log {self.log})"}

    def ask(self, command: str) -> dict:
        if self.failed:
            return {"error": self.failed}
        try:
            self.p.stdin.write(command + "\n")
            self.p.stdin.flush()
        except BrokenPipeError:
            pass
        r = self.read()
        if "error" in r:
            self.failed = r["error"]
        return r

    def close(self) -> dict:
        """Ask the worker to quit; returns its last report (its peak RSS)."""
        r = self.ask("quit") if not self.failed else {}
        try:
            self.p.stdin.close()
        except OSError:
            pass
        self.p.wait(timeout=60)
        self.err.close()
        return r


def run_turns(
    contenders: List[Contender],
    repeats: int,
    pause: float = PAUSE_S,
    save_dir: Optional[str] = None,
    progress: Callable[[str], None] = print,
    min_free_mb: float = MIN_FREE_MB,
) -> Dict[str, dict]:
    """Start every contender (one at a time), then `repeats` rounds in which each runs one rep in turn (the order
    rotates by one each round). Returns name -> {'runs': [s, ...], 'median': s, 'cpu_runs': [CPU s, ...],
    'cpu_median': CPU s, 'info': {...}, 'peak_mb': MB} or {'error': why}. With `save_dir`, each worker saves its
    first rep's output there as <index>.npy ('output'). A contender is not started while less than `min_free_mb` is
    available (the others keep their memory until the end): its row says so."""
    log_dir = tempfile.mkdtemp(prefix="segmenter_turns_")
    workers: List[Worker] = []
    out: Dict[str, dict] = {}
    try:
        for i, c in enumerate(contenders):
            room = available_mb()
            if room is not None and room < min_free_mb:
                out[c.name] = {"error": f"not started: {room:.0f} MB available, under --min-free-mb {min_free_mb:.0f}"}
                progress(f"  {c.name}: {out[c.name]['error']}")
                continue
            t0 = time.perf_counter()
            w = Worker(c, log_dir)
            workers.append(w)
            save = os.path.join(save_dir, f"{i}.npy") if save_dir else ""
            r = w.read() if not w.failed else {"error": w.failed}
            if "error" not in r and save:
                r.update(w.ask(f"save {save}"))
            if "error" in r:
                w.failed = r["error"]
                progress(f"  {c.name}: failed to start: {r['error']}")
                continue
            w.info = r
            if save:
                w.info["output"] = save
            progress(f"  {c.name}: ready in {time.perf_counter() - t0:.0f} s {json.dumps(r.get('info', {}))}")
        times: Dict[str, List[float]] = {w.c.name: [] for w in workers}
        cpu: Dict[str, List[float]] = {w.c.name: [] for w in workers}
        live = [w for w in workers if not w.failed]
        for r in range(repeats):
            for w in live[r % len(live) :] + live[: r % len(live)] if live else []:
                if w.failed:
                    continue
                time.sleep(pause)
                got = w.ask("run")
                if "seconds" in got:
                    times[w.c.name].append(got["seconds"])
                    cpu[w.c.name].append(got["cpu"])
            progress(f"  round {r + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in times.items() if v))
        for w in workers:
            last = w.close()
            if w.failed:
                out[w.c.name] = {"error": w.failed}
                continue
            ts = times[w.c.name]
            out[w.c.name] = {
                "runs": ts,
                "median": statistics.median(ts) if ts else None,
                "cpu_runs": cpu[w.c.name],  # CPU seconds of the process (all its threads) in each rep
                "cpu_median": statistics.median(cpu[w.c.name]) if ts else None,
                "info": w.info.get("info", {}),
                "output": w.info.get("output"),
                "peak_mb": last.get("peak_mb"),
                "built_mb": w.info.get("built_mb"),
                "pid": w.info.get("pid"),
            }
    finally:
        for w in workers:
            if w.p.poll() is None:
                w.p.kill()
    return {c.name: out[c.name] for c in contenders if c.name in out}  # in the contenders' order


def threads() -> Dict[str, int]:
    """The math threads of the runtimes this worker loaded (what its contender runs on)."""
    out = {}
    if "torch" in sys.modules:
        out["torch"] = sys.modules["torch"].get_num_threads()
    if "segmenter.runtime" in sys.modules:
        n = sys.modules["segmenter.runtime"].cpu_settings().get("num_threads")
        if n:
            out["paddle"] = n
    try:
        from threadpoolctl import threadpool_info

        for p in threadpool_info():
            if p["internal_api"] in ("openblas", "mkl", "blis"):
                out[p["internal_api"]] = max(out.get(p["internal_api"], 0), p["num_threads"])
    except ImportError:
        pass
    return out


def available_mb() -> Optional[float]:
    """MemAvailable of /proc/meminfo in MB (None where it cannot be read). The driver imports no framework, so not
    segmenter.runtime's (which would load paddle)."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def torch_only() -> None:
    """Keep paddle out of a PyTorch contender's process (our twin's `import segmenter` would load it, and with it a
    second OpenMP runtime): `import paddle` then fails, which segmenter tolerates (a PyTorch-only install)."""
    if "paddle" not in sys.modules:
        sys.modules["paddle"] = None
        sys.modules["paddleseg"] = None


def peak_mb() -> float:
    """This process's peak resident memory so far in MB: /proc/self/status's VmHWM, which belongs to this program's own
    address space. `getrusage(RUSAGE_SELF).ru_maxrss` is not that: Linux carries the parent's high-water mark into a
    child across vfork+exec (Python's subprocess), so a child of a 3 GB pytest worker read 3 GB before it started.
    ru_maxrss only where /proc cannot be read (not Linux). No `segmenter` import: a contender's worker may run an
    older checkout (`--baseline-root`)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)


def serve(target: str, kwargs: dict) -> None:
    """The worker: build the contender, warm it up, then answer 'run', 'save PATH' and 'quit' on stdin. `segmenter`
    comes from the checkout the driver named (SEGMENTER_CHECKOUT), the topics from this one (already imported)."""
    sys.path.insert(0, os.environ.get("SEGMENTER_CHECKOUT", ROOT))
    module, _, name = target.partition(":")
    try:
        run, info = getattr(importlib.import_module(module), name)(**kwargs)
        first = run()  # the warm-up rep
    except BaseException as e:  # noqa: BLE001 (reported to the driver as one line)
        msg = str(e).strip().splitlines()
        print(TAG + json.dumps({"error": f"{type(e).__name__}: {msg[-1][:300] if msg else ''}"}), flush=True)
        raise
    info = dict(info, threads=threads())
    print(TAG + json.dumps({"info": info, "pid": os.getpid(), "built_mb": round(peak_mb(), 1)}), flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "run":
            c, t = time.process_time(), time.perf_counter()
            run()
            print(TAG + json.dumps({"seconds": time.perf_counter() - t, "cpu": time.process_time() - c}), flush=True)
        elif cmd == "save":
            if first is not None:
                np.save(arg, as_numpy(first))
            first = None
            print(TAG + json.dumps({"saved": arg}), flush=True)
        elif cmd == "quit":
            print(TAG + json.dumps({"peak_mb": round(peak_mb(), 1)}), flush=True)
            return


def as_numpy(out) -> np.ndarray:
    """A run's output (numpy, paddle or torch tensor, or a list whose first item is one) as a numpy array."""
    if isinstance(out, (list, tuple)):
        out = out[0]
    if hasattr(out, "detach"):  # torch
        out = out.detach().float().cpu().numpy()
    elif hasattr(out, "numpy"):  # paddle
        out = out.astype("float32").numpy() if str(out.dtype) != "paddle.float32" else out.numpy()
    return np.asarray(out, dtype=np.float32)


def compare(a_path: str, b_path: str) -> Tuple[float, float, float]:
    """(max|a - b|, max|b|, share of pixels whose arg-max over axis 1 agrees) of two saved logits [B, C, H, W]."""
    a, b = np.load(a_path, mmap_mode="r"), np.load(b_path, mmap_mode="r")
    if a.shape != b.shape:
        return float("nan"), float("nan"), float("nan")
    diff = max(float(np.abs(a[i] - b[i]).max()) for i in range(a.shape[0]))
    scale = max(float(np.abs(b[i]).max()) for i in range(b.shape[0]))
    agree = float(np.mean([np.mean(a[i].argmax(0) == b[i].argmax(0)) for i in range(a.shape[0])]))
    return diff, scale, agree


def main(argv: Optional[List[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 3 and argv[0] == "--worker":
        serve(argv[1], json.loads(argv[2]))
        return
    raise SystemExit("benchmarks.turns is the worker of versus and upernet: python -m benchmarks._turns --worker ...")


if __name__ == "__main__":
    main()
