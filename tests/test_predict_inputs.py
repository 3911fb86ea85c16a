"""tools/predict.py with a PaddleSeg config: the config's val transforms are applied as PaddleSeg's predict
does, masks come back at each input's original size (grey, RGBA, 16-bit PNG, larger than the crop), outputs keep
the input's relative path and never overwrite each other."""

import os

import cv2
import numpy as np
import paddle
from paddleseg.core.infer import reverse_transform as ps_reverse
from paddleseg.cvlibs import SegBuilder
from paddleseg.transforms import Compose
from PIL import Image

import segmenter  # noqa: F401
from segmenter.engine.infer import predict_probs
from segmenter.engine.predict import palette
from segmenter.engine.run import load_config
from tests import layouts
from tests.helpers import run_tool_in_process
from tests.test_data_errors import dataset_yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_predict_applies_val_transforms_and_keeps_sizes_and_names(tmp_path):
    root = layouts.file_list(str(tmp_path), n_train=1, n_val=1)
    cfg_path = tmp_path / "cfg.yml"
    cfg_path.write_text(dataset_yaml(root) + "test_config: {is_slide: True, crop_size: [32, 32], stride: [24, 24]}\n")
    cfg = load_config(str(cfg_path))
    model = SegBuilder(cfg).model
    ckpt = str(tmp_path / "model.pdparams")
    paddle.save(model.state_dict(), ckpt)

    imgs = tmp_path / "in"
    lab = layouts.class_map(75, 130, 3)
    rgb = layouts.image_of(lab, 3)
    (imgs / "sub").mkdir(parents=True)
    Image.fromarray(rgb).save(imgs / "a.png")
    Image.fromarray(rgb).save(imgs / "a.jpg", quality=95)
    Image.fromarray(rgb[..., 0]).save(imgs / "sub" / "grey.png")
    Image.fromarray(np.dstack([rgb, np.full(lab.shape, 200, np.uint8)])).save(imgs / "sub" / "rgba.png")
    cv2.imwrite(str(imgs / "sub" / "deep.png"), rgb[..., ::-1].astype(np.uint16) * 257)  # 16-bit BGR
    big = np.tile(rgb, (3, 3, 1))  # 225 x 390: larger than the 32 px crop and the 48 x 40 resize
    Image.fromarray(big).save(imgs / "sub" / "big.png")

    run_tool_in_process(
        "predict.py",
        [
            "--config",
            str(cfg_path),
            "--model_path",
            ckpt,
            "--image_path",
            str(imgs),
            "--save_dir",
            str(tmp_path / "out"),
        ],
    )
    out = tmp_path / "out" / "pseudo_color"
    written = sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out) for f in fs)
    assert written == ["a_jpg.png", "a_png.png", "sub/big.png", "sub/deep.png", "sub/grey.png", "sub/rgba.png"], written
    pal = palette(6)
    model.eval()
    transforms = Compose(SegBuilder(cfg).val_transforms)  # PaddleSeg reads the file itself
    for src, dst in (
        ("a.png", "a_png.png"),
        ("sub/big.png", "sub/big.png"),
        ("sub/deep.png", "sub/deep.png"),
        ("sub/grey.png", "sub/grey.png"),
        ("sub/rgba.png", "sub/rgba.png"),
    ):
        h, w = cv2.imread(str(imgs / src)).shape[:2]
        mask = np.asarray(Image.open(out / dst).convert("RGB"))
        assert mask.shape == (h, w, 3), f"{dst}: mask {mask.shape[:2]} for an input of {(h, w)}"
        data = transforms({"img": str(imgs / src)})
        with paddle.no_grad():
            probs = predict_probs(model, paddle.to_tensor(data["img"][None]), True, [32, 32], [24, 24])
            pred = ps_reverse(probs, data["trans_info"], mode="bilinear").argmax(1)[0].numpy()
        agree = (mask == pal[pred]).all(-1).mean()
        assert agree > 0.999, f"{dst}: mask matches PaddleSeg-preprocessed prediction on {agree:.2%} of pixels"
