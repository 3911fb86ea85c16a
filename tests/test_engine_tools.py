"""The command-line tools end to end on a tiny trained model: val.py's report, predict.py's PNGs, --num_workers
and --precision."""

import os
import re

import numpy as np
import paddle
import pytest
from paddleseg.cvlibs import SegBuilder
from PIL import Image

from segmenter.datasets import SegmenterShapes
from segmenter.engine.evaluate import evaluate
from segmenter.engine.infer import predict_probs
from segmenter.engine.predict import palette
from segmenter.engine.run import load_config, load_model, run_train
from tests.engine_helpers import write_tiny_config
from tests.helpers import tool_exit_code

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tool(capsys, name: str, *args: str) -> str:
    """tools/<name> run in this process as its command line would (tests.helpers.tool_exit_code: a subprocess
    only adds ~4 s of imports); its stdout."""
    capsys.readouterr()
    code = tool_exit_code(name, list(args))
    out, err = capsys.readouterr()
    assert code == 0, f"tools/{name} exited {code}:\n{out[-2000:]}\n{err[-3000:]}"
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tools")
    cfg_path = write_tiny_config(tmp)
    run_train(load_config(cfg_path), str(tmp / "run"), seed=1, save_interval=6, log_iters=100)
    return cfg_path, str(tmp / "run" / "iter_6")


def test_val_tool_prints_the_in_process_figures(trained, capsys, tmp_path):
    """Printed and written with --json: each row's mIoU equals the in-process evaluation, classes by name."""
    import json

    cfg_path, ckpt = trained
    out = tool(
        capsys,
        "val.py",
        "--config",
        cfg_path,
        "--model_path",
        ckpt,
        "--is_slide",
        "--crop_size",
        "32",
        "32",
        "--stride",
        "16",
        "16",
        "--window_batch_size",
        "3",
        "--aug_eval",
        "--flip_horizontal",
        "--json",
        str(tmp_path / "m" / "metrics.json"),
    )
    written = json.loads((tmp_path / "m" / "metrics.json").read_text())["rows"]
    assert f"metrics written to {tmp_path / 'm' / 'metrics.json'}" in out, out[-500:]
    cfg = load_config(cfg_path)
    for label, flip in (("slice", False), ("slice + flip", True)):  # the published tables' two columns
        line = next((ln for ln in out.splitlines() if ln.startswith(f"[EVAL] {label}:")), None)
        assert line, f"no '[EVAL] {label}:' line in:\n{out}"
        got = float(re.search(r"mIoU (\S+)", line).group(1))
        want = evaluate(
            load_model(cfg, ckpt),
            SegBuilder(cfg).val_dataset,
            4,
            is_slide=True,
            crop_size=[32, 32],
            stride=[16, 16],
            flip_horizontal=flip,
            progress=False,
        )["mIoU"]
        assert abs(got - want) < 5e-5, f"val.py {label} mIoU {got} != in-process {want:.4f}"
        assert abs(written[label]["mIoU"] - want) < 1e-6, f"--json {label} mIoU {written[label]['mIoU']} != {want}"
        # unrounded: a page that quotes the JSON at 4 digits says what val.py printed (6-digit rounding first had
        # turned the quickstart's 0.8161495, printed 0.8161, into 0.8162)
        assert f"{written[label]['mIoU']:.4f}" == re.search(r"mIoU (\S+)", line).group(1), (written[label], line)
    from segmenter.datasets.shapes import SHAPES

    assert list(written) == ["slice", "slice + flip"], list(written)
    assert list(written["slice + flip"]["class_iou"]) == list(SHAPES), written["slice + flip"]["class_iou"]

    rows = re.findall(r"^\s+(\d+)\s+(\S.*?)\s+(\d\.\d{4})\s+(\d\.\d{4})$", out, re.M)
    assert [name for _, name, _, _ in rows] == list(SHAPES), f"the per-class table does not name {SHAPES}:\n{out}"


def test_predict_tool_writes_masks_of_the_prediction(trained, tmp_path, capsys):
    cfg_path, ckpt = trained
    images = tmp_path / "images"
    images.mkdir()
    ds = SegmenterShapes(2, 40, seed=9, mode="val")
    for i in range(2):
        Image.fromarray(ds.sample(i)[0]).save(images / f"im{i}.png")
    (images / "notes.txt").write_text("not an image")
    tool(
        capsys,
        "predict.py",
        "--config",
        cfg_path,
        "--model_path",
        ckpt,
        "--image_path",
        str(images),
        "--save_dir",
        str(tmp_path / "out"),
    )
    model, pal = load_model(load_config(cfg_path), ckpt), palette(4)
    for i in range(2):
        mask = np.asarray(Image.open(tmp_path / "out" / "pseudo_color" / f"im{i}.png").convert("RGB"))
        added = Image.open(tmp_path / "out" / "added" / f"im{i}.png")
        assert mask.shape == (40, 40, 3) and added.size == (40, 40), f"sizes {mask.shape} {added.size}"
        x = paddle.to_tensor(ds[i]["img"][None])
        with paddle.no_grad():  # the tiny config's test_config is slide 32/16
            pred = predict_probs(model, x, True, [32, 32], [16, 16]).argmax(1)[0].numpy()
        agree = (mask == pal[pred]).all(-1).mean()
        assert agree > 0.999, f"im{i}: pseudo-colour mask matches the in-process prediction on {agree:.1%} of pixels"
    assert sorted(os.listdir(tmp_path / "out" / "pseudo_color")) == ["im0.png", "im1.png"]


def test_num_workers_trains_on_the_same_batches(tmp_path):
    path = write_tiny_config(tmp_path)
    for workers in (0, 2):
        run_train(
            load_config(path, iters=4),
            str(tmp_path / f"w{workers}"),
            seed=2,
            save_interval=4,
            log_iters=100,
            num_workers=workers,
        )
    a = paddle.load(str(tmp_path / "w0" / "iter_4" / "model.pdparams"))
    b = paddle.load(str(tmp_path / "w2" / "iter_4" / "model.pdparams"))
    diff = max(float(np.abs(a[k].numpy() - b[k].numpy()).max()) for k in a)
    assert diff <= 1e-6, f"num_workers 2 vs 0: weights differ by {diff:.2e}"


@pytest.mark.skipif(paddle.is_compiled_with_cuda(), reason="the CPU error only")
def test_fp16_on_cpu_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        run_train(load_config(write_tiny_config(tmp_path), iters=1), str(tmp_path / "fp16"), precision="fp16")
