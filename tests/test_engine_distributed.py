"""Training across processes and machines under paddle.distributed.launch, and its faults: two launchers on
loopback (two nodes of one process each) train and evaluate to equal weights; a rank killed mid-run ends the whole
job with rank 0's log naming the last complete checkpoint, which a resume on another number of ranks continues;
an evaluation that loses a rank ends instead of hanging."""

import os
import re
import signal
import subprocess
import time

import numpy as np
import paddle
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


@pytest.mark.slow  # two launchers on loopback (~15-25 s)
def test_two_nodes_train_evaluate_and_end_with_equal_weights(tmp_path):
    cfg = write_tiny_config(tmp_path)
    outs = [str(tmp_path / f"node{n}") for n in range(2)]  # each machine has its own disk

    def args(n):
        return ["--config", cfg, "--iters", 3, "--save_dir", outs[n], "--save_interval", 3, "--log_iters", 1]

    job = Job(tmp_path, "train.py", lambda n: args(n) + ["--do_eval", "--save_all_ranks"])
    codes = job.wait()
    assert codes == [0, 0], f"launchers exited {codes}:\n{job.log_of(0)[-2000:]}\n{job.outputs[0][-1500:]}"
    found = {
        r: os.path.join(d, f"rank_{r}.pdparams")
        for d in outs
        for r in (0, 1)
        if os.path.isfile(f"{d}/rank_{r}.pdparams")
    }
    assert sorted(found) == [0, 1], f"rank weights written: {found}"
    w0, w1 = paddle.load(found[0]), paddle.load(found[1])
    diff = max(float(np.abs(w0[k].numpy() - w1[k].numpy()).max()) for k in w0)
    assert diff <= 1e-6, f"the two nodes' replicas differ after training: max|diff|={diff:.2e}"
    log0 = job.log_of(0)
    assert "[EVAL] iter 3 mIoU" in log0 and "3 iters of batch 4 x 2 ranks" in log0, log0[-2000:]


@pytest.mark.slow  # two launchers on loopback, a kill, and a resume in this process (~20-30 s)
def test_a_killed_rank_ends_the_job_and_a_resume_on_one_rank_continues(tmp_path, capsys):
    cfg = write_tiny_config(tmp_path)
    outs = [str(tmp_path / f"node{n}") for n in range(2)]
    job = Job(
        tmp_path,
        "train.py",
        lambda n: ["--config", cfg, "--iters", 5000, "--save_dir", outs[n], "--save_interval", 4, "--log_iters", 1],
    )
    try:
        end = time.time() + JOB_TIMEOUT_S
        while "[TRAIN] iter 9/" not in job.log_of(0):  # iter_4 and iter_8 are written by then
            assert time.time() < end and all(p.poll() is None for p in job.launchers), job.log_of(0)[-2000:]
            time.sleep(0.3)
        ranks = job.ranks()
        assert sorted(ranks) == [0, 1], f"launched ranks {ranks}"
        started = descendants([p.pid for p in job.launchers])  # ranks, rank 0's watcher
        os.kill(ranks[1], signal.SIGKILL)
        t0 = time.time()
        codes = job.wait()
    finally:
        job.stop()
    took = time.time() - t0
    assert all(c != 0 for c in codes), f"launchers exited {codes} after rank 1 was killed"
    lines = last_checkpoint_line(job)
    left = still_alive(started)
    assert not left, f"processes left running {took:.0f} s after the kill: {left}"
    assert len(lines) == 1, f"rank 0's log should name the last checkpoint once:\n{job.log_of(0)[-2500:]}"
    named = lines[0]
    save_dir = os.path.dirname(named)  # rank 0's node's
    saved = sorted(int(d[5:]) for d in os.listdir(save_dir) if re.fullmatch(r"iter_\d+", d))
    assert save_dir in outs and named == os.path.join(save_dir, f"iter_{saved[-1]}"), (
        f"rank 0 named {named}; the newest complete checkpoint is iter_{saved[-1]} of {saved} in {save_dir}"
    )
    capsys.readouterr()
    it = saved[-1]
    run_train(load_config(cfg, iters=it + 2), save_dir, save_interval=it + 2, resume_model=named)
    out = capsys.readouterr().out
    warn = "[RESUME] warning: ranks changed: 2 -> 1. batch_size 4 is per rank (as in PaddleSeg), so the global batch "
    assert warn + "changes from 8 to 4 images per iteration" in out, out[-2000:]
    assert os.path.isdir(os.path.join(save_dir, f"iter_{it + 2}")), os.listdir(save_dir)


def last_checkpoint_line(job, timeout: float = 15) -> list:
    """The checkpoints rank 0's log names in its last line (waiting for the watcher, which prints once the rank is
    gone)."""
    pattern = re.compile(r"^train: .*the last complete checkpoint is (\S+): continue with --resume_model \1$", re.M)
    deadline = time.time() + timeout
    while not pattern.search(job.log_of(0)) and time.time() < deadline:
        time.sleep(0.3)
    return pattern.findall(job.log_of(0))


@pytest.mark.slow  # a launched training of 2 processes whose second evaluation loses a rank (~15-25 s)
def test_an_evaluation_that_loses_a_rank_ends_the_job_instead_of_hanging(tmp_path):
    cfg = write_tiny_config(tmp_path)
    out = str(tmp_path / "out")
    args = ["--config", cfg, "--iters", 100, "--save_dir", out, "--save_interval", 2, "--log_iters", 1, "--do_eval"]
    job = Job(tmp_path, "train.py", lambda n: args + ["--opts", "val_dataset.num_samples=200"], nnodes=1, nproc=2)
    try:
        end = time.time() + JOB_TIMEOUT_S
        while "[evaluate] " not in job.log_of(0).partition("[EVAL] iter 2 ")[2]:  # 10% into the second evaluation
            assert time.time() < end and job.launchers[0].poll() is None, job.log_of(0)[-2000:]
            time.sleep(0.2)
        ranks = job.ranks()
        started = descendants([job.launchers[0].pid])
        os.kill(ranks[1], signal.SIGKILL)
        t0 = time.time()
        codes = job.wait(timeout=60)
    finally:
        job.stop()
    took = time.time() - t0
    named = last_checkpoint_line(job)
    left = still_alive(started)
    assert codes[0] != 0 and took < 30 and not left, (
        f"launcher exit {codes[0]} {took:.0f} s after the kill; left running: {left}"
    )
    assert named == [os.path.join(out, "iter_2")], f"rank 0 named {named}:\n{job.log_of(0)[-2500:]}"
