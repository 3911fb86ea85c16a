"""Atomic checkpoints: write into a temp folder, then rename, so a kill mid-save never leaves a half checkpoint."""
import os
import pickle
import random
import shutil

import numpy as np
import paddle


def _rename_accumulators(opt_state: dict, names: dict) -> dict:
    """Rename optimizer keys '<param name>_moment1_0' by the longest matching prefix in names (old -> new)."""
    out = {}
    by_length = sorted(names, key=len, reverse=True)
    for key, value in opt_state.items():
        src = next((n for n in by_length if key.startswith(n + "_")), None)
        out[names[src] + key[len(src):] if src else key] = value
    return out


def _param_names(model) -> dict:
    """Paddle's unique parameter name -> structured state-dict key (unique names change between builds)."""
    return {p.name: k for k, p in model.named_parameters()}


def save_checkpoint(save_dir: str, name: str, model, optimizer, scheduler, iteration: int, extra: dict = None,
                    scaler=None) -> str:
    """Write save_dir/name/{model.pdparams, model.pdopt, state.pkl} atomically; returns the folder."""
    final = os.path.join(save_dir, name)
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    paddle.save(model.state_dict(), os.path.join(tmp, "model.pdparams"))
    # keyed by structured names so a model built in another process (other unique names) can resume
    paddle.save(_rename_accumulators(optimizer.state_dict(), _param_names(model)), os.path.join(tmp, "model.pdopt"))
    state = {"iter": iteration, "scheduler": scheduler.state_dict() if scheduler is not None else None,
             "py_rng": random.getstate(), "np_rng": np.random.get_state(),
             "scaler": scaler.state_dict() if scaler is not None else None, "extra": extra or {}}
    with open(os.path.join(tmp, "state.pkl"), "wb") as f:
        pickle.dump(state, f)
    old = final + ".old"
    if os.path.exists(final):
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str, model, optimizer, scheduler, scaler=None) -> int:
    """Restore model, optimizer, scheduler and RNG state from a folder written by save_checkpoint; returns iter."""
    for f in ("model.pdparams", "model.pdopt", "state.pkl"):
        if not os.path.isfile(os.path.join(path, f)):
            raise FileNotFoundError(f"resume: {os.path.join(path, f)} is missing; pass a save_dir/iter_N folder.")
    model.set_state_dict(paddle.load(os.path.join(path, "model.pdparams")))
    inverse = {k: n for n, k in _param_names(model).items()}
    optimizer.set_state_dict(_rename_accumulators(paddle.load(os.path.join(path, "model.pdopt")), inverse))
    with open(os.path.join(path, "state.pkl"), "rb") as f:
        state = pickle.load(f)
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.set_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    random.setstate(state["py_rng"])
    np.random.set_state(state["np_rng"])
    return int(state["iter"])
