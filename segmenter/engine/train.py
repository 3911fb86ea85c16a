"""Train loop: seeded data order, poly LR, atomic checkpoints + exact resume, NaN stop, VisualDL, data parallel."""
import os
import shutil
import time

import numpy as np
import paddle
import paddle.distributed as dist

from segmenter.engine.checkpoint import load_checkpoint, save_checkpoint
from segmenter.engine.evaluate import evaluate


def batches(n: int, batch_size: int, seed: int, epoch: int, rank: int, world: int) -> list[list[int]]:
    """Index batches of one epoch: a seeded permutation, each rank taking every world-th sample."""
    order = np.random.default_rng([seed, epoch]).permutation(n)[rank::world]
    return [order[i:i + batch_size].tolist() for i in range(0, len(order) - batch_size + 1, batch_size)]


def stack(items: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Stack samples into img [B, 3, H, W] float32 and label [B, H, W] int64."""
    return np.stack([s["img"] for s in items]), np.stack([s["label"] for s in items]).astype(np.int64)


def collate(dataset, idx: list[int]) -> tuple[paddle.Tensor, paddle.Tensor]:
    """The batch of samples idx as tensors."""
    img, label = stack([dataset[i] for i in idx])
    return paddle.to_tensor(img), paddle.to_tensor(label)


def batch_stream(dataset, batch_size: int, seed: int, start: int, stop: int, rank: int, world: int,
                 num_workers: int = 0):
    """Yield (iter, epoch, img, label) for iters start + 1 .. stop. The batch of an iteration depends only on
    (seed, iter), so num_workers (worker processes, one loader per epoch) never changes what is trained on."""
    nb = len(batches(len(dataset), batch_size, seed, 0, rank, world))
    it = start
    while it < stop:
        epoch, step = divmod(it, nb)
        todo = batches(len(dataset), batch_size, seed, epoch, rank, world)[step:step + stop - it]
        if num_workers > 0:
            source = paddle.io.DataLoader(dataset, batch_sampler=todo, num_workers=num_workers,
                                          collate_fn=stack, use_shared_memory=False)
        else:
            source = (collate(dataset, idx) for idx in todo)
        for img, label in source:
            it += 1
            yield it, epoch, img, label


def train(model, train_dataset, optimizer, scheduler, loss_fn, iters: int, batch_size: int, save_dir: str,
          val_dataset=None, num_classes: int = None, seed: int = 0, save_interval: int = 1000, keep_k: int = 2,
          log_iters: int = 10, do_eval: bool = False, use_vdl: bool = False, resume_model: str = None,
          eval_kwargs: dict = None, save_all_ranks: bool = False, num_workers: int = 0,
          precision: str = "fp32") -> dict:
    """Train model for iters steps; returns the last evaluation metrics (or {})."""
    rank, world = dist.get_rank(), dist.get_world_size()
    net = paddle.DataParallel(model) if world > 1 else model
    scaler = amp_scaler(precision)
    start = load_checkpoint(resume_model, model, optimizer, scheduler, scaler) if resume_model else 0
    writer = None
    if use_vdl and rank == 0:
        from visualdl import LogWriter
        writer = LogWriter(os.path.join(save_dir, "vdl"))
    nb = len(batches(len(train_dataset), batch_size, seed, 0, rank, world))
    if nb == 0:
        raise ValueError(f"train: {len(train_dataset)} samples give no batch of {batch_size} on {world} ranks.")
    history, best, last_metrics, saved = {"loss": [], "lr": [], "mIoU": []}, -1.0, {}, []
    model.train()
    t0 = tr = time.time()
    for it, epoch, img, label in batch_stream(train_dataset, batch_size, seed, start, iters, rank, world, num_workers):
        reader_cost = time.time() - tr
        paddle.seed(seed * 100003 + it)  # dropout/drop-path masks depend on (seed, iter) only: exact resume
        with paddle.amp.auto_cast(enable=scaler is not None, level="O1"):
            outs = net(img)  # [logits], plus auxiliary logits from models with an auxiliary head (UPerNetViT)
            loss = loss_fn(outs[0] if len(outs) == 1 else outs, label)
        lv = float(loss)
        if not np.isfinite(lv):
            raise FloatingPointError(f"train: loss is {lv} at iter {it}; stopped. The last checkpoint in "
                                     f"{save_dir} is intact; lower the learning rate and resume from it.")
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
        history["loss"].append((it, lv))
        history["lr"].append((it, lr))
        if rank == 0 and (it % log_iters == 0 or it == iters):
            cost = (time.time() - t0) / (it - start)
            eta = cost * (iters - it)
            print(f"[TRAIN] iter {it}/{iters} epoch {epoch + 1} loss {lv:.4f} lr {lr:.6f} batch_cost {cost:.3f}s "
                  f"reader_cost {reader_cost:.4f}s ips {batch_size * world / cost:.1f} img/s "
                  f"ETA {int(eta // 60):02d}:{int(eta % 60):02d}", flush=True)
            if writer:
                writer.add_scalar("Train/loss", lv, it)
                writer.add_scalar("Train/lr", lr, it)
                writer.add_scalar("Train/batch_cost", cost, it)
                writer.add_scalar("Train/ips", batch_size * world / cost, it)
        if it % save_interval == 0 or it == iters:
            if do_eval and val_dataset is not None:
                last_metrics = evaluate(model, val_dataset, num_classes, **(eval_kwargs or {}))
                history["mIoU"].append((it, last_metrics["mIoU"]))
                if rank == 0:
                    print(f"[EVAL] iter {it} mIoU {last_metrics['mIoU']:.4f} Acc {last_metrics['Acc']:.4f} "
                          f"Kappa {last_metrics['Kappa']:.4f}", flush=True)
                    if writer:
                        for k in ("mIoU", "Acc", "Kappa"):
                            writer.add_scalar(f"Evaluate/{k}", last_metrics[k], it)
                        for c, v in enumerate(last_metrics["class_iou"]):
                            writer.add_scalar(f"Evaluate/IoU_class_{c}", float(v), it)
            if rank == 0:
                saved.append(save_checkpoint(save_dir, f"iter_{it}", model, optimizer, scheduler, it, scaler=scaler))
                while len(saved) > keep_k:
                    shutil.rmtree(saved.pop(0), ignore_errors=True)
                if last_metrics and last_metrics["mIoU"] > best:
                    best = last_metrics["mIoU"]
                    save_checkpoint(save_dir, "best_model", model, optimizer, scheduler, it, {"mIoU": best},
                                    scaler=scaler)
        tr = time.time()
    if writer:
        writer.close()
    if save_all_ranks:  # lets a check compare the replicas of a data-parallel run
        os.makedirs(save_dir, exist_ok=True)
        paddle.save(model.state_dict(), os.path.join(save_dir, f"rank_{rank}.pdparams"))
    if rank == 0:
        plot_curves(history, os.path.join(save_dir, "curves.png"))
    return last_metrics


def amp_scaler(precision: str):
    """None for fp32; for fp16 a GradScaler (fp16 autocast needs a CUDA device: on CPU this is an error)."""
    if precision == "fp32":
        return None
    if precision != "fp16":
        raise ValueError(f"train: precision={precision!r}; use 'fp32' or 'fp16'.")
    if "gpu" not in paddle.device.get_device():
        raise ValueError(f"train: --precision fp16 needs a GPU, but paddle runs on {paddle.device.get_device()} "
                         "(paddle's fp16 kernels are CUDA-only); use --precision fp32 on CPU.")
    return paddle.amp.GradScaler(init_loss_scaling=2.0 ** 15)


def plot_curves(history: dict, path: str) -> None:
    """Loss, lr and mIoU curves as one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, key in zip(axes, ("loss", "lr", "mIoU")):
        if history[key]:
            xs, ys = zip(*history[key])
            ax.plot(xs, ys, marker="." if key == "mIoU" else None)
        ax.set_title(key)
        ax.set_xlabel("iter")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
