"""Inferencer (Paddle and twin): inputs of every kind, batching by size, the engine's probabilities, overlays."""

import os

import numpy as np
import paddle
import pytest
from PIL import Image

from segmenter import Inferencer
from segmenter.engine.infer import predict_probs
from segmenter.parity import load_into_torch, paddle_state
from segmenter.pytorch.inference import Inferencer as TorchInferencer
from segmenter.visualize import palette
from tests.engine_helpers import write_tiny_config
from tests.helpers import run_tool_in_process


@pytest.fixture(scope="module")
def seg(tmp_path_factory):
    paddle.seed(0)
    return Inferencer(write_tiny_config(tmp_path_factory.mktemp("inf")), batch_size=2)


def images():
    rng = np.random.default_rng(1)
    return [
        rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(40, 50, 3), (33, 47, 3), (40, 50, 3), (40, 50, 3)]
    ]


def engine_probs(seg, img):
    """What evaluate() computes for one image: normalised 0.5/0.5, then predict_probs with the test_config."""
    x = (img.transpose(2, 0, 1).astype(np.float32) / 255.0 - 0.5) / 0.5  # [H, W, 3] -> [3, H, W]
    with paddle.no_grad():
        return predict_probs(seg.model, paddle.to_tensor(x[None]), True, [32, 32], [16, 16])[0].numpy()


def test_results_in_input_order_equal_the_engine(seg):
    imgs = images()
    out = seg(imgs, return_probs=True)
    assert len(out) == 4
    for i, (img, r) in enumerate(zip(imgs, out)):
        ref = engine_probs(seg, img)
        assert r.pred.shape == img.shape[:2], f"image {i}: pred {r.pred.shape} vs image {img.shape[:2]}"
        d = np.abs(r.probs - ref).max()
        assert d <= 1e-5, f"image {i}: max|diff|={d:.2e} vs predict_probs one image at a time"
        assert np.array_equal(r.pred, ref.argmax(0)), f"image {i}: class map differs"


def test_single_path_folder_and_errors(seg, tmp_path):
    imgs = images()
    for i, im in enumerate(imgs[:2]):
        Image.fromarray(im).save(tmp_path / f"{i}.png")
    one = seg(str(tmp_path / "1.png"))
    assert one.path.endswith("1.png") and one.pred.shape == (33, 47) and one.probs is None
    folder = seg(str(tmp_path))
    assert [os.path.basename(r.path) for r in folder] == ["0.png", "1.png"]
    assert np.array_equal(folder[1].pred, one.pred)
    assert np.array_equal(seg(imgs[1]).pred, one.pred), "array and file inputs differ"
    with pytest.raises(FileNotFoundError, match="nope.png does not exist"):
        seg(str(tmp_path / "nope.png"))
    with pytest.raises(ValueError, match=r"RGB uint8 \[H, W, 3\]; got float32"):
        seg(imgs[0].astype(np.float32))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no image"):
        seg(str(empty))


def test_overlay_has_a_legend(seg, tmp_path):
    r = seg(images()[0])
    path = r.save(str(tmp_path / "o.png"))
    ov = np.asarray(Image.open(path))
    assert ov.shape[0] > 40 and ov.shape[1] == 50, f"overlay {ov.shape} should be the image plus a legend strip"
    pal = palette(4)
    want = (0.5 * images()[0] + 0.5 * pal[r.pred]).astype(np.uint8)
    assert np.array_equal(ov[:40], want), "overlay is not the 50/50 blend of image and class colours"


def test_twin_inferencer_matches_paddle(seg, tmp_path):
    twin = TorchInferencer(write_tiny_config(tmp_path), flip_horizontal=True)
    load_into_torch(twin.model, paddle_state(seg.model))
    flip = Inferencer.__new__(Inferencer)  # the Paddle one with the same options
    flip.__dict__.update(seg.__dict__, infer_kwargs=dict(seg.infer_kwargs, flip_horizontal=True))
    a, b = flip(images(), return_probs=True), twin(images(), return_probs=True)
    for i, (x, y) in enumerate(zip(a, b)):
        d = np.abs(x.probs - y.probs).max()
        assert d <= 1e-5, f"image {i}: Paddle vs twin max|diff|={d:.2e}"


def test_val_transforms_as_tools_predict(tmp_path):
    """A config with resizing val transforms: the Inferencer's class maps are those tools/predict.py writes (the
    engine's preprocess + reverse_transform), at each image's original size, batched or not."""

    from paddleseg.cvlibs import SegBuilder

    from segmenter.engine.run import load_config
    from tests import layouts
    from tests.test_data_errors import dataset_yaml

    root = layouts.file_list(str(tmp_path), n_train=1, n_val=1)
    cfg_path = tmp_path / "cfg.yml"
    cfg_path.write_text(dataset_yaml(root) + "test_config: {is_slide: True, crop_size: [32, 32], stride: [24, 24]}\n")
    model = SegBuilder(load_config(str(cfg_path))).model
    ckpt = str(tmp_path / "model.pdparams")
    paddle.save(model.state_dict(), ckpt)
    (tmp_path / "in").mkdir()
    rgb = layouts.image_of(layouts.class_map(75, 130, 3), 3)
    imgs = [rgb, np.ascontiguousarray(rgb[:60, :90]), rgb]
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(tmp_path / "in" / f"{i}.png")
    run_tool_in_process(
        "predict.py",
        [
            "--config",
            str(cfg_path),
            "--model_path",
            ckpt,
            "--image_path",
            str(tmp_path / "in"),
            "--save_dir",
            str(tmp_path / "out"),
        ],
    )
    out = Inferencer(str(cfg_path), ckpt, batch_size=2)(str(tmp_path / "in"))
    pal = palette(model.num_classes)
    for i, r in enumerate(out):
        assert r.pred.shape == imgs[i].shape[:2], f"image {i}: {r.pred.shape} vs {imgs[i].shape[:2]}"
        want = np.asarray(Image.open(tmp_path / "out" / "pseudo_color" / f"{i}.png").convert("RGB"))
        assert np.array_equal(pal[r.pred], want), f"image {i}: {(pal[r.pred] != want).any(2).sum()} pixels differ"


@pytest.mark.parametrize("cls", [Inferencer, TorchInferencer], ids=["paddle", "torch"])
def test_a_misspelt_option_is_refused_naming_it(cls, tmp_path):
    """A typo in an inference option (flip_horizantal=True) must not run the model without the option."""
    cfg = write_tiny_config(tmp_path)
    with pytest.raises(TypeError, match=r"unknown inference option\(s\) \['crop_sise', 'flip_horizantal'\]"):
        cls(cfg, None, flip_horizantal=True, crop_sise=(32, 32))
    assert cls(cfg, None, flip_horizontal=True).infer_kwargs["flip_horizontal"] is True


def test_the_twin_says_opts_are_the_paddle_inferencers(tmp_path):
    with pytest.raises(TypeError, match=r"opts/verbose are the Paddle Inferencer's"):
        TorchInferencer(write_tiny_config(tmp_path), None, opts=["model.backbone.depth=1"])
