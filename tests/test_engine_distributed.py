"""Faults of training across processes and machines under paddle.distributed.launch: a rank killed mid-run (in an
evaluation, which must not hang either) ends the whole job of two launchers on loopback, with rank 0's log naming
the last complete checkpoint, which a resume on another number of ranks continues; a trainer that dies without
running Python (SIGKILL, SIGABRT) still gets that line. Two nodes training to equal weights, val.py on two ranks
and the same fault are rehearsed in docs/multi_gpu.md (tests/test_docs.py runs it)."""

import os
import re
import signal
import subprocess
import time

import pytest

from segmenter.engine.run import load_config, run_train
from tests.engine_helpers import (
    ROOT,
    descendants,
    free_port,
    launch_command,
    launch_env,
    still_alive,
    trainer_rank,
    worker_log,
    write_tiny_config,
)

JOB_TIMEOUT_S = 150  # a launch of the tiny config takes 10-25 s on 2 loaded cores


class Job:
    """A launched job of `nnodes` launchers on this machine (one process each, or nproc on one node), each in its own
    session so that a failed test can stop everything it started."""

    def __init__(self, tmp_path, script: str, args_of_node, nnodes: int = 2, nproc: int = 1):
        master = f"127.0.0.1:{free_port()}"
        self.logs = [str(tmp_path / f"log{n}") for n in range(nnodes)]
        self.launchers = [
            subprocess.Popen(
                launch_command(script, args_of_node(n), self.logs[n], nproc, nnodes, master),
                cwd=ROOT,
                env=launch_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            for n in range(nnodes)
        ]
        self.outputs = []

    def wait(self, timeout: float = JOB_TIMEOUT_S) -> list:
        """Each launcher's exit status (its output kept in self.outputs)."""
        end = time.time() + timeout
        try:
            self.outputs = [p.communicate(timeout=max(1.0, end - time.time()))[0] for p in self.launchers]
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"the job did not end within {timeout:.0f} s:\n{self.log_of(0)[-2000:]}")
        return [p.returncode for p in self.launchers]

    def ranks(self) -> dict:
        """{global rank: pid} of the launched processes."""
        out = {}
        for launcher in self.launchers:
            for pid in descendants([launcher.pid]):
                rank = trainer_rank(pid)
                if rank is not None and rank not in out:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if b"stops.py" not in f.read():  # rank 0's watcher carries rank 0's environment
                            out[rank] = pid
        return out

    def log_of(self, rank: int) -> str:
        """The workerlog of a global rank (one process per node: node n's workerlog.0, found by its content)."""
        for log in self.logs:
            env = os.path.join(log, "backup_env.%d.json" % rank)
            if os.path.isfile(env):
                return worker_log(log, 0 if len(self.logs) > 1 else rank)
        return worker_log(self.logs[0], rank)

    def stop(self) -> None:
        for p in self.launchers:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def last_checkpoint_line(job, timeout: float = 15) -> list:
    """The checkpoints rank 0's log names in its last line (waiting for the watcher, which prints once the rank is
    gone)."""
    pattern = re.compile(r"^train: .*the last complete checkpoint is (\S+): continue with --resume_model \1$", re.M)
    deadline = time.time() + timeout
    while not pattern.search(job.log_of(0)) and time.time() < deadline:
        time.sleep(0.3)
    return pattern.findall(job.log_of(0))


@pytest.mark.slow  # two launchers on loopback, a kill, and a resume in this process (~15-30 s)
def test_a_rank_killed_in_an_evaluation_ends_the_job_and_a_resume_on_one_rank_continues(tmp_path, capsys):
    """Rank 1 is SIGKILLed 10% into the second evaluation: both launchers end non-zero without waiting on the dead
    rank, nothing is left running, rank 0's log names the last complete checkpoint in one line, and that
    checkpoint resumes here on one process, warning that the global batch changed."""
    cfg = write_tiny_config(tmp_path)
    outs = [str(tmp_path / f"node{n}") for n in range(2)]  # each machine has its own disk

    def args(n):
        return ["--config", cfg, "--iters", 100, "--save_dir", outs[n], "--save_interval", 2, "--log_iters", 1]

    job = Job(tmp_path, "train.py", lambda n: args(n) + ["--do_eval", "--opts", "val_dataset.num_samples=100"])
    try:
        end = time.time() + JOB_TIMEOUT_S
        while "[evaluate] " not in job.log_of(0).partition("[EVAL] iter 2 ")[2]:  # iter_2 is written by then
            assert time.time() < end and all(p.poll() is None for p in job.launchers), job.log_of(0)[-2000:]
            time.sleep(0.2)
        ranks = job.ranks()
        assert sorted(ranks) == [0, 1], f"launched ranks {ranks}"
        started = descendants([p.pid for p in job.launchers])  # the ranks and rank 0's watcher
        os.kill(ranks[1], signal.SIGKILL)
        t0 = time.time()
        codes = job.wait(timeout=60)
    finally:
        job.stop()
    took = time.time() - t0
    named = last_checkpoint_line(job)
    left = still_alive(started)
    assert all(c != 0 for c in codes) and took < 30 and not left, (
        f"launchers exited {codes} {took:.0f} s after rank 1 was killed; left running: {left}"
    )
    save_dir = next((d for d in outs if named and named[0] == os.path.join(d, "iter_2")), None)
    assert len(named) == 1 and save_dir, f"rank 0 named {named}, not iter_2 of {outs}:\n{job.log_of(0)[-2500:]}"
    capsys.readouterr()
    run_train(load_config(cfg, iters=3), save_dir, save_interval=3, resume_model=named[0])
    out = capsys.readouterr().out
    warn = "[RESUME] warning: ranks changed: 2 -> 1. batch_size 4 is per rank (as in PaddleSeg), so the global batch "
    assert warn + "changes from 8 to 4 images per iteration" in out, out[-2000:]
    assert os.path.isdir(os.path.join(save_dir, "iter_3")), os.listdir(save_dir)


WATCHED = """
import importlib.util, os, signal, sys
spec = importlib.util.spec_from_file_location("stops", sys.argv[1])  # standard library only, as the watcher
stops = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stops)
with stops.end_notice(sys.argv[2] or None) as saved:
    saved(sys.argv[3])
    os.kill(os.getpid(), getattr(signal, sys.argv[4]))
"""


@pytest.mark.parametrize("death", ["SIGKILL", "SIGABRT"])
def test_a_trainer_that_dies_in_silence_gets_its_last_line_from_the_watcher(tmp_path, death):
    """What a launched rank does when gloo loses a peer (SIGABRT from C++) or the OOM killer takes it (SIGKILL):
    no Python runs, and the watcher names the last checkpoint the trainer reported, then exits."""
    import sys

    stops = os.path.join(ROOT, "segmenter", "engine", "stops.py")
    last = str(tmp_path / "out" / "iter_8")
    r = subprocess.run(  # returns once every holder of the stdout pipe has exited, the watcher too
        [sys.executable, "-c", WATCHED, stops, str(tmp_path / "out" / "iter_4"), last, death],
        capture_output=True,
        text=True,
        timeout=30,
    )
    lines = r.stdout.strip().splitlines()
    assert r.returncode == -getattr(signal, death) and lines, f"exit {r.returncode}, stdout {r.stdout!r}"
    want = f"the last complete checkpoint is {last}: continue with --resume_model {last}"
    assert lines[-1].startswith("train: this process ended without finishing") and lines[-1].endswith(want), lines
