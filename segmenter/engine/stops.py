"""Clean stops, one training per save_dir, and a last word from a training that dies.

SIGINT / SIGTERM set a flag; the loop finishes the current iteration, writes a checkpoint and raises
`TrainingStopped`, which tools/train.py turns into a non-zero exit with the command that resumes.
The save_dir lock is an `flock` on save_dir/.train.lock: the kernel drops it when the process dies, so a
crashed or killed run never leaves it stuck (the stale file is locked again by the next run); the file keeps the
holder's pid for the message and is removed by a run that ends normally.

A process that is killed (SIGKILL, the out-of-memory killer) or aborts in C++ says nothing. Under
paddle.distributed.launch that is how a rank ends when another rank dies: gloo's collective raises
`gloo::IoException` from the backward pass or an all_reduce, and paddle's handler aborts the process (SIGABRT).
`end_notice` starts a small watcher process (this file run as a script: standard library only) that the trainer
tells each checkpoint it completes; when the trainer's end of the pipe closes without a word that it finished,
the watcher prints one line naming the last complete checkpoint to the trainer's stdout (under the launcher,
the rank's workerlog), and exits.
"""

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
from typing import Callable, Iterator, Optional


class TrainingStopped(RuntimeError):
    """Training stopped on a signal after writing `checkpoint`."""

    def __init__(self, signum: int, it: int, checkpoint: str):
        self.signum, self.it, self.checkpoint = signum, it, checkpoint
        super().__init__(
            f"train: stopped by {signal.Signals(signum).name} after iter {it}; checkpoint "
            f"{checkpoint} written. Continue with --resume_model {checkpoint}"
        )


class SaveDirBusy(RuntimeError):
    """Another training holds the save_dir lock."""


class RankLost(ConnectionError):
    """A collective (all_reduce, all_gather, barrier) failed: another rank of the launched job died or stopped
    answering. A ConnectionError, so the tools print it as one `error:` line."""


@contextlib.contextmanager
def collective(what: str) -> Iterator[None]:
    """Run a collective; its failure (paddle raises gloo's error as a RuntimeError) becomes RankLost naming what
    this rank was doing, instead of a traceback."""
    try:
        yield
    except RuntimeError as e:
        rank = os.environ.get("PADDLE_TRAINER_ID", "0")
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RankLost(
            f"{what} failed on rank {rank}: another rank of the job died or stopped answering (its workerlog in "
            f"the launcher's --log_dir says why; gloo says: {first[:200]})"
        ) from e


class StopFlag:
    """Records the first SIGINT / SIGTERM instead of dying mid-iteration."""

    def __init__(self):
        self.signum: Optional[int] = None

    def __call__(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:  # a second Ctrl-C: the user means it
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"[TRAIN] {signal.Signals(signum).name} received: finishing this iteration, then saving a checkpoint",
            flush=True,
        )

    @property
    def requested(self) -> bool:
        return self.signum is not None


@contextlib.contextmanager
def stop_signals() -> Iterator[StopFlag]:
    """Install the SIGINT / SIGTERM flag for the duration (main thread only; elsewhere signals stay as they are)."""
    flag = StopFlag()
    try:
        previous = {s: signal.signal(s, flag) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        previous = {}
    try:
        yield flag
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def save_dir_lock(save_dir: str, enabled: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on save_dir; a second training on it is refused naming the holder's pid."""
    if not enabled:
        yield
        return
    os.makedirs(save_dir, exist_ok=True)
    path = os.path.join(save_dir, ".train.lock")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise SaveDirBusy(
                f"train: save_dir {save_dir} is in use by another training (pid {holder}); wait for "
                "it to finish or pass another --save_dir."
            ) from None
        if os.path.exists(path) and os.path.samestat(os.fstat(fd), os.stat(path)):
            break
        os.close(fd)  # the holder we waited on removed the file: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.unlink(path)  # while still locked, so nobody locks the old inode after us
        os.close(fd)  # closing drops the flock


def dead_line(last: Optional[str]) -> str:
    """What the watcher prints when the trainer ended without finishing."""
    what = (
        "train: this process ended without finishing (killed, or aborted: under paddle.distributed.launch a rank "
        "aborts when another rank dies)"
    )
    if last is None:
        return f"{what}; no checkpoint was written: start the run again."
    return f"{what}; the last complete checkpoint is {last}: continue with --resume_model {last}"


def watch(stream, out, last: Optional[str]) -> None:
    """The watcher's loop: read `saved PATH` and `done` lines until the pipe closes; print dead_line if no `done`."""
    for line in stream:
        word, _, arg = line.rstrip("\n").partition(" ")
        if word == "done":
            return
        if word == "saved":
            last = arg
    print(dead_line(last), file=out, flush=True)


def error_line(last: Optional[str]) -> str:
    """What a launched rank prints when an error stops it (a collective's error when another rank died)."""
    if last is None:
        return "train: stopped by the error below; no checkpoint was written: start the run again once it is fixed."
    return (
        f"train: stopped by the error below; the last complete checkpoint is {last}: continue with --resume_model "
        f"{last}"
    )


@contextlib.contextmanager
def end_notice(
    checkpoint: Optional[str] = None, enabled: bool = True, on_error: bool = False
) -> Iterator[Callable[[str], None]]:
    """Watch this process for an end no Python code sees (see the module's doc); yields saved(path), to call after
    each complete checkpoint. checkpoint: the one a resume started from (complete already). on_error (a launched
    job, whose error is often another rank's death): an exception other than a clean stop also prints the last
    complete checkpoint, here, before the error."""
    if not enabled:
        yield lambda path: None
        return
    args = [sys.executable, "-I", os.path.abspath(__file__)] + ([checkpoint] if checkpoint else [])
    # -I: standard library only (not the engine's folder first on sys.path); stdout and stderr are the trainer's
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, text=True, bufsize=1)
    last = [checkpoint]

    def saved(path: str) -> None:
        last[0] = path
        try:
            proc.stdin.write(f"saved {path}\n")
        except (BrokenPipeError, ValueError):  # the watcher is gone: nothing to tell
            pass

    try:
        yield saved
    except Exception as e:
        if on_error and not isinstance(e, TrainingStopped):
            print(error_line(last[0]), flush=True)
        raise
    finally:  # any end Python sees (success, an error, a clean stop) prints its own last words
        try:
            proc.stdin.write("done\n")
            proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass
        try:
            proc.wait(timeout=10)  # it exits on reading "done"; never let it hold the trainer's exit
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":  # the watcher: python -I stops.py [CHECKPOINT]
    for s in (signal.SIGINT, signal.SIGTERM):  # a Ctrl-C or the launcher's SIGTERM to the group: outlive the trainer
        signal.signal(s, signal.SIG_IGN)
    watch(sys.stdin, sys.stdout, sys.argv[1] if len(sys.argv) > 1 else None)
