"""Atomic checkpoints: write into a temp folder, then rename, so a kill mid-save never leaves a half checkpoint."""
import os
import pickle
import random
import shutil

import numpy as np
import paddle


def save_checkpoint(save_dir: str, name: str, model, optimizer, scheduler, iteration: int, extra: dict = None) -> str:
    """Write save_dir/name/{model.pdparams, model.pdopt, state.pkl} atomically; returns the folder."""
    final = os.path.join(save_dir, name)
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    paddle.save(model.state_dict(), os.path.join(tmp, "model.pdparams"))
    paddle.save(optimizer.state_dict(), os.path.join(tmp, "model.pdopt"))
    state = {"iter": iteration, "scheduler": scheduler.state_dict() if scheduler is not None else None,
             "py_rng": random.getstate(), "np_rng": np.random.get_state(),
             "extra": extra or {}}
    with open(os.path.join(tmp, "state.pkl"), "wb") as f:
        pickle.dump(state, f)
    old = final + ".old"
    if os.path.exists(final):
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str, model, optimizer, scheduler) -> int:
    """Restore model, optimizer, scheduler and RNG state from a folder written by save_checkpoint; returns iter."""
    for f in ("model.pdparams", "model.pdopt", "state.pkl"):
        if not os.path.isfile(os.path.join(path, f)):
            raise FileNotFoundError(f"resume: {os.path.join(path, f)} is missing; pass a save_dir/iter_N folder.")
    model.set_state_dict(paddle.load(os.path.join(path, "model.pdparams")))
    optimizer.set_state_dict(paddle.load(os.path.join(path, "model.pdopt")))
    with open(os.path.join(path, "state.pkl"), "rb") as f:
        state = pickle.load(f)
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.set_state_dict(state["scheduler"])
    random.setstate(state["py_rng"])
    np.random.set_state(state["np_rng"])
    return int(state["iter"])
