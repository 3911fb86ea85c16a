"""Clean stops and one training per save_dir.

SIGINT / SIGTERM set a flag; the loop finishes the current iteration, writes a checkpoint and raises
`TrainingStopped`, which tools/train.py turns into a non-zero exit with the command that resumes.
The save_dir lock is an `flock` on save_dir/.train.lock: the kernel drops it when the process dies, so a
crashed or killed run never leaves it stuck (the stale file is locked again by the next run); the file keeps the
holder's pid for the message and is removed by a run that ends normally.
"""

import contextlib
import fcntl
import os
import signal
from typing import Iterator, Optional


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
