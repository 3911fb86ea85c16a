"""The bad-input table of docs/errors.md: each mistake gives one message naming the culprit and what to do.

Rows backed elsewhere: corrupt image, label out of range, missing dataset root (tests/test_datasets.py), NaN loss
(tests/test_engine_train.py), mismatched / malicious / truncated checkpoint (tests/test_trusted_files.py).
"""

import importlib.util
import os
import sys

import paddle
import pytest
import yaml
from paddleseg.cvlibs import SegBuilder

import segmenter  # noqa: F401
from segmenter.engine.cli_errors import run_cli
from segmenter.engine.config_check import ConfigError
from segmenter.engine.run import load_config
from tests.engine_helpers import TINY_YAML, write_tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_with(tmp_path, edit) -> str:
    """The tiny config after edit(dict), written as YAML."""
    dic = yaml.safe_load(TINY_YAML)
    edit(dic)
    path = tmp_path / "cfg.yml"
    path.write_text(yaml.safe_dump(dic))
    return str(path)


def cli(name: str, argv: list, capsys) -> tuple:
    spec = importlib.util.spec_from_file_location(f"tool_{name}", os.path.join(ROOT, "tools", f"{name}.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    old, sys.argv = sys.argv, [f"tools/{name}.py", *argv]
    try:
        rc = run_cli(tool.main, tool.parse_args(), sys.argv)
    finally:
        sys.argv = old
    return rc, capsys.readouterr().err


def test_config_path_missing(tmp_path, capsys):
    rc, err = cli("val", ["--config", str(tmp_path / "nope.yml"), "--model_path", "x"], capsys)
    assert rc == 1 and err.startswith(f"error: config {tmp_path / 'nope.yml'} does not exist"), err


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("batch_size: 4\nmodel:\n  type: Segmenter\n   num_classes: 4\n")
    with pytest.raises(ConfigError, match=r"bad\.yml: YAML syntax error at line 4, column \d+"):
        load_config(str(path))


@pytest.mark.parametrize(
    "edit,expect",
    [
        (
            lambda d: d.update(batch_sise=d.pop("batch_size")),
            r"unknown top-level key 'batch_sise'; did you mean "
            r"'batch_size'",
        ),
        (lambda d: d.update(modle=d.pop("model")), r"unknown top-level key 'modle'; did you mean 'model'"),
        (
            lambda d: d["model"]["backbone"].update(embed_dims=d["model"]["backbone"].pop("embed_dim")),
            r"model\.backbone\.embed_dims is not an argument of SegmenterViT; did you mean 'embed_dim'",
        ),
        (
            lambda d: d["model"].update(num_class=4),
            r"model\.num_class is not an argument of Segmenter; did you mean "
            r"'num_classes'",
        ),
    ],
)
def test_unknown_key_suggests_the_close_name(tmp_path, edit, expect):
    with pytest.raises(ConfigError, match=expect):
        load_config(tiny_with(tmp_path, edit))


@pytest.mark.parametrize(
    "edit,expect",
    [
        (
            lambda d: d["model"]["backbone"].update(type="SegmenterVit"),
            r"model\.backbone\.type 'SegmenterVit' is not registered in PaddleSeg's backbones manager; did you mean "
            r"'SegmenterViT'",
        ),
        (
            lambda d: d["train_dataset"].update(type="SegmenterShape"),
            r"train_dataset\.type 'SegmenterShape' is not registered .*did you mean 'SegmenterShapes'",
        ),
        (
            lambda d: d["loss"]["types"][0].update(type="SegmenterCrossEntropy"),
            r"loss\.types\[0\]\.type 'SegmenterCrossEntropy' is not a registered loss; did you mean "
            r"'SegmenterCrossEntropyLoss'",
        ),
    ],
)
def test_unknown_type_suggests_close_names(tmp_path, edit, expect):
    with pytest.raises(ConfigError, match=expect):
        load_config(tiny_with(tmp_path, edit))


def test_empty_file_list_through_the_cli(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "list.txt").write_text("")

    def edit(d):
        d["train_dataset"] = {
            "type": "Dataset",
            "dataset_root": str(tmp_path / "data"),
            "mode": "train",
            "train_path": str(tmp_path / "list.txt"),
            "num_classes": 4,
            "transforms": [{"type": "Normalize"}],
        }
        d["val_dataset"] = dict(d["train_dataset"], mode="val", val_path=d["train_dataset"]["train_path"])

    rc, err = cli("train", ["--config", tiny_with(tmp_path, edit), "--save_dir", str(tmp_path / "out")], capsys)
    assert (
        rc == 1
        and "list.txt" in err
        and "number of samples in train_dataset is 0" in err
        and len(err.strip().splitlines()) == 1
    ), err


def test_predict_on_a_folder_with_non_image_files(tmp_path, capsys):
    cfg = write_tiny_config(tmp_path)
    weights = str(tmp_path / "model.pdparams")
    paddle.save(SegBuilder(load_config(cfg)).model.state_dict(), weights)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    argv = ["--config", cfg, "--model_path", weights, "--image_path", str(folder), "--save_dir", str(tmp_path / "o")]
    rc, err = cli("predict", argv, capsys)
    assert rc == 1 and f"--image_path {folder} holds no image" in err, err
    (folder / "fake.png").write_text("a text file named .png")
    rc, err = cli("predict", argv, capsys)
    assert rc == 1 and f"cannot decode image {folder / 'fake.png'}" in err, err
