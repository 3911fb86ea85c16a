"""Durable checkpoints without code: arrays in `.pdparams`/`.pdopt`, everything else in `state.json`.

A save writes `name.tmp/`, fsyncs every file and the folder, renames it to `name/` and fsyncs `save_dir`, so a
kill at any moment leaves either the previous checkpoint or the new one, never a folder that loads half.
Loading goes through `segmenter.engine.safe_load` (restricted unpickler, strict keys): a file never runs code.

state.json (format 2): iter, scheduler, py_rng, np_rng, scaler, best {mIoU, iter}, kept (checkpoint folders
of the run, oldest first), run (the resolved config sections a resume must match), config_sha256, model (the
resolved `model` section the weights were built from), history (the run's loss, lr and mIoU curves up to iter, so a
resumed run plots the whole run).
"""

import contextlib
import errno
import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import paddle

from segmenter.engine.safe_load import CheckpointError, read_json, read_pickle, read_weights

FORMAT = 2
FILES = ("model.pdparams", "model.pdopt", "state.json")
# Sections of the run a resume must match, and ones that may change between the two runs (logged only).
MUST_MATCH = ("model", "train_dataset", "batch_size")
MAY_CHANGE = (
    "iters",
    "optimizer",
    "lr_scheduler",
    "loss",
    "val_dataset",
    "test_config",
    "save_interval",
    "log_iters",
    "training_only",
)
# model keys that change training, not the architecture the weights belong to
TRAINING_ONLY = ("pretrained", "drop_rate", "attn_drop_rate", "drop_path_rate", "dropout")


@dataclass
class Resumed:
    """What a checkpoint restores beyond the model and optimizer."""

    iter: int
    best: Dict[str, Any] = field(default_factory=dict)  # {"mIoU": float, "iter": int} or {}
    kept: List[str] = field(default_factory=list)  # checkpoint folders of the earlier run, oldest first
    history: Dict[str, list] = field(default_factory=dict)  # {"loss"|"lr"|"mIoU": [[iter, value], ...]} up to iter


def _rename_accumulators(opt_state: dict, names: dict) -> dict:
    """Rename optimizer keys '<param name>_moment1_0' by the longest matching prefix in names (old -> new)."""
    out = {}
    by_length = sorted(names, key=len, reverse=True)
    for key, value in opt_state.items():
        src = next((n for n in by_length if key.startswith(n + "_")), None)
        out[names[src] + key[len(src) :] if src else key] = value
    return out


def _param_names(model) -> dict:
    """Paddle's unique parameter name -> structured state-dict key (unique names change between builds)."""
    return {p.name: k for k, p in model.named_parameters()}


def _plain(obj: Any) -> Any:
    """Numpy arrays, numpy scalars and tuples as JSON values (arrays as {"array", "dtype"})."""
    if isinstance(obj, np.ndarray):
        return {"array": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if hasattr(obj, "numpy"):  # a paddle Tensor (GradScaler state on GPU)
        return _plain(obj.numpy())
    return obj


def _arrays(obj: Any) -> Any:
    """Inverse of _plain for the array entries."""
    if isinstance(obj, dict):
        if set(obj) == {"array", "dtype"}:
            return np.asarray(obj["array"], dtype=obj["dtype"])
        return {k: _arrays(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_arrays(v) for v in obj]
    return obj


def run_sections(cfg_dic: Dict[str, Any], **args) -> Dict[str, Any]:
    """The run description a checkpoint records: config sections (the model's without its training-only
    values, which go to `training_only`) plus command-line values such as save_interval."""

    def arch(section, out, prefix=""):
        kept = {}
        for k, v in (section or {}).items():
            if isinstance(v, dict):
                kept[k] = arch(v, out, f"{prefix}{k}.")
            elif k in TRAINING_ONLY:
                out[prefix + k] = v
            else:
                kept[k] = v
        return kept

    training_only: Dict[str, Any] = {}
    run = {k: cfg_dic.get(k) for k in MUST_MATCH + MAY_CHANGE if k in cfg_dic}
    run["model"] = arch(cfg_dic.get("model"), training_only)
    run["training_only"] = training_only
    run["resolved_model"] = cfg_dic.get("model")  # what the weights were built from, recorded as state["model"]
    run.update(args)
    return _plain(run)


def config_hash(run: Dict[str, Any]) -> str:
    """sha256 of the run sections that must match, in canonical JSON."""
    must = {k: run.get(k) for k in MUST_MATCH}
    return hashlib.sha256(json.dumps(_plain(must), sort_keys=True).encode()).hexdigest()


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(final: str) -> None:
    """Finish a replace that a kill interrupted between its two renames (`final` gone, `final.old` complete)."""
    old = final + ".old"
    if not os.path.exists(final) and os.path.isdir(old) and all(os.path.isfile(os.path.join(old, f)) for f in FILES):
        os.rename(old, final)


@contextlib.contextmanager
def _staged(save_dir: str, name: str) -> Iterator[str]:
    """The one atomic write of a checkpoint folder: yields an empty save_dir/name.tmp/ to fill (every file in it
    fsynced by the caller), then fsyncs it and replaces save_dir/name with it (`_publish`). An OSError while
    filling removes the partial folder and becomes the error that says what is still intact."""
    final = os.path.join(save_dir, name)
    tmp = final + ".tmp"
    os.makedirs(save_dir, exist_ok=True)
    recover(final)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        os.makedirs(tmp)
        yield tmp
        _fsync_dir(tmp)
    except OSError as e:
        raise _not_written(e, tmp, final, save_dir) from e
    _publish(tmp, final, save_dir)


def save_checkpoint(
    save_dir: str,
    name: str,
    model,
    optimizer,
    scheduler,
    iteration: int,
    extra: dict = None,
    scaler=None,
    best: dict = None,
    kept: List[str] = None,
    run: dict = None,
    history: Dict[str, list] = None,
) -> str:
    """Write save_dir/name/{model.pdparams, model.pdopt, state.json} durably and atomically; returns the folder.

    A failed write (a full disk) removes the partial folder, leaves the previous checkpoint as it was and
    raises an OSError that says so.
    """
    run = _plain(run or {})
    state = {
        "format": FORMAT,
        "iter": int(iteration),
        "scheduler": _plain(scheduler.state_dict()) if scheduler is not None else None,
        "py_rng": _plain(random.getstate()),
        "np_rng": _plain(np.random.get_state()),
        "scaler": _plain(scaler.state_dict()) if scaler is not None else None,
        "best": _plain(best if best is not None else (extra or {})),
        "kept": list(kept or []),
        "run": run,
        "config_sha256": config_hash(run),
        "model": run.get("resolved_model"),
        "history": compact(history or {}),
    }
    with _staged(save_dir, name) as tmp:
        paddle.save(model.state_dict(), os.path.join(tmp, "model.pdparams"))
        # keyed by structured names so a model built in another process (other unique names) can resume
        paddle.save(_rename_accumulators(optimizer.state_dict(), _param_names(model)), os.path.join(tmp, "model.pdopt"))
        with open(os.path.join(tmp, "state.json"), "w") as f:
            json.dump(state, f)
        for f in FILES:
            _fsync_file(os.path.join(tmp, f))
    return os.path.join(save_dir, name)


def compact(history: Dict[str, list]) -> Dict[str, list]:
    """The curves as [[iter, value], ...] with values to 7 significant digits (float32's precision, what the loss
    and lr were computed in): a 160k-iteration run's loss and lr take ~3 MB of state.json instead of ~6."""
    return {k: [[int(i), float(f"{v:.7g}")] for i, v in pairs] for k, pairs in history.items()}


def _not_written(e: OSError, tmp: str, final: str, save_dir: str) -> OSError:
    """Remove the partial folder tmp; the error that says what failed and what is still intact."""
    shutil.rmtree(tmp, ignore_errors=True)
    what = "the disk is full" if e.errno == errno.ENOSPC else str(e)
    kept = (
        f"the previous checkpoint {final} is intact"
        if os.path.isdir(final)
        else f"earlier checkpoints in {save_dir} are intact"
    )
    return OSError(
        e.errno,
        f"checkpoint {final} could not be written ({what}); nothing half-written was left "
        f"and {kept}. Free space in {save_dir} and resume with --resume_model on the newest "
        "save_dir/iter_N.",
    )


def _publish(tmp: str, final: str, save_dir: str) -> None:
    """Replace `final` by the complete folder `tmp` (two renames; `recover` finishes one a kill interrupted)."""
    old = final + ".old"
    if os.path.exists(final):
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
    os.rename(tmp, final)
    _fsync_dir(save_dir)
    shutil.rmtree(old, ignore_errors=True)


def copy_checkpoint(src: str, save_dir: str, name: str) -> str:
    """save_dir/name as a copy of the checkpoint folder src, as durable and atomic as save_checkpoint.

    The files are hard links where the file system allows (a checkpoint is never rewritten in place, and
    deleting src later leaves the copy whole), else copies; best_model costs no second write of the weights."""
    with _staged(save_dir, name) as tmp:
        for f in FILES:
            try:
                os.link(os.path.join(src, f), os.path.join(tmp, f))
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    raise
                shutil.copyfile(os.path.join(src, f), os.path.join(tmp, f))
                _fsync_file(os.path.join(tmp, f))
    return os.path.join(save_dir, name)


def restore_best_model(save_dir: str, best_iter: Optional[int]) -> None:
    """Make save_dir/best_model the copy of iter_<best_iter> that the resumed run records as its best.

    A kill between best_model's two renames leaves best_model.old/ only, and a kill or a full disk between
    saving iter_N and copying it leaves best_model one best behind; nothing later repairs either unless the
    mIoU improves again, so a resume does it here (hard links: no second write)."""
    final = os.path.join(save_dir, "best_model")
    recover(final)
    shutil.rmtree(final + ".tmp", ignore_errors=True)
    src = os.path.join(save_dir, f"iter_{best_iter}")
    if best_iter is None or not os.path.isdir(src):
        return
    try:
        current = read_state(final)["iter"]
    except (OSError, CheckpointError, KeyError, ValueError):  # absent or unreadable: replaced below
        current = None
    if current != best_iter:
        copy_checkpoint(src, save_dir, "best_model")


def read_state(path: str) -> Dict[str, Any]:
    """state.json of a checkpoint folder; a legacy state.pkl (format 1) is read by the restricted unpickler."""
    if os.path.isfile(os.path.join(path, "state.json")):
        return _arrays(read_json(os.path.join(path, "state.json")))
    legacy = os.path.join(path, "state.pkl")
    if os.path.isfile(legacy):  # format 1: arrays, tuples and dicts only, so the safe unpickler reads it
        state = read_pickle(legacy)
        if not isinstance(state, dict) or "iter" not in state:
            raise CheckpointError(
                f"'{legacy}' is not a training state (no 'iter'); resume from a folder written by tools/train.py."
            )
        return {"format": 1, "best": state.get("extra") or {}, "kept": [], "run": {}, **state}
    raise FileNotFoundError(f"resume: {os.path.join(path, 'state.json')} is missing; pass a save_dir/iter_N folder.")


def check_run(path: str, saved: Dict[str, Any], run: Dict[str, Any], log=print) -> None:
    """Refuse a resume whose architecture, dataset, batch size, loss or optimizer differ; log harmless changes."""
    if not saved or not run:
        if run and not saved:
            log(f"[RESUME] {path} records no config (legacy format 1): the run is not checked against it")
        return
    run = _plain(run)
    differ = [k for k in MUST_MATCH if k in saved and saved.get(k) != run.get(k)]
    if differ:
        lines = [
            f"  {k}: checkpoint {json.dumps(saved.get(k), sort_keys=True)[:300]} vs config "
            f"{json.dumps(run.get(k), sort_keys=True)[:300]}"
            for k in differ
        ]
        raise CheckpointError(
            f"--resume_model {path} was written by another run ({', '.join(differ)} differ):\n"
            + "\n".join(lines)
            + "\n  Resume with the config that wrote it, or start a new "
            "run in another save_dir (pass it as model.pretrained to fine-tune)."
        )
    for k in MAY_CHANGE:
        if k in saved and saved.get(k) != run.get(k):
            log(f"[RESUME] {k} changed: {saved.get(k)} -> {run.get(k)} (allowed)")
    if saved.get("ranks") and run.get("ranks") and saved["ranks"] != run["ranks"]:
        log(ranks_changed(saved["ranks"], run["ranks"], run.get("batch_size")))


def ranks_changed(was: int, now: int, batch_size: Optional[int]) -> str:
    """The warning of a resume on another number of ranks: what changes, as PaddleSeg's batch size is per card."""
    b = batch_size or 0
    return (
        f"[RESUME] warning: ranks changed: {was} -> {now}. batch_size {b} is per rank (as in PaddleSeg), so the "
        f"global batch changes from {b * was} to {b * now} images per iteration; the iteration count, the "
        f"learning-rate schedule, the best mIoU and the checkpoints continue, but each iteration now averages the "
        f"gradient of {b * now} images and the data order differs from a run on {was} ranks (each rank takes every "
        f"{now}th sample of the seeded order; the epoch is iteration // batches per epoch on {now} ranks). "
        f"Resume on {was} ranks to keep the run as it was."
    )


def load_checkpoint(path: str, model, optimizer, scheduler, scaler=None, run: dict = None) -> Resumed:
    """Restore model, optimizer, scheduler and RNG state from a folder written by save_checkpoint."""
    from segmenter.models.weights import load_state_dict_strict

    if not os.path.isdir(path):
        raise FileNotFoundError(f"--resume_model {path} is not a folder; pass a save_dir/iter_N folder.")
    for f in ("model.pdparams", "model.pdopt"):
        if not os.path.isfile(os.path.join(path, f)):
            raise FileNotFoundError(f"resume: {os.path.join(path, f)} is missing; pass a save_dir/iter_N folder.")
    state = read_state(path)
    check_run(path, state.get("run") or {}, run or {})
    weights = os.path.join(path, "model.pdparams")
    load_state_dict_strict(model, read_weights(weights), weights)
    opt_state = read_pickle(os.path.join(path, "model.pdopt"))
    if not isinstance(opt_state, dict):
        raise CheckpointError(
            f"'{os.path.join(path, 'model.pdopt')}' holds a {type(opt_state).__name__}, not an optimizer state dict."
        )
    inverse = {k: n for n, k in _param_names(model).items()}
    optimizer.set_state_dict(_rename_accumulators(opt_state, inverse))
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.set_state_dict(state["scheduler"])
        # The saved last_lr is the old schedule's; where --iters changed, the next step must already run the new one
        # (the same value when nothing changed: get_lr recomputes it from last_epoch).
        scheduler.last_lr = scheduler.get_lr()
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    py = state["py_rng"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_rng = state["np_rng"]
    np.random.set_state((np_rng[0], np.asarray(np_rng[1], dtype=np.uint32), *np_rng[2:]))
    history = {k: [(int(i), float(v)) for i, v in pairs] for k, pairs in (state.get("history") or {}).items()}
    return Resumed(int(state["iter"]), dict(state.get("best") or {}), list(state.get("kept") or []), history)
