"""A resumed run keeps its history: curves.png and VisualDL (as its UI reads a log folder: the newest file only)
show every iteration of the run once, after any number of resumes, also a resume from an earlier checkpoint than
the last, and the curves' best is best_model's."""

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from segmenter.engine.run import load_config, run_train
from segmenter.engine.vdl import history, records
from tests.engine_helpers import ROOT, write_tiny_config


def printed(out: str) -> dict:
    """{iter: loss} and {iter: mIoU} of the [TRAIN] / [EVAL] lines a run printed."""
    loss = {int(i): float(v) for i, v in re.findall(r"^\[TRAIN\] iter (\d+)/\d+ .*? loss (\S+)", out, re.M)}
    miou = {int(i): float(v) for i, v in re.findall(r"^\[EVAL\] iter (\d+) mIoU (\S+)", out, re.M)}
    return {"loss": loss, "mIoU": miou}


def ui_scalars(vdl: str, copy: str, tags: tuple) -> dict:
    """{tag: [(step, value)]} as VisualDL's server answers /api/scalar/list for the log folder vdl. The server's
    data manager is process-wide and keyed by folder, so each look reads a copy under a new name."""
    import shutil

    from visualdl import LogReader
    from visualdl.server import lib

    shutil.copytree(vdl, copy)
    reader = LogReader(logdir=copy)
    runs = reader.runs()
    assert runs == [copy], f"VisualDL sees runs {runs} in {copy}"
    return {tag: [(step, value) for _, step, value in lib.get_scalar(reader, copy, tag)] for tag in tags}


def check_ui(vdl: str, copy: str, want: dict) -> None:
    """VisualDL shows each step of the run once, with the value the run printed."""
    ui = ui_scalars(vdl, copy, ("Train/loss", "Evaluate/mIoU"))
    for tag, key in (("Train/loss", "loss"), ("Evaluate/mIoU", "mIoU")):
        steps = [s for s, _ in ui[tag]]
        assert steps == sorted(want[key]), f"VisualDL shows {tag} at steps {steps}, the run has {sorted(want[key])}"
        off = [(s, round(v, 4), want[key][s]) for s, v in ui[tag] if abs(v - want[key][s]) > 6e-5]
        assert not off, f"VisualDL's {tag} (step, shown, printed) differ: {off}"


def merged(runs: list) -> dict:
    """{"loss"|"mIoU": {iter: value}} of the runs' printed lines, a later run's iterations replacing earlier ones."""
    return {k: {i: v for r in runs for i, v in r[k].items()} for k in ("loss", "mIoU")}


KILLED_AFTER_ITER_6 = """
import importlib, os, signal, sys
import segmenter
from segmenter.engine.run import load_config, run_train

train_mod = importlib.import_module("segmenter.engine.train")
real = train_mod.checkpoint_step

def checkpoint_then_die(state, save_dir, model, optimizer, scheduler, scaler, it, *a, **kw):
    real(state, save_dir, model, optimizer, scheduler, scaler, it, *a, **kw)
    if it == 6:  # killed: no writer.close(), nothing Python would run on its way out
        os.kill(os.getpid(), signal.SIGKILL)

train_mod.checkpoint_step = checkpoint_then_die
run_train(load_config(sys.argv[1], iters=9), sys.argv[2], seed=4, save_interval=3, keep_k=5, log_iters=1,
          do_eval=True, use_vdl=True)
"""


@pytest.mark.slow  # a training killed after iter_6, two resumes, 4 evaluations with VisualDL panels (~10-15 s)
def test_a_killed_run_and_two_resumes_keep_the_whole_run_in_curves_and_visualdl(tmp_path, capsys, monkeypatch):
    import matplotlib.pyplot as plt

    path, out = write_tiny_config(tmp_path), str(tmp_path / "run")
    kw = dict(seed=4, save_interval=3, keep_k=5, log_iters=1, do_eval=True, use_vdl=True)
    r = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_ITER_6, path, out],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == -signal.SIGKILL, f"exit {r.returncode}:\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}"
    runs = [printed(r.stdout)]  # what each run printed; a later run's iterations replace an earlier run's
    # the run had logged to 6 when it was killed; a resume from iter_3 runs 4-6 again, and each must show once
    run_train(load_config(path, iters=6), out, resume_model=os.path.join(out, "iter_3"), **kw)
    runs.append(printed(capsys.readouterr().out))
    vdl = os.path.join(out, "vdl")
    check_ui(vdl, str(tmp_path / "look1"), merged(runs))
    figs = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figs.append(fig))
    run_train(load_config(path, iters=9), out, resume_model=os.path.join(out, "iter_6"), **kw)
    runs.append(printed(capsys.readouterr().out))
    want = merged(runs)
    assert sorted(want["loss"]) == list(range(1, 10)) and sorted(want["mIoU"]) == [3, 6, 9], want
    check_ui(vdl, str(tmp_path / "look2"), want)

    loss_line, miou_ax = figs[-1].axes[0].lines[0], figs[-1].axes[2]
    xs = [int(x) for x in loss_line.get_xdata()]
    assert xs == list(range(1, 10)), f"curves.png plots the loss at iterations {xs}"
    off = [(i, y, want["loss"][i]) for i, y in zip(xs, loss_line.get_ydata()) if abs(y - want["loss"][i]) > 6e-5]
    assert not off, f"curves.png loss (iter, plotted, printed) differ: {off}"
    mx = [int(x) for x in miou_ax.lines[0].get_xdata()]
    assert mx == [3, 6, 9], f"curves.png plots mIoU at {mx}"
    best_state = json.load(open(os.path.join(out, "best_model", "state.json")))
    best, best_iter = best_state["best"]["mIoU"], best_state["best"]["iter"]
    assert best_state["iter"] == best_iter, f"best_model holds iter {best_state['iter']}, records {best_iter}"
    assert abs(best - max(want["mIoU"].values())) < 6e-5, f"best_model {best} vs best printed {want['mIoU']}"
    title = miou_ax.get_title()
    said = " ".join(title.split())  # the title wraps onto three lines
    assert f"best {best:.4f} at iter {best_iter}" in said, f"title {title!r}; best_model: {best:.4f} at {best_iter}"


def test_history_of_a_folder_resumed_before_the_fix(tmp_path):
    """Files of resumes by an earlier version: each resume started an empty file at its resume point. The newest
    file supplies its steps, the older one the steps before them; a file marked as a whole run ends the chain."""
    from visualdl import LogWriter

    folder = str(tmp_path)

    def write(name, steps, value, whole=False):
        w = LogWriter(folder, file_name=name)
        if whole:
            from segmenter.engine.vdl import WHOLE_RUN

            w.add_meta(WHOLE_RUN)
        for s in steps:
            w.add_scalar("Train/loss", value + s, s)
        w.close()

    write("vdlrecords.0000000001.log", range(1, 10), 100.0)  # the first run, logged to 9
    write("vdlrecords.0000000002.log", range(8, 13, 2), 200.0)  # resumed from 7 by the old code, logging every 2
    got = [value_of(r) for r in history(folder, 11)]
    want = [(s, 100.0 + s) for s in range(1, 8)] + [(8, 208.0), (10, 210.0)]  # never the first run's 9 or 11
    assert got == want, f"(step, value) {got}"
    write("vdlrecords.0000000003.log", range(2, 9, 2), 300.0, whole=True)  # a new run (log_iters 2) in the folder
    values = dict(value_of(r) for r in history(folder, 20))
    assert sorted(values) == [2, 4, 6, 8] and min(values.values()) >= 300, f"the older files leaked in: {values}"


def value_of(raw: bytes) -> tuple:
    from visualdl.proto import record_pb2

    rec = record_pb2.Record()
    rec.ParseFromString(raw)
    return int(rec.values[0].id), rec.values[0].value


@pytest.mark.parametrize("cut", [3, 10])
def test_a_log_cut_by_a_kill_keeps_its_complete_records(tmp_path, cut):
    from visualdl import LogWriter

    w = LogWriter(str(tmp_path), file_name="vdlrecords.0000000001.log")
    for s in range(1, 4):
        w.add_scalar("Train/loss", float(s), s)
    w.close()
    path = os.path.join(str(tmp_path), "vdlrecords.0000000001.log")
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-cut])
    steps = [s for _, s, _ in records(path) if s >= 0]
    assert steps == [1, 2], f"a log cut {cut} bytes short gives steps {steps}"
