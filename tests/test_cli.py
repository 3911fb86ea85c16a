"""Every tool in tools/*.py as a user meets it, as a real subprocess: the same weights accepted everywhere, a user's
mistake is one `error:` line naming the culprit and never a traceback, --help describes every option with its
default, PaddleSeg's habitual flags are accepted or refused in one line, the default output is a few lines a person
reads (the resolved config goes to save_dir/config.yml or behind --verbose), progress is a bar on a terminal and
lines in a pipe, and predict.py never reads its own --save_dir."""

import argparse
import os
import pty
import re
import runpy
import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml
from PIL import Image

from segmenter.datasets import SegmenterShapes
from segmenter.engine.run import load_config, run_train
from tests.engine_helpers import write_tiny_config
from tests.helpers import tiered, tool_exit_code

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "tools")) if f.endswith(".py"))
CUDA = paddle.device.is_compiled_with_cuda()


def run(tool: str, *args: str, cwd: str = ROOT, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", f"{tool}.py"), *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
    )


def ok(r: subprocess.CompletedProcess, what: str) -> str:
    assert r.returncode == 0, f"{what} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(tmp folder, config, run folder with iter_3, iter_6, best_model, an image) of a tiny training."""
    tmp = tmp_path_factory.mktemp("cli")
    cfg = write_tiny_config(tmp)
    run_train(load_config(cfg), str(tmp / "run"), seed=1, save_interval=3, log_iters=100, do_eval=True)
    Image.fromarray(SegmenterShapes(1, 40, seed=9, mode="val").sample(0)[0]).save(tmp / "img.png")
    (tmp / "inherits.yml").write_text(INHERITS.format(base=QUICKSTART, tmp=tmp))
    return {"tmp": str(tmp), "cfg": cfg, "run": str(tmp / "run"), "img": str(tmp / "img.png"), "base": QUICKSTART}


QUICKSTART = os.path.join(ROOT, "configs", "quickstart", "segmenter_tiny_shapes_64.yml")
# a user's own data on top of the quickstart config, without `_inherited_: False`: PaddleSeg merges the
# quickstart's SegmenterShapes keys (num_samples, img_size, seed) into these Dataset sections
INHERITS = """_base_: {base}
train_dataset: {{type: Dataset, dataset_root: {tmp}, train_path: {tmp}/list.txt, num_classes: 4, mode: train,
                transforms: [{{type: Normalize}}]}}
val_dataset: {{type: Dataset, dataset_root: {tmp}, val_path: {tmp}/list.txt, num_classes: 4, mode: val,
              transforms: [{{type: Normalize}}]}}
"""


# (tool, argv, the culprit the error line must name); {tmp} {cfg} {run} {img} are filled from `trained`
NOPE = "{tmp}/nope.yml"
MISTAKES = (
    [
        ("train", ["--config", NOPE], "nope.yml"),
        ("val", ["--config", NOPE, "--model_path", "{run}/best_model"], "nope.yml"),
        ("predict", ["--config", NOPE, "--model_path", "{run}/best_model", "--image_path", "{img}"], "nope.yml"),
        ("export", ["--config", NOPE, "--save", "{tmp}/e"], "nope.yml"),
        ("attention", ["--config", NOPE, "--image", "{img}"], "nope.yml"),
        ("benchmark", ["forward", "--config", NOPE], "nope.yml"),
        ("parity", ["--config", NOPE], "nope.yml"),
        ("val", ["--config", "{cfg}", "--model_path", "{tmp}/gone"], "{tmp}/gone"),
        ("predict", ["--config", "{cfg}", "--model_path", "{tmp}/gone", "--image_path", "{img}"], "{tmp}/gone"),
        ("export", ["--config", "{cfg}", "--weights", "{tmp}/gone", "--save", "{tmp}/e"], "{tmp}/gone"),
        ("attention", ["--config", "{cfg}", "--model_path", "{tmp}/gone", "--image", "{img}"], "{tmp}/gone"),
        ("convert", ["{tmp}/gone", "{tmp}/o.pdparams"], "{tmp}/gone"),
        ("parity", ["--config", "{cfg}", "--weights", "{tmp}/gone"], "{tmp}/gone"),
        # a folder without weights: the save_dir itself instead of save_dir/best_model
        ("val", ["--config", "{cfg}", "--model_path", "{run}"], "{run}/best_model"),
        ("predict", ["--config", "{cfg}", "--model_path", "{run}", "--image_path", "{img}"], "{run}/best_model"),
        ("export", ["--config", "{cfg}", "--weights", "{run}", "--save", "{tmp}/e"], "{run}/best_model"),
        ("attention", ["--config", "{cfg}", "--model_path", "{run}", "--image", "{img}"], "{run}/best_model"),
        ("convert", ["{run}", "{tmp}/o.pdparams"], "{run}/best_model"),
        ("parity", ["--config", "{cfg}", "--weights", "{run}"], "{run}/best_model"),
        # a folder for --config: its YAML files, else the nearest shipped configs
        (
            "val",
            ["--config", "{run}", "--model_path", "{run}/best_model"],
            "config {run} is a folder, not a YAML file; pass the YAML in it: --config {run}/config.yml",
        ),
        ("train", ["--config", "{tmp}"], "config {tmp} is a folder, not a YAML file; pass one of its"),
        ("attention", ["--config", "{run}", "--image", "{img}", "--framework", "torch"], "config {run} is a folder"),
        ("parity", ["--config", "{run}/iter_3"], "config {run}/iter_3 is a folder holding no YAML file"),
        (
            "export",
            ["--config", "configs/segmenter/segmenter_vit_small_linear_ade20k.yml", "--save", "{tmp}/e"],
            "did you mean "
            + os.path.join(ROOT, "configs/segmenter/segmenter_vit_small_linear_ade20k_512x512_160k.yml"),
        ),
        # keys inherited from a _base_ the user never wrote: the base file and PaddleSeg's `_inherited_: False`
        (
            "train",
            ["--config", "{tmp}/inherits.yml"],
            "train_dataset.num_samples is not an argument of Dataset, and {tmp}/inherits.yml does not state it: it "
            "comes from {base}, a _base_ of it, whose train_dataset PaddleSeg merges into yours; add `_inherited_: "
            "False` to train_dataset in {tmp}/inherits.yml",
        ),
        (
            "val",
            ["--config", "{tmp}/inherits.yml", "--model_path", "{run}/best_model"],
            "comes from {base}, a _base_ of it",
        ),
        # a save_dir for --resume_model: its newest checkpoint, as val names best_model
        (
            "train",
            ["--config", "{cfg}", "--resume_model", "{run}"],
            "--resume_model {run} is a training's save_dir, not a checkpoint; resume from its newest checkpoint: "
            "--resume_model {run}/iter_6",
        ),
        # weights of another architecture: the keys and shapes that differ, on the error line
        (
            "val",
            ["--config", "{cfg}", "--model_path", "{run}/best_model", "--opts", "model.backbone.embed_dim=64"],
            "shape mismatch (31): ['backbone.cls_token: file [1, 1, 32] vs model [1, 1, 64]'",
        ),
        # bad values
        ("train", ["--config", "{cfg}", "--iters", "ten"], "--iters"),
        # counts below 1 (--iters -3 reached the resume check as "None is at iteration 0, past --iters -3"; --iters 0
        # and --batch_size 0 fell back to the config's values without a word)
        (
            "train",
            ["--config", "{cfg}", "--iters", "-3"],
            "argument --iters: takes a whole number of at least 1, got -3",
        ),
        ("train", ["--config", "{cfg}", "--iters", "0"], "argument --iters: takes a whole number of at least 1, got 0"),
        (
            "train",
            ["--config", "{cfg}", "--batch_size", "0"],
            "argument --batch_size: takes a whole number of at least 1",
        ),
        ("train", ["--config", "{cfg}", "--opts", "iters=-3"], "iters is -3; set iters: N (N >= 1)"),
        # a training set smaller than a batch: the size that fits
        (
            "train",
            ["--config", "{cfg}", "--batch_size", "1000", "--save_dir", "{tmp}/b"],
            "too few for a batch of 1000: pass --batch_size",
        ),
        # a resume past the schedule's end (it used to "finish" and name an older iter_N as the last checkpoint)
        (
            "train",
            ["--config", "{cfg}", "--iters", "3", "--save_dir", "{tmp}/r3", "--resume_model", "{run}/iter_6"],
            "{run}/iter_6 is at iteration 6, past --iters 3",
        ),
        ("val", ["--config", "{cfg}", "--model_path", "{run}/best_model", "--crop_size", "32"], "--crop_size"),
        ("export", ["--config", "{cfg}", "--save", "{tmp}/e", "--format", "tflite"], "--format"),
        ("export", ["--config", "{cfg}", "--save", "{tmp}/e", "--format", "onnx"], "--save {tmp}/e"),
        (
            "export",
            ["--config", "{cfg}", "--save", "{tmp}/e", "--size", "32", "48", "--input_shape", "1", "3", "32", "48"],
            "--size 32 48 (W H) and --input_shape 1 3 32 48 (N C H W) disagree",
        ),
        (
            "predict",
            ["--config", "{cfg}", "--model_path", "{run}/best_model", "--image_path", "{tmp}/none"],
            "{tmp}/none",
        ),
        (
            "predict",
            ["--config", "{cfg}", "--model_path", "{run}/best_model", "--image_path", "{run}", "--save_dir", "{tmp}"],
            "--image_path {run}",
        ),
        ("attention", ["--config", "{cfg}", "--image", "{tmp}/no.jpg"], "{tmp}/no.jpg"),
        ("convert", ["{run}/best_model", "{tmp}/o.xyz"], "o.xyz"),
        ("benchmark", ["nosuchtopic"], "nosuchtopic"),
        ("benchmark", ["profile", "--model", "vit_x"], "--model"),
        # PaddleSeg's flags this package does not implement
        ("train", ["--config", "{cfg}", "--profiler_options", "batch_range=[1,3]"], "--profiler_options"),
        ("train", ["--config", "{cfg}", "--data_format", "NHWC"], "--data_format"),
        ("train", ["--config", "{cfg}", "--amp_level", "O2"], "--amp_level"),
        ("train", ["--config", "{cfg}", "--repeats", "2"], "--repeats"),
        ("val", ["--config", "{cfg}", "--model_path", "{run}/best_model", "--flip_vertical"], "--flip_vertical"),
        ("val", ["--config", "{cfg}", "--model_path", "{run}/best_model", "--num_workers", "2"], "--num_workers"),
        ("val", ["--config", "{cfg}", "--model_path", "{run}/best_model", "--precision", "fp16"], "--precision"),
        (
            "predict",
            [
                "--config",
                "{cfg}",
                "--model_path",
                "{run}/best_model",
                "--image_path",
                "{img}",
                "--custom_color",
                "1",
                "2",
                "3",
            ],
            "--custom_color",
        ),
    ]
    + [(t, ["--bogus_flag"], "--bogus_flag") for t in TOOLS]
    + [("train", ["--confg", "{cfg}"], "--config")]
    + [("demo", ["--config", "{run}", "--weights", "none"], "config {run} is a folder")]
    # --opts as PaddleSeg takes it: key=value with the key's full path (PaddleSeg itself asserts, with a traceback)
    + [
        ("val", ["--config", "{cfg}", "--model_path", "{run}/best_model", "--opts", "model.backbone.depth"], "--opts"),
        ("train", ["--config", "{cfg}", "--opts", "backbone.depth=1"], "did you mean model.backbone?"),
        # a value of the wrong type (PaddleSeg failed deep in a builder or the data loader, 26-49 lines)
        (
            "train",
            ["--config", "{cfg}", "--opts", "model.backbone.depth=two"],
            "model.backbone.depth takes an integer (SegmenterViT's depth; the config has 2), got the text 'two'",
        ),
        (
            "train",
            ["--config", "{cfg}", "--opts", "batch_size=abc"],
            "--opts batch_size=abc: batch_size takes an integer (the config has 4), got the text 'abc'",
        ),
        (
            "val",
            ["--config", "{cfg}", "--model_path", "{run}/best_model", "--opts", "model.backbone.depth=[1,2"],
            "--opts model.backbone.depth=[1,2: model.backbone.depth takes an integer",
        ),
        (
            "val",
            ["--config", "{cfg}", "--model_path", "{run}/best_model", "--opts", "model.num_classes=5"],
            "model.num_classes is 5 but train_dataset SegmenterShapes has 4 classes; set model.num_classes: 4",
        ),
        (
            "predict",
            ["--config", "{cfg}", "--model_path", "{run}/best_model", "--image_path", "{img}", "--opts", "iters=1e3"],
            "--opts iters=1e3: iters takes an integer (the config has 6), got 1000.0",
        ),
        (
            "export",
            ["--config", "{cfg}", "--save", "{tmp}/e", "--opts", "test_config.crop_size=[32,a]"],
            "--opts test_config.crop_size=[32,a]: test_config.crop_size takes a list of integers",
        ),
    ]
    + (
        []
        if CUDA
        else [
            ("train", ["--config", "{cfg}", "--device", "gpu"], "--device gpu"),
            ("val", ["--config", "{cfg}", "--model_path", "{run}/best_model", "--device", "gpu"], "--device gpu"),
        ]
    )
)


OPTS_TYPES = [
    # the type from the component's signature where the config does not state the key
    (
        "model.backbone.layer_scale_init=big",
        "model.backbone.layer_scale_init takes a number or null (SegmenterViT's layer_scale_init), got the text 'big'",
    ),
    ("model.backbone.stem_layers=[1,x]", "takes a list of integers or null (SegmenterViT's stem_layers)"),
    ("test_config.is_slide=maybe", "test_config.is_slide takes True or False (the config has True)"),
    ("model.backbone.qkv_bias=1", "takes True or False (SegmenterViT's qkv_bias; the config has True), got 1"),
    # read the way the key means it: a YAML bool, a name that looks like a number, a float for a float
    ("test_config.is_slide=false", False),
    ("model.backbone.pretrained=2024", "2024"),
    ("model.backbone.mlp_ratio=2.5", 2.5),
    ("test_config.crop_size=[24,40]", [24, 40]),
]


@pytest.mark.parametrize("opt,want", OPTS_TYPES, ids=[o for o, _ in OPTS_TYPES])
def test_opts_values_are_checked_against_the_type_of_their_key(tmp_path, opt, want):
    from segmenter.engine.config_check import ConfigError

    cfg = write_tiny_config(tmp_path)
    if isinstance(want, str) and " " in want:
        with pytest.raises(ConfigError) as e:
            load_config(cfg, [opt])
        assert want in str(e.value) and f"--opts {opt}:" in str(e.value), f"--opts {opt}: {e.value}"
        return
    node = load_config(cfg, [opt]).dic
    for part in opt.split("=")[0].split("."):
        node = node[part]
    assert node == want and type(node) is type(want), f"--opts {opt} gave {node!r}, want {want!r}"


def test_inherited_keys_are_traced_to_their_base_file(tmp_path):
    """As PaddleSeg merges `_base_` files: a file's own keys win, an earlier base wins over a later one, and
    `_inherited_: False` stops a section's merge; a section whose types differ names where each type came from."""
    from segmenter.engine.config_check import ConfigError, checker_error, inherited_from

    (tmp_path / "a.yml").write_text("train_dataset: {type: A, x: 1, y: 1}\nval_dataset: {type: A, z: 1}\n")
    (tmp_path / "b.yml").write_text("train_dataset: {type: B, x: 2, w: 2}\nval_dataset: {type: B, q: 2}\n")
    (tmp_path / "c.yml").write_text(
        "_base_: [a.yml, b.yml]\ntrain_dataset: {type: C, y: 3}\nval_dataset: {_inherited_: False, type: C}\n"
    )
    c, a, b = (str(tmp_path / f"{n}.yml") for n in "cab")
    got = {k: inherited_from(c, k) for k in ("train_dataset.y", "train_dataset.x", "train_dataset.w")}
    want = {"train_dataset.y": None, "train_dataset.x": a, "train_dataset.w": b}
    assert got == want, f"origins {got}, want {want}"
    # _inherited_: False keeps a.yml's section out; PaddleSeg 2.8 still merges the second base's (b.yml) into it
    assert inherited_from(c, "val_dataset.z") is None and inherited_from(c, "val_dataset.q") == b
    # against PaddleSeg's own merge: each value it ends with is the one the named file states (files differ in all)
    from paddleseg.cvlibs.config import parse_from_yaml

    merged = parse_from_yaml(c)
    for section, keys in merged.items():
        for k, v in keys.items():
            stated = yaml.safe_load(open(inherited_from(c, f"{section}.{k}") or c))[section][k]
            assert stated == v, f"{section}.{k}: PaddleSeg has {v!r}, the file named states {stated!r}"
    e = checker_error(
        c,
        {"train_dataset": {"type": "C"}, "val_dataset": {"type": "A"}},
        RuntimeError(
            "Sanity check failed.\nThe failed rule is R, and the error message is: \nThe type of "
            "train_dataset and val_dataset must be the same"
        ),
    )
    assert isinstance(e, ConfigError) and "\n" not in str(e), e
    assert f"train_dataset.type C (from {c})" in str(e) and "val_dataset.type A (from" in str(e), e


def test_resume_from_a_save_dir_names_the_newest_checkpoint_by_number(tmp_path):
    from segmenter.engine.cli import resume_folder

    for n in (2, 9, 10):
        (tmp_path / f"iter_{n}").mkdir()
    (tmp_path / "best_model").mkdir()
    with pytest.raises(FileNotFoundError) as e:
        resume_folder(str(tmp_path))
    assert str(e.value).endswith(f"--resume_model {tmp_path / 'iter_10'}"), e.value
    assert resume_folder(str(tmp_path / "iter_9")) == str(tmp_path / "iter_9")  # a checkpoint passes through


@pytest.mark.parametrize("bare", [False, True], ids=["checkpoint", "bare file"])
def test_mismatched_weights_are_three_lines_naming_what_differs(trained, tmp_path, bare):
    """docs/errors.md row 9: the keys that differ (the first few with their shapes, a missing block as one entry),
    where the weights' architecture and the config's differ, and what to pass; never more than 3 lines."""
    import shutil

    from segmenter.convert.matching import WeightsMismatchError
    from segmenter.engine.run import load_model

    path = os.path.join(trained["run"], "best_model")
    if bare:  # no state.json beside it: the architecture is read from the shapes
        shutil.copy(os.path.join(path, "model.pdparams"), tmp_path / "bare.pdparams")
        path = str(tmp_path / "bare.pdparams")
    fix = "python tools/convert.py" if bare else f"--config {os.path.join(trained['run'], 'config.yml')}"
    for opt, keys, arch in (
        (
            "model.backbone.embed_dim=64",
            "shape mismatch (31): ['backbone.cls_token: file [1, 1, 32] vs model [1, 1, 64]'",
            "backbone.embed_dim=32",
        ),
        ("model.backbone.depth=3", "missing in the file (12): ['backbone.blocks.2.*']", "backbone.depth=2"),
    ):
        with pytest.raises(WeightsMismatchError) as e:
            load_model(load_config(trained["cfg"], [opt]), path)
        lines = str(e.value).splitlines()
        assert len(lines) <= 3 and keys in lines[0] and arch in lines[1] and fix in lines[-1], (
            f"--opts {opt}, {path}: {len(lines)} lines:\n{e.value}"
        )


def test_inference_page_documents_every_prediction_field():
    """docs/inference.md names each field of the Inferencer's result (`out.path` was missing)."""
    import dataclasses

    from segmenter.inference import Prediction

    page = open(os.path.join(ROOT, "docs", "inference.md"), encoding="utf-8").read()
    missing = [f.name for f in dataclasses.fields(Prediction) if f"`out.{f.name}`" not in page]
    assert not missing, f"docs/inference.md does not document Prediction fields {missing}"


def fill(s: str, t: dict) -> str:
    return s.format(**t)


def run_here(tool: str, args: list, cwd: str, capsys, monkeypatch) -> subprocess.CompletedProcess:
    """tools/<tool>.py run in this process as its command line would (its exit status from SystemExit; an exception
    escaping the tool is printed as the traceback a process would print): a process start costs ~4 s of imports."""
    import traceback

    monkeypatch.chdir(cwd)
    capsys.readouterr()
    try:
        code = tool_exit_code(f"{tool}.py", args)
    except Exception:  # noqa: BLE001 (what a process would print before dying)
        print(traceback.format_exc(), file=sys.stderr)
        code = 1
    cap = capsys.readouterr()
    return subprocess.CompletedProcess([tool, *args], code, cap.out, cap.err)


# Each tool's first mistake runs as its own process (the real command line); the rest in the test process.
FIRST_OF_TOOL = {i for i, (t, _, _) in enumerate(MISTAKES) if t not in [m[0] for m in MISTAKES[:i]]}


@pytest.mark.slow  # ~60 tool runs: 12 processes (3-10 s each), the rest in-process
@pytest.mark.parametrize(
    "tool,argv,culprit,here",
    [(t, a, c, i not in FIRST_OF_TOOL) for i, (t, a, c) in enumerate(MISTAKES)],
    ids=[f"{t}:{' '.join(a[-2:])}" for t, a, _ in MISTAKES],
)
def test_a_user_mistake_is_one_error_line_never_a_traceback(trained, tool, argv, culprit, here, capsys, monkeypatch):
    args = [fill(a, trained) for a in argv]
    if here:
        r = run_here(tool, args, trained["tmp"], capsys, monkeypatch)
    else:
        r = run(tool, *args, cwd=trained["tmp"])
    out = r.stdout + r.stderr
    errors = [line for line in out.splitlines() if "error:" in line]
    assert r.returncode != 0, f"tools/{tool}.py {argv} exited 0:\n{out[-2000:]}"
    assert "Traceback" not in out, f"tools/{tool}.py {argv} ended in a traceback:\n{out[-3000:]}"
    assert len(errors) == 1 and fill(culprit, trained) in errors[0], (
        f"tools/{tool}.py {argv}: want one error: line naming {fill(culprit, trained)!r}, got:\n{out[-2000:]}"
    )
    assert "unrecognized arguments" not in out, out


WEIGHTS_TOOLS = [
    ("val", ["--config", "{cfg}", "--model_path", "{w}"]),
    ("predict", ["--config", "{cfg}", "--model_path", "{w}", "--image_path", "{img}", "--save_dir", "{tmp}/p"]),
    ("export", ["--config", "{cfg}", "--weights", "{w}", "--size", "32", "32", "--save", "{tmp}/exp/m"]),
    ("attention", ["--config", "{cfg}", "--model_path", "{w}", "--image", "{img}", "--save", "{tmp}/a.png"]),
    ("convert", ["{w}", "{tmp}/c.pdparams"]),
    ("parity", ["--config", "{cfg}", "--weights", "{w}", "--size", "32", "32"]),
]


@pytest.mark.parametrize(
    "tool,argv",
    tiered(WEIGHTS_TOOLS, [w for w in WEIGHTS_TOOLS if w[0] in ("val", "predict", "convert")]),
    ids=[t for t, _ in WEIGHTS_TOOLS],
)
def test_every_tool_takes_a_checkpoint_folder(trained, tool, argv):
    w = os.path.join(trained["run"], "best_model")
    ok(run(tool, *[a.format(w=w, **trained) for a in argv], cwd=trained["tmp"]), f"tools/{tool}.py with {w}")


@pytest.mark.slow  # two tool runs
def test_augmentation_options_without_aug_eval_say_they_do_nothing(trained):
    """PaddleSeg reads --flip_horizontal and --scales only with --aug_eval; alone they used to be dropped in silence."""
    args = ["--config", trained["cfg"], "--model_path", os.path.join(trained["run"], "best_model")]
    r = run("val", *args, "--flip_horizontal", "--scales", "0.75", "1.0", cwd=trained["tmp"])
    ok(r, "val.py --flip_horizontal --scales")
    assert "--flip_horizontal and --scales take effect only with --aug_eval" in r.stderr, r.stderr
    assert "+ flip" not in r.stdout, r.stdout
    r = run("val", *args, "--aug_eval", "--flip_horizontal", cwd=trained["tmp"])
    ok(r, "val.py --aug_eval --flip_horizontal")
    assert "take effect only" not in r.stderr and "+ flip" in r.stdout, (r.stdout, r.stderr)


@pytest.mark.parametrize("framework", tiered(["paddle", "torch"], ["paddle"]))
def test_both_inferencers_take_a_checkpoint_folder_and_print_nothing(trained, framework):
    """...in a fresh interpreter, where a plain `import segmenter` (no front door deferring it) has registered every
    component with PaddleSeg's managers (segmenter/__init__.py)."""
    module = "segmenter.pytorch.inference" if framework == "torch" else "segmenter.inference"
    code = (
        "import segmenter\n"
        "from paddleseg.cvlibs import manager as m\n"
        "want = {'MODELS': 'Segmenter', 'BACKBONES': 'SegmenterViT', 'DATASETS': 'SegmenterShapes',\n"
        "        'LOSSES': 'SegmenterCrossEntropyLoss'}\n"
        "missing = [f'{k}.{v}' for k, v in want.items() if v not in getattr(m, k).components_dict]\n"
        "assert not missing, f'import segmenter left unregistered: {missing}'\n"
        f"from {module} import Inferencer\n"
        f"seg = Inferencer({trained['cfg']!r}, {os.path.join(trained['run'], 'best_model')!r})\n"
        f"seg({trained['img']!r})\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=trained["tmp"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1"),
        timeout=300,
    )
    assert r.returncode == 0 and r.stdout + r.stderr == "", f"rc {r.returncode}, printed:\n{r.stdout}{r.stderr}"


@pytest.mark.slow  # export twice, parity, attention twice, convert: ~10 s
def test_image_sizes_are_width_then_height_on_every_tool(trained, tmp_path, capsys, monkeypatch):
    """PaddleSeg's order (crop_size, stride, Resize's target_size are [w, h]) for every size and point a tool takes:
    export's --size W H and PaddleSeg's --input_shape N C H W give the same graph, parity's random input, attention's
    --pixel X Y, convert's --img-size W H; a size whose transpose is the training size gets a note, used as given."""
    from segmenter import deploy
    from tests.helpers import tiny_segmenter

    t, w = trained, os.path.join(trained["run"], "best_model")
    monkeypatch.chdir(t["tmp"])
    for flags, prefix in ((["--size", "48", "32"], "wh"), (["--input_shape", "1", "3", "32", "48"], "nchw")):
        argv = ["--config", t["cfg"], "--weights", w, *flags, "--save", str(tmp_path / prefix / "m")]
        assert tool_exit_code("export.py", argv) == 0, f"export {flags}: {capsys.readouterr().err[-2000:]}"
        out = deploy.create_predictor(str(tmp_path / prefix / "m"), num_threads=1)(np.zeros((1, 3, 32, 48), "f4"))
        assert list(out[0].shape) == [1, 4, 32, 48], f"export {flags}: logits {list(out[0].shape)} for a 48x32 input"
    assert "input: width 48, height 32, batch 1" in capsys.readouterr().out
    assert tool_exit_code("parity.py", ["--config", t["cfg"], "--weights", w, "--size", "48", "32"]) == 0
    assert "input [1, 3, 32, 48]" in capsys.readouterr().out
    # the tiny config slides 32 px windows (stride 16) over the 40 px image; patch 8: x 5, y 30 is row 3, column 0
    argv = ["--config", t["cfg"], "--model_path", w, "--image", t["img"], "--pixel", "5", "30", "--save", "a.png"]
    assert tool_exit_code("attention.py", argv) == 0
    assert "(patch row 3 column 0, window x=0 y=0 32x32)" in capsys.readouterr().out
    assert tool_exit_code("attention.py", [*argv[:-5], "--pixel", "45", "3", "--save", "a.png"]) == 1
    assert "--pixel 45 3 (x y) is outside the image the model sees, 40 wide and 40 high" in capsys.readouterr().err
    # a file trained 16 high and 32 wide (a non-square grid the converter cannot guess) converted with --img-size W H
    model = tiny_segmenter(num_classes=4, img_size=[16, 32], patch_size=8)
    paddle.save(model.state_dict(), str(tmp_path / "wide.pdparams"))
    argv = [str(tmp_path / "wide.pdparams"), str(tmp_path / "c.pdparams"), "--img-size", "32", "16"]
    with pytest.warns(UserWarning, match="has neither a .model.json nor a state.json beside it"):  # a bare file
        argv += ["--base-config", t["cfg"], "--save-config", str(tmp_path / "c.yml")]
        code = tool_exit_code("convert.py", argv)
    assert code == 0
    got = yaml.safe_load(open(tmp_path / "c.yml"))["model"]["backbone"]["img_size"]
    assert got == [16, 32], f"--img-size 32 16 wrote backbone.img_size {got}, want [16, 32] ([H, W])"


def test_size_options_read_width_height_and_note_a_transposed_training_size(capsys):
    """The front doors' conversions: W H -> (H, W), X Y -> (y, x), --input_shape N C H W; a size that is the
    training size transposed is used as given, with a note."""
    from segmenter.engine import cli

    assert cli.height_width([48, 32]) == (32, 48) and cli.pixel_yx([5, 30], (40, 48)) == (30, 5)
    assert cli.export_input([48, 32], None, 0) == ((32, 48), 0)
    assert cli.export_input(None, [1, 3, 32, 48], 0) == ((32, 48), 1)
    assert cli.export_input(None, [-1, 3, 32, 48], 0) == ((32, 48), 0)
    for size, shape, want in (([32, 48], [1, 3, 32, 48], "disagree"), (None, [1, 4, 32, 48], "C is 4")):
        with pytest.raises(ValueError, match=want):
            cli.export_input(size, shape, 0)
    capsys.readouterr()
    assert cli.height_width([64, 32], {"backbone": {"img_size": [64, 32]}}) == (32, 64)  # used as given
    note = capsys.readouterr().err
    assert "note: --size 64 32 is width 64, height 32" in note and "pass --size 32 64" in note, note
    assert cli.height_width([32, 64], {"backbone": {"img_size": [64, 32]}}) == (64, 32)
    assert cli.height_width([64, 64], {"backbone": {"img_size": [64, 32]}}) == (64, 64)
    assert capsys.readouterr().err == "", "a note for a size that is not the transposed training size"


def parser_of(tool: str) -> argparse.ArgumentParser:
    """The parser tools/<tool>.py builds, caught as it parses `--help`."""
    caught = []
    real = argparse.ArgumentParser.parse_known_args

    def spy(self, args=None, namespace=None):
        caught.append(self)
        return real(self, args, namespace)

    old_argv = sys.argv
    sys.argv = [f"tools/{tool}.py", "--help"]
    argparse.ArgumentParser.parse_known_args = spy
    try:
        runpy.run_path(os.path.join(ROOT, "tools", f"{tool}.py"), run_name="__main__")
    except SystemExit:
        pass
    finally:
        argparse.ArgumentParser.parse_known_args = real
        sys.argv = old_argv
    assert caught, f"tools/{tool}.py --help built no parser"
    return caught[-1]


@pytest.mark.parametrize("tool", TOOLS)
def test_help_describes_every_option_with_its_default(tool, capsys):
    text = ok(run(tool, "--help"), f"tools/{tool}.py --help")
    entries = re.split(r"\n(?=  \S)", text.split("\noptions:\n", 1)[1])  # one entry per option
    positional = (
        text.split("\npositional arguments:\n", 1)[1].split("\noptions:\n")[0]
        if "\npositional arguments:\n" in text
        else ""
    )
    parser = parser_of(tool)
    capsys.readouterr()
    missing, no_default = [], []
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction) or a.help == argparse.SUPPRESS:
            continue
        if not a.option_strings:
            line = next((ln for ln in positional.splitlines() if ln.strip().startswith(a.dest)), "")
            if len(line.split()) < 2:
                missing.append(a.dest)
            continue
        entry = next((e for e in entries if re.match(rf"  {re.escape(a.option_strings[0])}\b", e)), None)
        sig = entry and re.match(r"  (\S+(?: \S+)*?(?:, \S+(?: \S+)*?)*)(?:\s{2,}|\n|$)", entry)
        words = entry[sig.end() :].split() if sig else []
        if not words:
            missing.append(a.option_strings[0])
        elif (
            a.default is not None
            and a.default is not False
            and a.default != argparse.SUPPRESS
            and "default" not in entry
        ):
            no_default.append(f"{a.option_strings[0]} (default {a.default!r})")
    assert not missing and not no_default, (
        f"tools/{tool}.py --help: options without a description {missing}; defaults not stated {no_default}"
    )


# The tool parses `--help`, then a mistyped option, in a fresh interpreter (runpy as __main__, as `python tools/x.py`
# runs it); then says which of the heavy libraries had been imported by then.
PARSE_PROBE = """
import json, runpy, sys
path, pre = sys.argv[1], sys.argv[2:]
codes = []
for args in (["--help"], ["--bogus_flag"]):
    sys.argv = [path, *pre, *args]
    try:
        runpy.run_path(path, run_name="__main__")
        codes.append(0)
    except SystemExit as e:
        codes.append(e.code)
heavy = [m for m in ("paddle", "paddleseg", "torch") if m in sys.modules]
print(json.dumps({"codes": codes, "heavy": heavy}), file=sys.stderr)
"""
PARSE_BOUND_S = 3.0  # the goal is < 1 s on 2 idle cores; the bound leaves room for a loaded machine (before: 5-15 s)


@pytest.mark.parametrize(
    "tool,pre", [(t, []) for t in TOOLS] + [("benchmark", ["forward"])], ids=TOOLS + ["benchmark forward"]
)
def test_help_and_option_mistakes_answer_before_paddle_loads(tool, pre):
    """`--help` and an unknown option are answered by argparse before Paddle, PaddleSeg or torch are imported (they
    cost 5-15 s); the components are registered after parsing (segmenter/__init__.py, run_cli)."""
    import json
    import time

    t = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE, os.path.join(ROOT, "tools", f"{tool}.py"), *pre],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.perf_counter() - t
    got = json.loads(r.stderr.strip().splitlines()[-1])
    what = " ".join([f"tools/{tool}.py", *pre, "--help, then --bogus_flag"])
    assert got["codes"] == [0, 2] and "usage:" in r.stdout, f"{what}: exit codes {got['codes']}\n{r.stderr[-2000:]}"
    assert not got["heavy"], f"{what}: {got['heavy']} imported before the arguments were parsed"
    assert seconds < PARSE_BOUND_S, f"{what}: {seconds:.2f} s (bound {PARSE_BOUND_S} s; load {os.getloadavg()[0]:.1f})"


def test_tools_are_thin_front_doors():
    long = {t: n for t in TOOLS if (n := len(open(os.path.join(ROOT, "tools", f"{t}.py")).read().splitlines())) >= 70}
    assert not long, f"tools over 69 lines (move the logic under segmenter/): {long}"


@pytest.mark.slow  # several tool runs
def test_train_says_what_runs_writes_its_config_and_resumes_saying_so(tmp_path):
    cfg = write_tiny_config(tmp_path)
    out = ok(
        run(
            "train",
            "--config",
            cfg,
            "--save_dir",
            tmp_path / "run",
            "--save_interval",
            "3",
            "--do_eval",
            "--device",
            "cpu",
            "--amp_level",
            "O1",
            "--data_format",
            "NCHW",
            "--repeats",
            "1",
        ),
        "train",
    )
    for want in (
        "train: running on cpu",
        "train set: 16 images",
        "val set: 4 images",
        "6 iters of batch 4",
        "best mIoU",
        f"{tmp_path / 'run' / 'best_model'}",
        f"config {tmp_path / 'run' / 'config.yml'}",
    ):
        assert want in out, f"train's output lacks {want!r}:\n{out}"
    assert len(out.splitlines()) < 25 and "Use the following config" not in out and "backbone:" not in out, out
    written = yaml.safe_load(open(tmp_path / "run" / "config.yml"))
    assert written["model"]["backbone"]["embed_dim"] == 32 and written["iters"] == 6, written
    assert written["loss"]["types"][0]["ignore_index"] == 255, "config.yml is not the resolved config"
    out = ok(
        run(
            "train",
            "--config",
            cfg,
            "--save_dir",
            tmp_path / "run",
            "--resume_model",
            tmp_path / "run" / "iter_3",
            "--iters",
            "7",
            "--verbose",
        ),
        "train --resume_model",
    )
    assert f"resumed from iter 3 ({tmp_path / 'run' / 'iter_3'})" in out, out
    assert "Use the following config to build model" in out, f"--verbose shows no resolved config:\n{out}"


@pytest.mark.slow  # several tool runs
def test_default_output_is_short_and_free_of_known_noise(trained, tmp_path):
    t = trained
    outs = {
        "val": run(
            "val",
            "--config",
            t["cfg"],
            "--model_path",
            f"{t['run']}/best_model",
            "--device",
            "cpu",
            "--precision",
            "fp32",
            "--data_format",
            "NCHW",
        ),  # PaddleSeg's flags, accepted
        "export": run(
            "export",
            "--config",
            t["cfg"],
            "--weights",
            f"{t['run']}/best_model",
            "--size",
            "32",
            "32",
            "--save",
            tmp_path / "m",
        ),
        "onnx": run(
            "export", "--config", t["cfg"], "--size", "32", "32", "--format", "onnx", "--save", tmp_path / "m.onnx"
        ),
        "predict": run(
            "predict",
            "--config",
            t["cfg"],
            "--model_path",
            f"{t['run']}/best_model",
            "--image_path",
            t["img"],
            cwd=str(tmp_path),
        ),
    }
    for name, r in outs.items():
        text = ok(r, name) + r.stderr
        for noise in (
            "No ccache found",
            "PIR) not support input out tensor",
            "Find variable `attns`",
            "[Paddle2ONNX]",
            "Use the following config",
            "Add the `ignore_index`",
        ):
            assert noise not in text, f"{name} printed {noise!r}:\n{text}"
        assert f"{name.replace('onnx', 'export')}: running on cpu" in text, text
    summary = "predict: wrote 1 of 1 images: masks to output/result/pseudo_color"
    assert summary in outs["predict"].stdout, outs["predict"].stdout
    assert os.path.isfile(tmp_path / "output" / "result" / "pseudo_color" / "img.png")
    assert f"export: wrote {tmp_path / 'm.onnx'} (the model, ONNX opset" in outs["onnx"].stdout, outs["onnx"].stdout
    # each file on its line, named for what it is: the card is no second `model.json` beside the program
    m = tmp_path / "m"
    for line in (f"{m}.json (the program", f"{m}.pdiparams (the weights)", f"{m}.model_card.json (the model card"):
        assert f"export: wrote {line}" in outs["export"].stdout, (
            f"no line 'export: wrote {line}':\n{outs['export'].stdout}"
        )
    assert not os.path.exists(f"{m}.model.json") and os.path.isfile(f"{tmp_path / 'm.onnx'}.model_card.json")


def test_an_export_card_is_read_under_its_name_and_the_old_one(tmp_path):
    from segmenter import deploy

    save = str(tmp_path / "model")
    assert deploy.write_model_card(save, {"num_classes": 3}) == save + ".model_card.json"
    assert deploy.read_model_card(save) == {"num_classes": 3}
    os.replace(save + ".model_card.json", save + ".model.json")  # an export made before the rename
    assert deploy.read_model_card(save) == {"num_classes": 3}
    os.remove(save + ".model.json")
    with pytest.raises(FileNotFoundError, match=r"neither .*model\.model_card\.json nor .*model\.model\.json"):
        deploy.read_model_card(save)


@pytest.mark.slow  # tool runs in a pipe and on a terminal
def test_progress_is_lines_in_a_pipe_and_a_bar_on_a_terminal(trained):
    args = ("val", "--config", trained["cfg"], "--model_path", f"{trained['run']}/best_model")
    piped = run(*args)
    text = ok(piped, "val | cat") + piped.stderr
    assert re.search(r"^\[evaluate\] 4/4 img \S+s/img ETA \d\d:\d\d$", piped.stdout, re.M), piped.stdout
    assert not re.search(r"\d+%\|", text), f"a bar in a pipe:\n{text}"
    master, slave = pty.openpty()
    tty = run(*args, stdout=slave)
    os.close(slave)
    shown = b""
    try:
        while chunk := os.read(master, 65536):
            shown += chunk
    except OSError:  # the pty's other side is closed
        pass
    os.close(master)
    assert tty.returncode == 0 and "[evaluate]" not in shown.decode(), shown.decode()
    assert re.search(r"evaluate: 100%\|.*\| 4/4 \[", tty.stderr), f"no bar on a terminal:\n{tty.stderr}"


@pytest.mark.slow  # several tool runs
def test_predict_never_reads_its_save_dir(trained, tmp_path):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.png", "sub/b.jpg"]):
        Image.fromarray(SegmenterShapes(1, 40, seed=i, mode="val").sample(0)[0]).save(photos / name)
    args = (
        "predict",
        "--config",
        trained["cfg"],
        "--model_path",
        f"{trained['run']}/best_model",
        "--image_path",
        "photos",
        "--save_dir",
        "photos/out",
    )
    listing = []
    for _ in range(2):  # the second run meets the first run's outputs inside image_path
        out = ok(run(*args, cwd=str(tmp_path)), "predict")
        assert "images: 2 from photos" in out, out
        listing.append(
            sorted(
                os.path.relpath(os.path.join(d, f), photos / "out") for d, _, fs in os.walk(photos / "out") for f in fs
            )
        )
    want = ["added/a.png", "added/sub/b.png", "legend.png", "pseudo_color/a.png", "pseudo_color/sub/b.png"]
    assert listing == [want, want], f"outputs after run 1 and 2: {listing}"
    out = ok(run(*args, "--no_recursive", cwd=str(tmp_path)), "predict --no_recursive")
    assert "images: 1 from photos" in out, out
    helped = ok(run("predict", "--help"), "predict --help")
    assert "sub-folders" in helped and "--no_recursive" in helped, helped


def test_every_default_is_stated_by_the_formatter_itself():
    """HelpFormatter appends the default where the text leaves it out, 0 included (0 == False in Python)."""
    from segmenter.engine.cli import Parser

    p = Parser("x", prog="x")
    p.add_argument("--n", type=int, default=0, help="count")
    p.add_argument("--k", type=int, default=None, help="kept unless set")
    text = p.format_help()
    assert "count (default: 0)" in text and "kept unless set\n" in text, text
