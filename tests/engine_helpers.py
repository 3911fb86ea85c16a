"""A tiny quickstart config for engine tests (embed 32, depth 2, 32 px)."""

import os

TINY_YAML = """
batch_size: 4
iters: 6
train_dataset: {type: SegmenterShapes, num_samples: 16, img_size: 32, max_shapes: 2, seed: 0, mode: train}
val_dataset: {type: SegmenterShapes, num_samples: 4, img_size: 48, max_shapes: 2, seed: 1, mode: val}
model:
  type: Segmenter
  num_classes: 4
  backbone: {type: SegmenterViT, img_size: 32, patch_size: 8, in_channels: 3, embed_dim: 32, depth: 2,
             num_heads: 2, mlp_ratio: 2, qkv_bias: True, distilled: False, norm_eps: 1.0e-06,
             pos_embed_interp: bilinear, drop_rate: 0.1, attn_drop_rate: 0.0, drop_path_rate: 0.1,
             pretrained: null}
  decoder: {name: linear}
optimizer: {type: AdamW, weight_decay: 0.01}
lr_scheduler: {type: PolynomialDecay, learning_rate: 0.001, end_lr: 1.0e-05, power: 0.9}
loss: {types: [{type: SegmenterCrossEntropyLoss}], coef: [1]}
test_config: {is_slide: True, crop_size: [32, 32], stride: [16, 16]}
"""


def write_tiny_config(tmp_path) -> str:
    """Write the tiny YAML under tmp_path and return its path."""
    path = os.path.join(str(tmp_path), "tiny.yml")
    with open(path, "w") as f:
        f.write(TINY_YAML)
    return path


def weights(save_dir: str, name: str) -> dict:
    """A checkpoint folder's model weights as numpy arrays."""
    import paddle

    return {k: v.numpy() for k, v in paddle.load(os.path.join(save_dir, name, "model.pdparams")).items()}


def assert_resume_equals_uninterrupted(make_config, tmp_path, what: str = "") -> None:
    """Six iterations straight against three, an interruption (iter_6 removed), and a resume from iter_3 in a fresh
    model: the two iter_6 weights must agree within 1e-6, and iterations 4-6 must have moved them (else the
    comparison would be vacuous). `make_config()` returns a fresh 6-iteration Config each call."""
    import shutil

    import numpy as np

    from segmenter.engine.run import run_train

    full, half = str(tmp_path / "full"), str(tmp_path / "half")
    run_train(make_config(), full, seed=5, save_interval=6, log_iters=100)
    run_train(make_config(), half, seed=5, save_interval=3, log_iters=100, keep_k=5)
    shutil.rmtree(os.path.join(half, "iter_6"))
    run_train(make_config(), half, seed=5, save_interval=6, log_iters=100, resume_model=os.path.join(half, "iter_3"))
    a, b = weights(full, "iter_6"), weights(half, "iter_6")
    diff = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    assert diff <= 1e-6, f"resumed vs uninterrupted weights{what}: max|diff|={diff:.2e}"
    first = weights(half, "iter_3")
    moved = max(float(np.abs(a[k] - first[k]).max()) for k in a)
    assert moved > 1e-4, f"iters 4-6 did not change the weights (max|diff|={moved:.2e}); the test would be vacuous"


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch_command(script: str, args: list, log_dir: str, nproc: int = 1, nnodes: int = 1, master: str = None) -> list:
    """`python -m paddle.distributed.launch` running tools/<script> (or a path) on nproc CPU processes of this node;
    with nnodes > 1 this is one node of the job (each node runs the same command, with the same master)."""
    import sys

    path = script if os.path.isabs(script) else os.path.join(ROOT, "tools", script)
    nodes = ["--nnodes", str(nnodes), "--master", master] if nnodes > 1 else []
    return [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc), *nodes] + [
        "--log_dir",
        log_dir,
        path,
        *map(str, args),
    ]


def launch_env() -> dict:
    """The environment of a launched test job: this checkout first, one math thread per process."""
    return dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")


def worker_log(log_dir: str, local_rank: int = 0) -> str:
    """What the launcher captured of one process: log_dir/workerlog.<local rank>."""
    path = os.path.join(log_dir, f"workerlog.{local_rank}")
    return open(path, errors="replace").read() if os.path.isfile(path) else f"({path} was not written)"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now (for a launcher's --master)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_children() -> dict:
    """{pid: [child pids]} of every live process (read from /proc)."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":  # a zombie has ended; only its parent's wait is missing
                out.setdefault(int(fields[1]), []).append(int(d))
    return out


def descendants(pids) -> set:
    """Every live process below pids (children, grandchildren...)."""
    children, found, todo = proc_children(), set(), list(pids)
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def still_alive(pids) -> list:
    """The pids that are still running (not gone, not zombies)."""
    live = {c for cs in proc_children().values() for c in cs}
    return sorted(p for p in pids if p in live)


def trainer_rank(pid: int):
    """The PADDLE_TRAINER_ID of a launched process, or None."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
    except OSError:
        return None
    rank = env.get(b"PADDLE_TRAINER_ID")
    return int(rank) if rank is not None else None
