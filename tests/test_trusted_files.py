"""Every file the engine reads is loaded safely and strictly: payloads never run, mismatched weights are refused,
a resume refuses another run and continues best_model / kept folders; clean stops and the save_dir lock."""

import importlib
import importlib.util
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys

import numpy as np
import paddle
import pytest
from paddleseg.cvlibs import SegBuilder

import segmenter  # noqa: F401
from segmenter.convert.files import UnsafeFileError
from segmenter.convert.matching import WeightsMismatchError
from segmenter.engine.checkpoint import load_checkpoint, run_sections
from segmenter.engine.cli_errors import resume_command, run_cli, user_error_inside
from segmenter.engine.run import load_config, load_model, run_train
from segmenter.engine.safe_load import CheckpointError
from segmenter.engine.stops import SaveDirBusy, TrainingStopped, save_dir_lock
from segmenter.models.weights import load_state_dict_strict
from segmenter.pytorch.config import build_model as build_torch_model
from tests.engine_helpers import write_tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
train_mod = importlib.import_module("segmenter.engine.train")  # the module (segmenter.engine.train is the function)


class Payload:
    """Unpickling this runs `touch marker` (what a crafted checkpoint from a stranger would do)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def write_payload(path: str, marker: str) -> None:
    with open(path, "wb") as f:
        pickle.dump({"backbone.cls_token": Payload(marker)}, f)


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", os.path.join(ROOT, "tools", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cli(name: str, argv: list, capsys) -> tuple:
    """Run tools/<name>.py's main on argv in-process as its __main__ does; returns (exit status, stderr)."""
    tool = load_tool(name)
    old = sys.argv
    sys.argv = [f"tools/{name}.py", *argv]
    try:
        rc = run_cli(tool.main, tool.parse_args(), sys.argv)
    finally:
        sys.argv = old
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trusted")
    cfg_path = write_tiny_config(tmp)
    run_train(load_config(cfg_path), str(tmp / "run"), seed=1, save_interval=2, log_iters=100, keep_k=3)
    return cfg_path, str(tmp / "run")


def evil_copy(src: str, dst: str, which: str, marker: str) -> str:
    shutil.copytree(src, dst)
    if which == "state.pkl":  # a legacy-format folder: no state.json, the state pickle is read instead
        os.remove(os.path.join(dst, "state.json"))
    write_payload(os.path.join(dst, which), marker)
    return dst


@pytest.mark.parametrize("which", ["model.pdparams", "model.pdopt", "state.pkl"])
def test_payload_never_runs_on_resume(trained, tmp_path, capsys, which):
    cfg_path, run = trained
    marker = tmp_path / "RAN"
    ckpt = evil_copy(os.path.join(run, "iter_2"), str(tmp_path / "evil"), which, str(marker))
    rc, err = cli(
        "train",
        ["--config", cfg_path, "--save_dir", str(tmp_path / "out"), "--resume_model", ckpt, "--log_iters", "100"],
        capsys,
    )
    assert not marker.exists(), f"resuming from a crafted {which} ran its payload"
    assert rc == 1 and which in err and "posix.system" in err, f"rc={rc}, stderr: {err[-600:]}"


@pytest.mark.parametrize("name", ["val", "predict"])
def test_payload_never_runs_on_model_path(trained, tmp_path, capsys, name):
    cfg_path, run = trained
    marker = tmp_path / "RAN"
    ckpt = evil_copy(os.path.join(run, "iter_2"), str(tmp_path / "evil"), "model.pdparams", str(marker))
    extra = ["--image_path", ckpt, "--save_dir", str(tmp_path / "pred")] if name == "predict" else []
    rc, err = cli(name, ["--config", cfg_path, "--model_path", ckpt, *extra], capsys)
    assert not marker.exists(), f"tools/{name}.py --model_path ran the payload"
    assert rc == 1 and "model.pdparams" in err and "refusing to unpickle" in err, f"rc={rc}, stderr: {err[-600:]}"


def test_payload_never_runs_on_export_and_pretrained(trained, tmp_path, monkeypatch):
    cfg_path, _ = trained
    marker, evil = tmp_path / "RAN", str(tmp_path / "evil.pdparams")
    write_payload(evil, str(marker))
    monkeypatch.setattr(
        sys,
        "argv",
        ["export.py", "--config", cfg_path, "--weights", evil, "--size", "32", "32", "--save", str(tmp_path / "exp")],
    )
    with pytest.raises(UnsafeFileError, match="evil.pdparams"):
        export = load_tool("export")
        export.main(export.parse_args())
    with pytest.raises(RuntimeError, match="evil.pdparams") as e:  # PaddleSeg's builder wraps the error
        SegBuilder(load_config(cfg_path, opts=[f"model.backbone.pretrained={evil}"])).model
    assert isinstance(user_error_inside(e.value), UnsafeFileError), repr(e.value)
    assert not marker.exists(), "export --weights or backbone.pretrained ran the payload"


def test_payload_through_the_real_cli_exit_status(trained, tmp_path):
    cfg_path, run = trained
    marker = tmp_path / "RAN"
    ckpt = evil_copy(os.path.join(run, "iter_2"), str(tmp_path / "evil"), "model.pdparams", str(marker))
    r = subprocess.run(
        [sys.executable, "tools/val.py", "--config", cfg_path, "--model_path", ckpt],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert not marker.exists(), "tools/val.py ran the payload"
    last = r.stderr.strip().splitlines()[-1]  # paddle prints its own warnings first
    assert r.returncode == 1 and last.startswith("error: ") and "Traceback" not in r.stderr, (
        f"rc={r.returncode}, stderr: {r.stderr[-800:]}"
    )


@pytest.mark.parametrize(
    "opts,expect",
    [
        (
            ["model.backbone.embed_dim=48"],
            r"shape mismatch \(\d+\)[\s\S]*backbone\.cls_token: file \[1, 1, 32\] vs "
            r"model \[1, 1, 48\][\s\S]*backbone\.embed_dim=32",
        ),
        (["model.backbone.depth=3"], r"missing in the file \(\d+\): \['backbone\.blocks\.2\.[\s\S]*backbone\.depth=2"),
        (["model.backbone.depth=1"], r"not in the model \(\d+\): \['backbone\.blocks\.1\.[\s\S]*backbone\.depth=2"),
    ],
)
def test_mismatched_checkpoint_is_refused(trained, opts, expect):
    cfg_path, run = trained
    with pytest.raises(WeightsMismatchError, match=expect):
        load_model(load_config(cfg_path, opts=opts), os.path.join(run, "iter_2"))


def test_mismatched_bare_pdparams_says_what_the_file_holds(trained, tmp_path):
    cfg_path, run = trained
    bare = str(tmp_path / "bare.pdparams")
    shutil.copy(os.path.join(run, "iter_2", "model.pdparams"), bare)
    with pytest.raises(
        WeightsMismatchError, match=r"the weights have backbone\.depth=2 \(read from its shapes\)[\s\S]*--save-config"
    ):
        load_model(load_config(cfg_path, opts=["model.backbone.depth=3"]), bare)


def test_missing_key_is_refused_in_both_frameworks(trained):
    cfg_path, run = trained
    cfg = load_config(cfg_path)
    model = SegBuilder(cfg).model
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    del state["backbone.norm.bias"]
    with pytest.raises(WeightsMismatchError, match=r"missing in the file \(1\): \['backbone\.norm\.bias'\]"):
        load_state_dict_strict(model, state, "paddle state")
    from segmenter.pytorch.weights import load_state_dict_strict as torch_strict

    twin = build_torch_model({"model": cfg.dic["model"]})
    tstate = {k: v.numpy() for k, v in twin.state_dict().items() if k != "decoder.head.bias"}
    with pytest.raises(WeightsMismatchError, match=r"missing in the file \(1\): \['decoder\.head\.bias'\]"):
        torch_strict(twin, tstate, "torch state")


def test_truncated_checkpoint_is_refused(trained, tmp_path):
    cfg_path, run = trained
    ckpt = str(tmp_path / "half")
    shutil.copytree(os.path.join(run, "iter_2"), ckpt)
    path = os.path.join(ckpt, "model.pdparams")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"half/model\.pdparams' is truncated or corrupt"):
        load_model(load_config(cfg_path), ckpt)


def tiny_parts(cfg_path, **opts):
    cfg = load_config(cfg_path, opts=[f"{k}={v}" for k, v in opts.items()] or None)
    b = SegBuilder(cfg)
    return cfg, b.model, b.optimizer, b.lr_scheduler


def test_resume_refuses_another_run_and_allows_harmless_changes(trained, capsys):
    cfg_path, run = trained
    ckpt = os.path.join(run, "iter_4")
    for opts, name in (
        ({"batch_size": 2}, "batch_size"),
        ({"model.backbone.num_heads": 4}, "model"),
        ({"train_dataset.num_samples": 12}, "train_dataset"),
    ):
        cfg, model, opt, sched = tiny_parts(cfg_path, **opts)
        with pytest.raises(CheckpointError, match=rf"another run \({name} differ\)"):
            load_checkpoint(ckpt, model, opt, sched, run=run_sections(cfg.dic, save_interval=2, log_iters=100))
    cfg, model, opt, sched = tiny_parts(cfg_path, iters=20)
    resumed = load_checkpoint(ckpt, model, opt, sched, run=run_sections(cfg.dic, save_interval=5, log_iters=1))
    out = capsys.readouterr().out
    assert resumed.iter == 4 and "iters changed: 6 -> 20" in out and "save_interval changed: 2 -> 5" in out, out


def scripted_evaluate(values):
    """An evaluate() returning the next mIoU of values (the test decides which checkpoint is better)."""
    it = iter(values)

    def fake(model, ds, n, **kw):
        v = next(it)
        return {"mIoU": v, "Acc": v, "Kappa": v, "class_iou": [v] * n}

    return fake


def test_best_model_is_replaced_only_by_a_better_model(tmp_path, monkeypatch):
    cfg_path = write_tiny_config(tmp_path)
    out = str(tmp_path / "run")
    monkeypatch.setattr(train_mod, "evaluate", scripted_evaluate([0.5, 0.9]))
    run_train(load_config(cfg_path, iters=2), out, seed=1, save_interval=1, log_iters=100, do_eval=True, keep_k=2)
    best_before = paddle.load(os.path.join(out, "best_model", "model.pdparams"))
    monkeypatch.setattr(train_mod, "evaluate", scripted_evaluate([0.6, 0.7]))
    run_train(
        load_config(cfg_path, iters=4),
        out,
        seed=1,
        save_interval=1,
        log_iters=100,
        do_eval=True,
        keep_k=2,
        resume_model=os.path.join(out, "iter_2"),
    )
    with open(os.path.join(out, "best_model", "state.json")) as f:
        best = json.load(f)["best"]
    after = paddle.load(os.path.join(out, "best_model", "model.pdparams"))
    d = max(float(np.abs(best_before[k].numpy() - after[k].numpy()).max()) for k in after)
    assert best == {"mIoU": 0.9, "iter": 2} and d == 0.0, f"best_model after resume: {best}, max|diff|={d}"
    folders = sorted(f for f in os.listdir(out) if f.startswith("iter_"))
    assert folders == ["iter_3", "iter_4"], f"keep_checkpoint_max 2 after resume left {folders}"


def test_sigterm_finishes_the_iteration_and_saves(tmp_path):
    cfg_path = write_tiny_config(tmp_path)
    b = SegBuilder(load_config(cfg_path))
    from segmenter.engine.losses import SegmenterCrossEntropyLoss

    ce, calls = SegmenterCrossEntropyLoss(), []

    def loss_fn(logits, label):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return ce(logits, label)

    out = str(tmp_path / "run")
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingStopped, match=r"SIGTERM after iter 3[\s\S]*--resume_model .*iter_3") as e:
        train_mod.train(
            b.model, b.train_dataset, b.optimizer, b.lr_scheduler, loss_fn, 6, 4, out, save_interval=100, log_iters=100
        )
    assert len(calls) == 3 and signal.getsignal(signal.SIGTERM) is before, f"{len(calls)} steps ran"
    b2 = SegBuilder(load_config(cfg_path))
    assert load_checkpoint(e.value.checkpoint, b2.model, b2.optimizer, b2.lr_scheduler).iter == 3
    cmd = resume_command(["tools/train.py", "--config", "c.yml", "--resume_model", "old"], e.value.checkpoint)
    assert cmd == f"python tools/train.py --config c.yml --resume_model {e.value.checkpoint}", cmd


def test_sigint_through_the_cli(tmp_path):
    cfg_path = write_tiny_config(tmp_path)
    out = str(tmp_path / "run")
    p = subprocess.Popen(
        [
            sys.executable,
            "tools/train.py",
            "--config",
            cfg_path,
            "--save_dir",
            out,
            "--iters",
            "100000",
            "--log_iters",
            "1",
            "--save_interval",
            "100000",
        ],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in p.stdout:
        if line.startswith("[TRAIN] iter 2/"):
            break
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "resume: python tools/train.py" in err, f"rc={p.returncode}: {err[-800:]}"
    ckpt = err.strip().split("--resume_model ")[-1]
    b = SegBuilder(load_config(cfg_path))
    it = load_checkpoint(ckpt, b.model, b.optimizer, b.lr_scheduler).iter
    assert ckpt == os.path.join(out, f"iter_{it}") and it >= 2, f"{ckpt}: iter {it}"


def test_second_training_on_a_save_dir_is_refused(tmp_path):
    cfg_path = write_tiny_config(tmp_path)
    out = str(tmp_path / "run")
    os.makedirs(out)
    with open(os.path.join(out, ".train.lock"), "w") as f:
        f.write("999999")  # a crashed run's file: not locked, so it must not block
    with save_dir_lock(out):
        with pytest.raises(SaveDirBusy, match=rf"save_dir {out} is in use by another training \(pid {os.getpid()}\)"):
            run_train(load_config(cfg_path, iters=1), out, log_iters=100)
    run_train(load_config(cfg_path, iters=1), out, log_iters=100)
    assert sorted(os.listdir(out)) == ["config.yml", "curves.png", "iter_1"], os.listdir(out)


def test_convert_builds_the_model_the_checkpoint_was_trained_as(trained, tmp_path):
    """The tiny model has 2 heads and eps 1e-6, which its weights cannot show (width // 64 would say 0 heads):
    the converter reads them from state.json, so the written config evaluates to the same mIoU."""
    from segmenter.convert import convert
    from segmenter.engine.evaluate import evaluate

    cfg_path, run = trained
    src, dst, written = (
        os.path.join(run, "iter_2", "model.pdparams"),
        str(tmp_path / "out.pdparams"),
        str(tmp_path / "written.yml"),
    )
    convert(src, dst, save_config=written, base_config=cfg_path)
    bb = load_config(written).dic["model"]["backbone"]
    assert (bb["num_heads"], bb["norm_eps"], bb["pos_embed_interp"]) == (2, 1e-6, "bilinear"), f"written: {bb}"
    cfg = load_config(cfg_path)
    before = evaluate(
        load_model(cfg, os.path.join(run, "iter_2")),
        SegBuilder(cfg).val_dataset,
        4,
        is_slide=True,
        crop_size=[32, 32],
        stride=[16, 16],
    )["mIoU"]
    model = SegBuilder(load_config(written)).model  # model.pretrained = dst, loaded strictly at build
    model.eval()
    after = evaluate(model, SegBuilder(cfg).val_dataset, 4, is_slide=True, crop_size=[32, 32], stride=[16, 16])["mIoU"]
    assert before == after, f"mIoU {before:.6f} before conversion, {after:.6f} with the written config"
    # the converted file carries the architecture too (dst.model.json): converted again, away from the
    # checkpoint folder and its state.json, it still writes the same model and nothing is assumed
    import warnings

    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for f in ("out.pdparams", "out.pdparams.model.json"):
        shutil.copy(tmp_path / f, moved / f)
    again = str(tmp_path / "again.yml")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the "values are assumed" warning would fail here
        convert(str(moved / "out.pdparams"), str(tmp_path / "again.pth"), save_config=again, base_config=cfg_path)
    bb2 = load_config(again).dic["model"]["backbone"]
    assert (bb2["num_heads"], bb2["norm_eps"], bb2["pos_embed_interp"]) == (2, 1e-6, "bilinear"), f"again: {bb2}"
    assert os.path.isfile(tmp_path / "again.pth.model.json"), os.listdir(tmp_path)


def test_a_format_1_checkpoint_still_loads(trained, tmp_path):
    """Folders written before state.json (state.pkl of tuples, dicts and arrays) load through the safe unpickler."""
    import random

    cfg_path, run = trained
    old = str(tmp_path / "old")
    shutil.copytree(os.path.join(run, "iter_2"), old)
    os.remove(os.path.join(old, "state.json"))
    state = {
        "iter": 2,
        "scheduler": {"last_epoch": 2, "last_lr": 0.0009},
        "py_rng": random.getstate(),
        "np_rng": np.random.get_state(),
        "scaler": None,
        "extra": {"mIoU": 0.25},
    }
    with open(os.path.join(old, "state.pkl"), "wb") as f:
        pickle.dump(state, f)
    _, model, opt, sched = tiny_parts(cfg_path)
    resumed = load_checkpoint(old, model, opt, sched)
    assert (resumed.iter, resumed.best, sched.last_epoch) == (2, {"mIoU": 0.25}, 2), (
        f"{resumed}, scheduler last_epoch {sched.last_epoch}"
    )


def test_convert_of_a_bare_pdparams_says_what_it_assumed(trained, tmp_path):
    from segmenter.convert import convert

    _, run = trained
    bare = str(tmp_path / "model.pdparams")
    shutil.copy(os.path.join(run, "iter_2", "model.pdparams"), bare)
    import yaml

    data_only = tmp_path / "data.yml"  # the training config's dataset, without its model section
    data_only.write_text(yaml.safe_dump({"train_dataset": yaml.safe_load(open(trained[0]))["train_dataset"]}))
    with pytest.warns(
        UserWarning,
        match=r"neither a \.model\.json nor a state\.json beside it, and no base config "
        r"model section of these weights' shapes states \['num_heads', 'norm_eps', "
        r"'pos_embed_interp'\], so they are assumed.*--num-heads",
    ):
        convert(bare, str(tmp_path / "out.pdparams"), save_config=str(tmp_path / "out.yml"), base_config=str(data_only))
