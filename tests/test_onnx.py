"""ONNX export through paddle2onnx, run by onnxruntime: logits equal Paddle's at two sizes with a dynamic batch."""

import importlib.metadata
import importlib.util
import os

import numpy as np
import paddle
import pytest

from segmenter import deploy
from tests.engine_helpers import write_tiny_config
from tests.helpers import tiny_segmenter, tool_exit_code

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-4


@pytest.mark.parametrize("decoder", ["linear", "mask_transformer"])
def test_onnxruntime_equals_paddle(decoder, tmp_path):
    paddle.seed(0)
    model = tiny_segmenter(decoder, img_size=32)
    model.eval()
    for h, w in [(32, 32), (48, 40)]:  # the model's size, and another one (resampled pos-embed, padded)
        path = deploy.export_onnx(model, str(tmp_path / f"m{h}x{w}.onnx"), (h, w))
        sess = deploy.create_onnx_session(path, num_threads=1)
        for b in (1, 3):  # the batch is dynamic
            x = np.random.default_rng(b).standard_normal((b, 3, h, w)).astype(np.float32)
            want = model(paddle.to_tensor(x))[0].numpy()
            got = sess.run(None, {"x": x})[0]
            assert got.shape == want.shape, f"{h}x{w} batch {b}: ONNX {got.shape} vs Paddle {want.shape}"
            d = np.abs(got - want).max()
            assert d <= TOL, f"{decoder} {h}x{w} batch {b}: max|diff|={d:.2e} > {TOL}"
    # the export must not have pip-installed anything (paddle2onnx's default polygraphy path would)
    assert importlib.metadata.version("numpy").startswith("1."), "the export upgraded numpy"
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("onnx_graphsurgeon")


def test_export_tool_onnx(tmp_path, capsys):
    cfg = write_tiny_config(tmp_path)
    out = str(tmp_path / "tiny.onnx")
    capsys.readouterr()
    code = tool_exit_code(  # tools/export.py as its command line runs it, in this process (no ~4 s of imports)
        "export.py", ["--config", cfg, "--size", "32", "32", "--format", "onnx", "--save", out]
    )
    assert code == 0, capsys.readouterr().err[-2000:]
    sess = deploy.create_onnx_session(out)
    assert [i.shape for i in sess.get_inputs()][0][1:] == [3, 32, 32], f"input {sess.get_inputs()[0].shape}"
    x = np.random.RandomState(0).randn(3, 3, 32, 32).astype(np.float32)
    one = [sess.run(None, {"x": x[i : i + 1]})[0] for i in range(3)]  # the file at batch 1 and at batch 3
    three = sess.run(None, {"x": x})[0]
    assert three.shape == (3, 4, 32, 32) and one[0].shape == (1, 4, 32, 32), f"{one[0].shape}, {three.shape}"
    d = float(np.abs(three - np.concatenate(one)).max())
    assert d <= TOL, f"batch 3 vs three batches of 1: max|diff|={d:.2e}"
    import yaml

    from segmenter.deploy import read_model_card

    card = read_model_card(out)  # the export says which model it holds (issue 11: files carry their arch)
    want = yaml.safe_load(open(cfg))["model"]
    assert card["backbone"] == want["backbone"] and card["num_classes"] == want["num_classes"], card
    spec = importlib.util.spec_from_file_location("export_tool", os.path.join(ROOT, "tools", "export.py"))
    export_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export_tool)
    with pytest.raises(ValueError, match="ending in .onnx"):  # run_cli prints it as one error: line
        export_tool.main(
            export_tool.parse_args(["--config", cfg, "--format", "onnx", "--save", str(tmp_path / "model")])
        )


def test_zero_pad_values_repairs_a_garbage_pad_constant(tmp_path):
    """paddle2onnx 2.1.0 fills the Pad value from uninitialised memory (some conversions only): plant a wrong value
    in an export at a size that pads, and check the repair restores Paddle's logits."""
    import onnx
    from onnx import numpy_helper

    paddle.seed(0)
    model = tiny_segmenter("linear", img_size=32)
    model.eval()
    path = deploy.export_onnx(model, str(tmp_path / "p.onnx"), (48, 40))
    m = onnx.load(path)
    pad = next(n for n in m.graph.node if n.op_type == "Pad")
    m.graph.initializer.append(numpy_helper.from_array(np.array(5.0, np.float32), "planted"))
    pad.input[2] = "planted"
    onnx.save(m, path)
    x = np.random.default_rng(0).standard_normal((1, 3, 48, 40)).astype(np.float32)
    want = model(paddle.to_tensor(x))[0].numpy()
    before = np.abs(deploy.create_onnx_session(path, 1).run(None, {"x": x})[0] - want).max()
    assert before > 1e-2, f"the planted pad value should change the logits (max|diff|={before:.2e})"
    assert deploy.zero_pad_values(path) == 1
    after = np.abs(deploy.create_onnx_session(path, 1).run(None, {"x": x})[0] - want).max()
    assert after <= TOL, f"after zero_pad_values max|diff|={after:.2e}"


def test_missing_onnx_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no.onnx; run tools/export.py --format onnx"):
        deploy.create_onnx_session(str(tmp_path / "no.onnx"))
