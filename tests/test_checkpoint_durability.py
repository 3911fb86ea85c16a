"""Durable saves: a training process SIGKILLed at 24 moments around its saves always leaves a newest complete
checkpoint that resumes (after which best_model is the recorded best) and no folder that loads half; a full disk
(ENOSPC) leaves the previous checkpoint intact."""

import errno
import importlib
import json
import multiprocessing
import os
import re
import shutil
import signal

import paddle
import pytest
from paddleseg.cvlibs import SegBuilder

import segmenter  # noqa: F401
from segmenter.engine import checkpoint as ckpt
from segmenter.engine.losses import total_loss
from segmenter.engine.run import load_config
from tests.engine_helpers import write_tiny_config

train_mod = importlib.import_module("segmenter.engine.train")  # the module (segmenter.engine.train is the function)
ITERS = 3
# I/O steps of a save, counted from the second save on; a kill lands just before the k-th one. Saves at iters 2
# and 3 write iter_N, link it as best_model (steps ~15-24 and ~40-49) and delete the oldest iter_N: ~25 steps each.
MOMENTS = list(range(2, 50, 2))


def rising_evaluate(model, ds, n, **kw):
    """Every evaluation is better than the last, so best_model is replaced at every save."""
    rising_evaluate.calls += 1
    v = 0.1 * rising_evaluate.calls
    return {"mIoU": v, "Acc": v, "Kappa": v, "class_iou": [v] * n}


def run(cfg_path: str, save_dir: str, resume: str = None) -> None:
    """Train the tiny config to ITERS, saving every iteration (best_model replaced each time, keep 2)."""
    b = SegBuilder(load_config(cfg_path))
    losses = b.loss
    rising_evaluate.calls = 0
    train_mod.evaluate = rising_evaluate
    train_mod.train(
        b.model,
        b.train_dataset,
        b.optimizer,
        b.lr_scheduler,
        lambda logits, label: total_loss(losses, logits, label),
        ITERS,
        4,
        save_dir,
        val_dataset=b.val_dataset,
        num_classes=4,
        save_interval=1,
        keep_k=2,
        log_iters=100,
        do_eval=True,
        resume_model=resume,
    )


def die_at(k: int) -> None:
    """In the child: SIGKILL this process just before the k-th I/O step of the saves after the first."""
    state = {"armed": False, "n": 0}

    def counted(fn):
        def wrapper(*a, **kw):
            if state["armed"]:
                state["n"] += 1
                if state["n"] == k:
                    os.kill(os.getpid(), signal.SIGKILL)
            return fn(*a, **kw)

        return wrapper

    real_save = train_mod.save_checkpoint

    def save(save_dir, name, model, optimizer, scheduler, iteration, *a, **kw):
        state["armed"] = state["armed"] or iteration >= 2
        return real_save(save_dir, name, model, optimizer, scheduler, iteration, *a, **kw)

    train_mod.save_checkpoint = save
    ckpt._fsync_file, ckpt._fsync_dir = counted(ckpt._fsync_file), counted(ckpt._fsync_dir)
    ckpt.json.dump, paddle.save = counted(ckpt.json.dump), counted(paddle.save)
    os.rename, os.makedirs, shutil.rmtree = counted(os.rename), counted(os.makedirs), counted(shutil.rmtree)
    os.link = counted(os.link)


def child(cfg_path: str, save_dir: str, k: int) -> None:
    die_at(k)
    run(cfg_path, save_dir)


def killed_run(cfg_path: str, save_dir: str, k: int) -> int:
    """A training process that SIGKILLs itself at moment k; returns its exit code (-9: killed).

    The process comes from a fork server that has imported paddle but never run it: forking a process
    whose paddle has run (thread pools) can deadlock the child."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["segmenter", "paddleseg.cvlibs", "segmenter.engine.run"])
    p = ctx.Process(target=child, args=(cfg_path, save_dir, k))
    p.start()
    p.join(120)
    if p.exitcode is None:
        p.kill()
    assert p.exitcode is not None and p.exitcode <= 0, f"moment {k}: the training failed (exit {p.exitcode})"
    return p.exitcode


def loads(cfg_path: str, folder: str) -> int:
    b = SegBuilder(load_config(cfg_path))
    return ckpt.load_checkpoint(folder, b.model, b.optimizer, b.lr_scheduler).iter


@pytest.mark.slow
def test_sigkill_at_20_moments_around_saves(tmp_path, monkeypatch):
    cfg_path = write_tiny_config(tmp_path)
    monkeypatch.setattr(train_mod, "evaluate", rising_evaluate)
    survived, report = 0, []
    for k in MOMENTS:
        save_dir = str(tmp_path / f"kill_{k}")
        code = killed_run(cfg_path, save_dir, k)
        folders = sorted(f for f in os.listdir(save_dir) if re.fullmatch(r"iter_\d+|best_model", f))
        for f in folders:  # every folder under a final name loads completely
            loads(cfg_path, os.path.join(save_dir, f))
        newest = max((f for f in folders if f.startswith("iter_")), key=lambda f: int(f[5:]))
        run(cfg_path, save_dir, resume=os.path.join(save_dir, newest))  # --resume_model on the newest
        with open(os.path.join(save_dir, f"iter_{ITERS}", "state.json")) as fh:
            final = json.load(fh)
        best = os.path.join(save_dir, "best_model")
        best_iter = ckpt.read_state(best)["iter"] if os.path.isdir(best) else None  # the one the run records
        survived += code == -signal.SIGKILL and final["iter"] == ITERS and best_iter == final["best"]["iter"]
        report.append(
            f"k={k}: exit {code}, {folders}, resumed {newest} -> iter_{final['iter']}, best_model "
            f"iter {best_iter} (recorded best: iter {final['best']['iter']})"
        )
    print("\n".join(report))
    assert survived == len(MOMENTS) == 24, f"{survived}/{len(MOMENTS)} kills survived:\n" + "\n".join(report)


@pytest.mark.parametrize(
    "failing,intact,says",
    [
        ("iter_3", "iter_1", "earlier checkpoints in .*run are intact"),
        ("best_model", "best_model", "the previous checkpoint .*best_model is intact"),
    ],
)
def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failing, intact, says):
    """ENOSPC mid-file while writing iter_3's weights, or while copying iter_2 to best_model (on a file system
    without hard links, where best_model is a real copy)."""
    cfg_path = write_tiny_config(tmp_path)
    monkeypatch.setattr(train_mod, "evaluate", rising_evaluate)

    def partial_then_full(path):
        with open(path, "wb") as f:
            f.write(b"\x80\x04partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    if failing == "iter_3":
        real = paddle.save

        def save(obj, path, *a, **kw):
            return partial_then_full(path) if os.sep + "iter_3.tmp" + os.sep in path else real(obj, path, *a, **kw)

        monkeypatch.setattr(paddle, "save", save)
    else:
        real_copy = shutil.copyfile

        def no_links(src, dst):
            raise OSError(errno.EPERM, "Operation not permitted")

        def copyfile(src, dst, *a, **kw):
            return partial_then_full(dst) if os.sep + "iter_2" + os.sep in src else real_copy(src, dst, *a, **kw)

        monkeypatch.setattr(os, "link", no_links)
        monkeypatch.setattr(shutil, "copyfile", copyfile)
    save_dir = str(tmp_path / "run")
    with pytest.raises(OSError, match=rf"{failing} could not be written \(the disk is full.*{says}"):
        run(cfg_path, save_dir)
    monkeypatch.undo()
    assert loads(cfg_path, os.path.join(save_dir, intact)) == 1, f"{intact} after ENOSPC"
    left = sorted(os.listdir(save_dir))
    assert not [f for f in left if f.endswith(".tmp")], f"a partial folder was left: {left}"


def test_best_model_is_whole_after_its_source_folder_is_deleted(tmp_path, monkeypatch):
    """best_model shares iter_N's files (hard links): deleting iter_N (keep_k) must leave it loadable."""
    cfg_path = write_tiny_config(tmp_path)
    monkeypatch.setattr(train_mod, "evaluate", rising_evaluate)
    save_dir = str(tmp_path / "run")
    run(cfg_path, save_dir)
    for f in ckpt.FILES:  # hard links, not copies: a new best wrote no second set of weights
        a, b = (os.stat(os.path.join(save_dir, d, f)) for d in ("iter_3", "best_model"))
        assert (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev), f"best_model/{f} is not a hard link of iter_3/{f}"
    shutil.rmtree(os.path.join(save_dir, "iter_3"))
    assert loads(cfg_path, os.path.join(save_dir, "best_model")) == ITERS
    with open(os.path.join(save_dir, "best_model", "state.json")) as fh:
        assert json.load(fh)["best"] == {"mIoU": 0.1 * ITERS, "iter": ITERS}


def test_files_and_folders_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    cfg_path = write_tiny_config(tmp_path)
    b = SegBuilder(load_config(cfg_path))
    events, real_fsync, real_rename = [], os.fsync, os.rename

    def fsync(fd):
        events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        return real_fsync(fd)

    def rename(src, dst):
        events.append(("rename", os.path.basename(src), os.path.basename(dst)))
        return real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    save_dir = str(tmp_path / "run")
    ckpt.save_checkpoint(save_dir, "iter_1", b.model, b.optimizer, b.lr_scheduler, 1)
    done = events.index(("rename", "iter_1.tmp", "iter_1"))
    before = {e[1] for e in events[:done] if e[0] == "fsync"}
    assert before == {"model.pdparams", "model.pdopt", "state.json", "iter_1.tmp"}, f"fsynced before: {events}"
    assert ("fsync", "run") in events[done:], f"save_dir not fsynced after the rename: {events}"
