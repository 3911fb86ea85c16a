"""Train loop: seeded data order, poly LR, atomic checkpoints + exact resume, NaN stop, VisualDL, data parallel."""

import itertools
import multiprocessing
import os
import shutil
import signal
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import paddle
import paddle.distributed as dist

from segmenter.datasets.checked import CheckedDataset
from segmenter.engine.checkpoint import Resumed, copy_checkpoint, load_checkpoint, restore_best_model, save_checkpoint
from segmenter.engine.evaluate import evaluate
from segmenter.engine.stops import TrainingStopped, end_notice, save_dir_lock, stop_signals
from segmenter.engine.val_panels import log_panels, names_of
from segmenter.engine.vdl import open_writer
from segmenter.visualize.curves import plot_curves

# paddle.seed(seed * SEED_STRIDE + iter) before each step: a prime above any iteration count, so distinct
# (seed, iter) pairs give distinct paddle seeds and the masks of an iteration never depend on the iterations before
SEED_STRIDE = 100003
# fp16 loss scaling starts at paddle's own default (2**15): large enough that small fp16 gradients do not
# underflow; the scaler halves it on every overflowing step, so a too-large start only costs a few skipped steps
INIT_LOSS_SCALING = 2.0**15


def batches(n: int, batch_size: int, seed: int, epoch: int, rank: int, world: int) -> list[list[int]]:
    """Index batches of one epoch: a seeded permutation, each rank taking every world-th sample."""
    order = np.random.default_rng([seed, epoch]).permutation(n)[rank::world]
    return [order[i : i + batch_size].tolist() for i in range(0, len(order) - batch_size + 1, batch_size)]


def stack(items: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Stack samples into img [B, 3, H, W] float32 and label [B, H, W] int64."""
    return np.stack([s["img"] for s in items]), np.stack([s["label"] for s in items]).astype(np.int64)


def batch_stream(
    dataset: CheckedDataset,
    batch_size: int,
    seed: int,
    start: int,
    stop: int,
    rank: int,
    world: int,
    num_workers: int = 0,
):
    """Yield (iter, epoch, img, label) for iters start + 1 .. stop. The batch of an iteration depends only on
    (seed, iter): the sample order is seeded by (seed, epoch) and each sample's random transforms by (seed, epoch,
    index) (dataset reads key epoch * n + index), so num_workers (worker processes, one pool for the whole run)
    and the resume point never change what is trained on."""
    n = len(dataset)
    nb = len(batches(n, batch_size, seed, 0, rank, world))
    it = start
    with worker_pool(dataset, num_workers) as pool:
        while it < stop:
            epoch, step = divmod(it, nb)
            todo = batches(n, batch_size, seed, epoch, rank, world)[step : step + stop - it]
            todo = [[epoch * n + i for i in b] for b in todo]  # keys telling CheckedDataset the epoch
            source = worker_batches(pool, todo, 2 * num_workers) if pool else (read_batch(idx, dataset) for idx in todo)
            for img, label in source:
                it += 1
                yield it, epoch, paddle.to_tensor(img), paddle.to_tensor(label)


@contextmanager
def worker_pool(dataset: CheckedDataset, num_workers: int):
    """num_workers data-loading processes holding dataset, or None for 0. They are started by a fork server (a
    fresh process that imported this module and nothing else), never forked from the training process: a fork
    taken while its math-library or data threads hold a lock leaves the child waiting on that lock forever."""
    if num_workers <= 0:
        yield None
        return
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])  # import once in the server, not in every worker (no effect if running)
    pool = ProcessPoolExecutor(num_workers, mp_context=ctx, initializer=_init_worker, initargs=(dataset,))
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_worker_dataset = None  # the dataset of a data-loading worker process


def _init_worker(dataset: CheckedDataset):
    global _worker_dataset
    _worker_dataset = dataset
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the trainer, which then shuts the workers down


def read_batch(idx: list[int], dataset: CheckedDataset = None) -> tuple[np.ndarray, np.ndarray]:
    """The samples idx stacked (img [B, 3, H, W] float32, label [B, H, W] int64); a worker reads its own copy."""
    dataset = dataset if dataset is not None else _worker_dataset
    return stack([dataset[i] for i in idx])


def worker_batches(pool: ProcessPoolExecutor, todo: list[list[int]], ahead: int):
    """The batches todo, read in order by the pool with at most `ahead` batches in flight. A worker's error (a
    DataError naming the file) is raised here as it was raised there."""
    pending, rest = deque(), iter(todo)
    for idx in itertools.islice(rest, ahead):
        pending.append(pool.submit(read_batch, idx))
    while pending:
        try:
            batch = pending.popleft().result()
        except BrokenProcessPool:
            raise RuntimeError(
                "a data-loading worker died (killed, or out of memory?); train with fewer "
                "--num_workers or with --num_workers 0."
            ) from None
        for idx in itertools.islice(rest, 1):
            pending.append(pool.submit(read_batch, idx))
        yield batch


@dataclass
class TrainState:
    """What the loop carries from one iteration to the next (rank 0 alone uses best and saved)."""

    best: float = -1.0  # best mIoU so far; best_model is written only when it improves
    best_iter: int = None  # the iteration that reached it
    saved: list = field(default_factory=list)  # iter_N folders kept, oldest first
    last_metrics: dict = field(default_factory=dict)
    # (iter, value) from the run's first iteration on: a checkpoint records it, a resume continues it
    history: dict = field(default_factory=lambda: {"loss": [], "lr": [], "mIoU": []})
    notice: Callable[[str], None] = lambda path: None  # told each complete checkpoint (stops.end_notice)


def train(
    model,
    train_dataset,
    optimizer,
    scheduler,
    loss_fn,
    iters: int,
    batch_size: int,
    save_dir: str,
    val_dataset=None,
    num_classes: int = None,
    seed: int = 0,
    save_interval: int = 1000,
    keep_k: int = 2,
    log_iters: int = 10,
    do_eval: bool = False,
    use_vdl: bool = False,
    resume_model: str = None,
    eval_kwargs: dict = None,
    save_all_ranks: bool = False,
    num_workers: int = 0,
    precision: str = "fp32",
    run: dict = None,
    class_names: list = None,
    config_text: str = None,
    to_static: bool = False,
) -> dict:
    """Train model for iters steps; returns the last evaluation metrics (or {}).

    `run` (checkpoint.run_sections of the config) is recorded in every checkpoint; a resume refuses a
    checkpoint whose model, dataset or batch size differ from it. SIGINT/SIGTERM stop after the current
    iteration with a checkpoint (TrainingStopped); a second training on save_dir is refused (SaveDirBusy).
    config_text (the resolved config) is written to save_dir/config.yml.
    to_static (the config's `to_static_training: True`, as in PaddleSeg): the model's forward and backward run as
    a static graph (paddle.jit.to_static converts the model in place, for this process); the loss stays dygraph.
    """
    if iters < 1:  # the config's (--iters takes 1 and up); before any checkpoint is read
        raise ValueError(f"train: iters is {iters}; set iters: N (N >= 1) in the config or pass --iters N.")
    rank, world = dist.get_rank(), dist.get_world_size()
    if to_static:
        # Dropout and drop path draw from one generator; paddle's multi-threaded executor runs them in a varying
        # order, so two identical runs (or a resumed one) drew other masks (weights 1e-3 apart after 3 iterations).
        # Run the graph's ops in program order: deterministic masks, exact resume (tests/test_static_training.py).
        paddle.set_flags({"FLAGS_new_executor_sequential_run": True})
        model = paddle.jit.to_static(model, full_graph=True)
    net = paddle.DataParallel(model) if world > 1 else model
    scaler = amp_scaler(precision)
    run = {**run, "ranks": world} if run is not None else None  # a resume on other ranks warns (check_run)
    resumed = load_checkpoint(resume_model, model, optimizer, scheduler, scaler, run) if resume_model else None
    start = resumed.iter if resumed else 0
    if start > iters:  # (at start == iters a resume only finishes what a crash left: best_model)
        raise ValueError(
            f"train: {resume_model} is at iteration {start}, past --iters {iters}; "
            f"pass --iters above {start} to continue it."
        )
    if not batches(len(train_dataset), batch_size, seed, 0, rank, world):
        n, fit = len(train_dataset), len(train_dataset) // world  # fit: the smallest rank's share
        head = f"train: the training set has {n} samples"
        if not fit:
            raise ValueError(f"{head}, fewer than the {world} ranks: add samples or use fewer ranks.")
        on, per = (f" on each of {world} ranks", " (per rank)") if world > 1 else ("", "")
        raise ValueError(
            f"{head}, too few for a batch of {batch_size}{on}: pass --batch_size {fit} or less{per}, or add samples."
        )
    state = resumed_state(resumed, resume_model, save_dir)
    data = CheckedDataset(train_dataset, num_classes if num_classes is not None else model.num_classes, seed)
    model.train()
    t0 = tr = time.time()
    stream = closing(batch_stream(data, batch_size, seed, start, iters, rank, world, num_workers))  # shuts workers
    notice = end_notice(resume_model if resumed else None, rank == 0, world > 1)  # rank 0's last line if it dies
    with save_dir_lock(save_dir, rank == 0), notice as state.notice, stop_signals() as stop, stream as stream:
        # after the lock: a resume rewrites save_dir/vdl (vdl.open_writer)
        writer = open_writer(save_dir, resume_model if resumed else None, start) if use_vdl and rank == 0 else None
        if rank == 0 and state.saved:  # resumed into its own save_dir: finish a best_model a crash left behind
            restore_best_model(save_dir, state.best_iter)
        if rank == 0 and config_text is not None:
            with open(os.path.join(save_dir, "config.yml"), "w") as f:
                f.write(config_text)
        if rank == 0 and resumed:
            print(f"train: resumed from iter {start} ({resume_model})", flush=True)
        for it, epoch, img, label in stream:
            reader_cost = time.time() - tr
            lv, lr = train_step(net, img, label, loss_fn, optimizer, scheduler, scaler, seed, it, save_dir)
            state.history["loss"].append((it, lv))
            state.history["lr"].append((it, lr))
            if rank == 0 and (it % log_iters == 0 or it == iters):
                cost = (time.time() - t0) / (it - start)
                log_train(writer, it, iters, epoch, lv, lr, cost, reader_cost, batch_size * world)
            saving = it % save_interval == 0 or it == iters
            if saving:
                if do_eval and val_dataset is not None:
                    evaluate_step(state, model, val_dataset, num_classes, eval_kwargs, it, rank, writer, class_names)
                if rank == 0:
                    checkpoint_step(state, save_dir, model, optimizer, scheduler, scaler, it, keep_k, run)
            if stop.requested:
                stop_step(state, stop, saving, save_dir, model, optimizer, scheduler, scaler, it, keep_k, run)
            tr = time.time()
    if writer:
        writer.close()
    if save_all_ranks:  # lets a check compare the replicas of a data-parallel run
        os.makedirs(save_dir, exist_ok=True)
        paddle.save(model.state_dict(), os.path.join(save_dir, f"rank_{rank}.pdparams"))
    if rank == 0:
        best = (state.best, state.best_iter) if state.best_iter is not None else None
        plot_curves(state.history, os.path.join(save_dir, "curves.png"), best)
        say_done(state, save_dir, iters, time.time() - t0, config_text is not None)
    return state.last_metrics


def say_done(state: TrainState, save_dir: str, iters: int, seconds: float, wrote_config: bool) -> None:
    """The closing lines: the best result and where every output went."""
    best = (
        f"best mIoU {state.best:.4f} at iter {state.best_iter}: {os.path.join(save_dir, 'best_model')}"
        if state.best_iter is not None
        else "no evaluation (pass --do_eval for best_model)"
    )
    last = os.path.join(save_dir, f"iter_{iters}")
    print(
        f"train: done, {iters} iters in {seconds:.0f} s; {best}\ntrain: last checkpoint {last}; curves "
        f"{os.path.join(save_dir, 'curves.png')}"
        + (f"; config {os.path.join(save_dir, 'config.yml')}" if wrote_config else ""),
        flush=True,
    )


def train_step(
    net, img, label, loss_fn, optimizer, scheduler, scaler, seed: int, it: int, save_dir: str
) -> tuple[float, float]:
    """One optimisation step on (img, label); returns (loss, the lr it used). A non-finite loss stops training."""
    paddle.seed(seed * SEED_STRIDE + it)  # dropout/drop-path masks depend on (seed, iter) only: exact resume
    with paddle.amp.auto_cast(enable=scaler is not None, level="O1"):
        outs = net(img)  # [logits], plus auxiliary logits from models with an auxiliary head (UPerNetViT)
        loss = loss_fn(outs[0] if len(outs) == 1 else outs, label)
    lv = float(loss)
    if not np.isfinite(lv):
        raise FloatingPointError(
            f"train: loss is {lv} at iter {it}; stopped. The last checkpoint in "
            f"{save_dir} is intact; lower the learning rate and resume from it."
        )
    if scaler is not None:  # fp16: scaled backward; steps whose gradients overflow are skipped
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    optimizer.clear_grad()
    lr = optimizer.get_lr()
    if scheduler is not None:
        scheduler.step()
    return lv, lr


def log_train(
    writer,
    it: int,
    iters: int,
    epoch: int,
    loss: float,
    lr: float,
    cost: float,
    reader_cost: float,
    images_per_iter: int,
) -> None:
    """The [TRAIN] line (and VisualDL scalars): loss, lr, seconds per iteration, throughput and ETA."""
    eta = cost * (iters - it)
    print(
        f"[TRAIN] iter {it}/{iters} epoch {epoch + 1} loss {loss:.4f} lr {lr:.6f} batch_cost {cost:.3f}s "
        f"reader_cost {reader_cost:.4f}s ips {images_per_iter / cost:.1f} img/s "
        f"ETA {int(eta // 60):02d}:{int(eta % 60):02d}",
        flush=True,
    )
    if writer:
        writer.add_scalar("Train/loss", loss, it)
        writer.add_scalar("Train/lr", lr, it)
        writer.add_scalar("Train/batch_cost", cost, it)
        writer.add_scalar("Train/ips", images_per_iter / cost, it)


def evaluate_step(
    state: TrainState,
    model,
    val_dataset,
    num_classes: int,
    eval_kwargs: dict,
    it: int,
    rank: int,
    writer,
    class_names: list = None,
) -> None:
    """Evaluate on val_dataset (every rank takes part), record the metrics in state and log them on rank 0."""
    state.last_metrics = m = evaluate(model, val_dataset, num_classes, **(eval_kwargs or {}))
    state.history["mIoU"].append((it, m["mIoU"]))
    if rank != 0:
        return
    print(f"[EVAL] iter {it} mIoU {m['mIoU']:.4f} Acc {m['Acc']:.4f} Kappa {m['Kappa']:.4f}", flush=True)
    if writer:
        for k in ("mIoU", "Acc", "Kappa"):
            writer.add_scalar(f"Evaluate/{k}", m[k], it)
        names = names_of(val_dataset, len(m["class_iou"]), class_names)
        for name, v in zip(names, m["class_iou"]):  # Evaluate/IoU_wall ... (IoU_class_0 ... when unnamed)
            writer.add_scalar(f"Evaluate/IoU_{name.replace(' ', '_')}", float(v), it)
        log_panels(writer, model, val_dataset, num_classes, it, eval_kwargs, names=names)  # image | truth | prediction


def checkpoint_step(
    state: TrainState, save_dir: str, model, optimizer, scheduler, scaler, it: int, keep_k: int, run: dict = None
) -> None:
    """Save iter_<it>, delete the oldest iter_N folders beyond keep_k, and replace best_model if mIoU improved.

    Each checkpoint records the best mIoU and the kept folders, so a resumed run continues both."""
    improved = bool(state.last_metrics) and state.last_metrics["mIoU"] > state.best
    if improved:
        state.best, state.best_iter = state.last_metrics["mIoU"], it
    best = {"mIoU": state.best, "iter": state.best_iter} if state.best_iter is not None else {}
    kept = [os.path.basename(p) for p in state.saved + [f"iter_{it}"]][-keep_k:]
    saved = save_checkpoint(
        save_dir,
        f"iter_{it}",
        model,
        optimizer,
        scheduler,
        it,
        scaler=scaler,
        best=best,
        kept=kept,
        run=run,
        history=state.history,
    )
    state.saved.append(saved)
    state.notice(saved)
    if improved:  # the same files: state.json already records this iteration as the best
        copy_checkpoint(saved, save_dir, "best_model")
    while len(state.saved) > keep_k:
        shutil.rmtree(state.saved.pop(0), ignore_errors=True)


def stop_step(
    state: TrainState,
    stop,
    saved_now: bool,
    save_dir: str,
    model,
    optimizer,
    scheduler,
    scaler,
    it: int,
    keep_k: int,
    run: dict = None,
) -> None:
    """After a SIGINT/SIGTERM: make sure iter_<it> is on disk, then raise TrainingStopped naming it."""
    if not saved_now and dist.get_rank() == 0:
        checkpoint_step(state, save_dir, model, optimizer, scheduler, scaler, it, keep_k, run)
    raise TrainingStopped(stop.signum, it, os.path.join(save_dir, f"iter_{it}"))


def resumed_state(resumed: Resumed, resume_model: str, save_dir: str) -> TrainState:
    """The loop state a resume continues: best mIoU (best_model is only replaced by a better one), the curves up
    to the checkpoint, and the kept iter_N folders, when resuming into the save_dir that holds them."""
    state = TrainState()
    if resumed is None:
        return state
    for k, pairs in resumed.history.items():
        state.history[k] = [(i, v) for i, v in pairs if i <= resumed.iter]
    if not resumed.history and dist.get_rank() == 0:
        print(
            f"[RESUME] {resume_model} records no curves (an older checkpoint): curves.png starts at iter {resumed.iter}"
        )
    if "mIoU" in resumed.best:
        state.best, state.best_iter = float(resumed.best["mIoU"]), resumed.best.get("iter")
    ckpt_dir = os.path.dirname(os.path.abspath(resume_model))
    if os.path.realpath(ckpt_dir) == os.path.realpath(save_dir):
        state.saved = [os.path.join(save_dir, n) for n in resumed.kept if os.path.isdir(os.path.join(save_dir, n))]
    return state


def amp_scaler(precision: str):
    """None for fp32; for fp16 a GradScaler (fp16 autocast needs a CUDA device: on CPU this is an error)."""
    if precision == "fp32":
        return None
    if precision != "fp16":
        raise ValueError(f"train: precision={precision!r}; use 'fp32' or 'fp16'.")
    if "gpu" not in paddle.device.get_device():
        raise ValueError(
            f"train: --precision fp16 needs a GPU, but paddle runs on {paddle.device.get_device()} "
            "(paddle's fp16 kernels are CUDA-only); use --precision fp32 on CPU."
        )
    return paddle.amp.GradScaler(init_loss_scaling=INIT_LOSS_SCALING)
