"""Class names: a dataset section's class_names / class_names_file, or a PaddleSeg built-in dataset's standard
names, label val.py's per-class table, VisualDL's per-class scalars and the Inferencer's legend (which the
panels and the attention figure use); a wrong count is one error line naming the key."""

import os
import re
import subprocess

import paddle
import pytest
import yaml
from paddleseg.cvlibs import SegBuilder, manager

import segmenter  # noqa: F401
from segmenter.class_names import BUILT_IN
from segmenter.engine.run import load_config, run_train
from tests import layouts
from tests.helpers import tiered, tool_result
from tests.test_data_errors import dataset_yaml

NAMES = ["sky", "road", "parked car", "tree", "person", "house"]


def named_config(tmp_path, **keys) -> str:
    """PaddleSeg Dataset config of 6 classes whose sections get keys {section: {key: value}}."""
    root = layouts.file_list(str(tmp_path), n_train=2, n_val=2)
    dic = yaml.safe_load(dataset_yaml(root))
    for section, extra in keys.items():
        dic[section].update(extra)
    path = tmp_path / "named.yml"
    path.write_text(yaml.safe_dump(dic))
    return str(path)


def val_tool(cfg: str, tmp_path, capsys) -> subprocess.CompletedProcess:
    """tools/val.py on random weights, in this process (tests.helpers.tool_result: no ~4 s of imports)."""
    weights = str(tmp_path / "w.pdparams")
    if not os.path.exists(weights):
        paddle.seed(0)
        paddle.save(SegBuilder(load_config(cfg)).model.state_dict(), weights)
    return tool_result("val.py", ["--config", cfg, "--model_path", weights], capsys)


@pytest.mark.parametrize("how", tiered(["class_names", "class_names_file"], ["class_names"]))
def test_val_table_names_the_classes(how, tmp_path, capsys):
    file = tmp_path / "names.txt"
    file.write_text("\n".join(NAMES) + "\n")
    cfg = named_config(tmp_path, val_dataset={how: NAMES if how == "class_names" else str(file)})
    r = val_tool(cfg, tmp_path, capsys)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {
        m.group(2).strip(): (int(m.group(1)), float(m.group(3)), float(m.group(4)))
        for m in re.finditer(r"^\s+(\d+)\s+(\S.*?)\s+(\d\.\d{4})\s+(\d\.\d{4})$", r.stdout, re.M)
    }
    assert list(rows) == NAMES and [c for c, _, _ in rows.values()] == list(range(6)), (
        f"the per-class table does not name the 6 classes in order:\n{r.stdout}"
    )


@pytest.mark.parametrize("how, count", tiered([("class_names", 5), ("class_names_file", 7)], [("class_names", 5)]))
def test_wrong_count_is_one_line_naming_the_key(how, count, tmp_path, capsys):
    """In this process (tests.helpers.tool_result): an exception escaping the tool, which a process would print as
    a traceback, fails the test here; tests/test_cli.py runs each tool's first mistake as a real process."""
    names = [f"c{i}" for i in range(count)]
    file = tmp_path / "names.txt"
    file.write_text("\n".join(names) + "\n")
    cfg = named_config(tmp_path, train_dataset={how: names if how == "class_names" else str(file)})
    r = tool_result("val.py", ["--config", cfg, "--model_path", "unused"], capsys)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 1 and f"train_dataset.{how} has {count} names but num_classes is 6" in last, (
        f"exit {r.returncode}: {r.stderr[-1500:]}"
    )
    assert "Traceback" not in r.stderr, r.stderr[-1500:]


def test_built_in_datasets_get_their_standard_names(tmp_path):
    for kind, names in BUILT_IN.items():
        n = manager.DATASETS.components_dict[kind].NUM_CLASSES
        assert len(names) == n == len(set(names)), f"{kind}: {len(names)} names for NUM_CLASSES {n}"
    from segmenter.engine.run import class_names_of
    from tests.test_dataset_classes import config

    for kind, first, last in (
        ("ADE20K", "wall", "flag"),
        ("Cityscapes", "road", "bicycle"),
        ("PascalContext", "background", "wood"),
        ("PascalVOC", "background", "tvmonitor"),
    ):
        (tmp_path / kind).mkdir()
        cfg = load_config(config(tmp_path / kind, kind)[0])
        names = class_names_of(cfg, cfg.dic["model"]["num_classes"])
        assert (names[0], names[-1]) == (first, last), f"{kind}: names run {names[0]} .. {names[-1]}"


def test_vdl_scalars_and_inferencer_legend_use_the_names(tmp_path):
    cfg = named_config(tmp_path, train_dataset={"class_names": NAMES})
    run_train(load_config(cfg), str(tmp_path / "run"), save_interval=2, log_iters=100, do_eval=True, use_vdl=True)
    from visualdl import LogReader

    vdl = tmp_path / "run" / "vdl"
    tags = set(LogReader(file_path=str(vdl / os.listdir(vdl)[0])).get_tags()["scalar"])
    want = {f"Evaluate/IoU_{n.replace(' ', '_')}" for n in NAMES}
    assert want <= tags, f"missing per-class scalars {sorted(want - tags)}; found {sorted(tags)}"
    from segmenter.inference import Inferencer

    seg = Inferencer(cfg, str(tmp_path / "run" / "iter_2"))
    assert seg.names == NAMES, f"Inferencer legend names {seg.names}"
    from segmenter.pytorch.inference import Inferencer as TorchInferencer

    assert TorchInferencer(cfg).names == NAMES, "the PyTorch Inferencer does not read class_names"


def test_predict_tool_writes_a_legend_with_the_names(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from segmenter.visualize.palette import legend, palette

    cfg = named_config(tmp_path, val_dataset={"class_names": NAMES})
    weights = str(tmp_path / "w.pdparams")
    paddle.seed(0)
    paddle.save(SegBuilder(load_config(cfg)).model.state_dict(), weights)
    images = os.path.join(os.path.dirname(cfg), "my_data", "images")
    r = tool_result(  # in this process: no ~4 s of imports
        "predict.py",
        ["--config", cfg, "--model_path", weights, "--image_path", images, "--save_dir", str(tmp_path / "out")],
        capsys,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    pal = palette(6)
    masks = [
        np.asarray(Image.open(os.path.join(d, f)).convert("RGB"))
        for d, _, fs in os.walk(tmp_path / "out" / "pseudo_color")
        for f in fs
    ]
    present = sorted({c for m in masks for c in range(6) if (m == pal[c]).all(-1).any()})
    got = np.asarray(Image.open(tmp_path / "out" / "legend.png").convert("RGB"))
    want = legend(NAMES, pal, 640, present, row_height=20)
    assert got.shape == want.shape and np.array_equal(got, want), (
        f"legend.png {got.shape} is not the legend of classes {present} named {[NAMES[c] for c in present]}"
    )
