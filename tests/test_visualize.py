"""Palette, legend, panels and curves; panels logged to VisualDL during training and read back; val --save_panels."""

import os

import numpy as np
import paddle
import pytest
from paddleseg.utils.visualize import get_color_map_list
from PIL import Image

from segmenter.datasets import SegmenterShapes
from segmenter.engine.infer import predict_probs
from segmenter.engine.run import load_config, run_train
from segmenter.engine.val_panels import display_image, image_iou
from segmenter.visualize import class_names, colorize, legend, palette, panel, plot_curves
from segmenter.visualize.panels import GAP, TITLE_H, panel_size, tile_scale
from tests.engine_helpers import write_tiny_config
from tests.helpers import tool_exit_code

SHAPES_NAMES = ["background", "disc", "square", "triangle"]


def test_palette_is_paddleseg_color_map():
    # PaddleSeg's list drops the VOC palette's first colour (black); ours keeps it for class 0
    ref = np.asarray(get_color_map_list(21), np.uint8).reshape(-1, 3)
    ours = palette(22)
    assert np.array_equal(ours[1:], ref), f"first mismatching class {np.argwhere((ours[1:] != ref).any(1))[:1]}"
    assert ours[0].tolist() == [0, 0, 0]


def test_colorize_marks_ignored_pixels_white():
    pal = palette(4)
    lab = np.array([[0, 1], [3, 255]])
    rgb = colorize(lab, pal)
    assert (
        rgb[1, 1].tolist() == [255, 255, 255]
        and rgb[1, 0].tolist() == pal[3].tolist()
        and rgb[0, 1].tolist() == pal[1].tolist()
    ), f"colorize gave {rgb.tolist()}"


def test_legend_shows_each_listed_class_colour():
    pal = palette(4)
    strip = legend(SHAPES_NAMES, pal, 300, [1, 3])
    colours = {tuple(c) for c in strip.reshape(-1, 3)}
    assert tuple(pal[1]) in colours and tuple(pal[3]) in colours, "legend lacks a listed class colour"
    assert tuple(pal[2]) not in colours, "legend shows an unlisted class"
    narrow = legend(SHAPES_NAMES, pal, 60)
    assert narrow.shape[0] > strip.shape[0], f"a narrow legend should wrap: {narrow.shape} vs {strip.shape}"


def test_panel_tiles_are_image_truth_prediction():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    lab, pred = rng.integers(0, 4, (20, 30)), rng.integers(0, 4, (20, 30))
    pal = palette(4)
    p = panel(img, lab, pred, SHAPES_NAMES, pal)
    h, w = panel_size(20, 30)
    s = tile_scale(20, 30)
    assert p.shape[1] == w and p.shape[0] > h, f"panel {p.shape} vs tiles {h}x{w}"
    tiles = [p[TITLE_H : TITLE_H + 20 * s, k * (30 * s + GAP) : k * (30 * s + GAP) + 30 * s] for k in range(3)]
    big = lambda a: np.repeat(np.repeat(a, s, 0), s, 1)  # noqa: E731  (each pixel a s x s block)
    assert np.array_equal(tiles[0], big(img)), "first tile is not the image"
    assert np.array_equal(tiles[1], big(pal[lab])), "second tile is not the ground truth"
    assert np.array_equal(tiles[2], big(pal[pred])), "third tile is not the prediction"
    with pytest.raises(ValueError, match="must have one size"):
        panel(img, lab[:10], pred, SHAPES_NAMES, pal)


def test_class_names():
    assert class_names(4, "SegmenterShapes") == SHAPES_NAMES
    assert class_names(2) == ["class 0", "class 1"]
    with pytest.raises(ValueError, match="3 names for 2 classes"):
        class_names(2, names=["a", "b", "c"])


def test_curves_say_why_a_panel_is_empty(tmp_path):
    shown = plot_curves(
        {"loss": [(1, 2.0), (2, 1.5)], "lr": [(1, 0.1), (2, 0.05)], "mIoU": []}, str(tmp_path / "c.png")
    )
    assert shown["loss"] == "curve" and "--do_eval" in shown["mIoU"], f"curves showed {shown}"
    assert Image.open(tmp_path / "c.png").size == (1200, 350)


def test_image_iou():
    pred, lab = np.array([[0, 0], [1, 1]]), np.array([[0, 1], [1, 255]])
    # class 0: inter 1, union 2; class 1: inter 1, union 2 (the ignored pixel does not count)
    assert image_iou(pred, lab, 3) == pytest.approx(0.5)


def test_display_image_undoes_the_normalisation():
    ds = SegmenterShapes(num_samples=1, img_size=32, mode="val", mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    raw, _ = ds.sample(0)
    got = display_image(ds, ds[0])
    assert np.abs(got.astype(int) - raw).max() <= 1, f"max|diff|={np.abs(got.astype(int) - raw).max()}"


def test_training_logs_panels_to_visualdl(tmp_path):
    cfg = load_config(write_tiny_config(tmp_path), iters=2)
    out = str(tmp_path / "run")
    run_train(cfg, out, seed=3, save_interval=2, log_iters=2, do_eval=True, use_vdl=True)
    from visualdl import LogReader

    reader = LogReader(file_path=os.path.join(out, "vdl", os.listdir(os.path.join(out, "vdl"))[0]))
    tags = sorted(reader.get_tags().get("image", []))
    assert tags == [f"Evaluate/panel_{i}" for i in range(4)], f"image tags {tags}"
    # the logged panel of image 0 is the one drawn from the final model's prediction
    from paddleseg.cvlibs import SegBuilder

    from segmenter.engine.run import load_model

    model = load_model(cfg, os.path.join(out, "iter_2"))
    ds = SegBuilder(cfg).val_dataset
    s = ds[0]
    pred = predict_probs(model, paddle.to_tensor(s["img"][None]), True, [32, 32], [16, 16]).argmax(1)[0].numpy()
    want = panel(display_image(ds, s), s["label"], pred, SHAPES_NAMES, palette(4), "#0")
    rec = reader.get_data("image", "Evaluate/panel_0")
    assert [r.id for r in rec] == [2], f"panel steps {[r.id for r in rec]}"
    import io

    got = np.asarray(Image.open(io.BytesIO(rec[0].image.encoded_image_string)).convert("RGB"))
    assert got.shape == want.shape, f"logged panel {got.shape} vs expected {want.shape}"
    assert np.array_equal(got, want), f"logged panel differs in {(got != want).any(2).sum()} pixels"


def test_val_tool_saves_worst_and_best_panels(tmp_path, capsys):
    cfg_path = write_tiny_config(tmp_path)
    from paddleseg.cvlibs import SegBuilder

    cfg = load_config(cfg_path)
    paddle.seed(0)
    model = SegBuilder(cfg).model
    paddle.save(model.state_dict(), str(tmp_path / "m.pdparams"))
    capsys.readouterr()
    code = tool_exit_code(  # tools/val.py as its command line runs it, in this process (no ~4 s of imports)
        "val.py",
        [
            "--config",
            cfg_path,
            "--model_path",
            str(tmp_path / "m.pdparams"),
            "--save_panels",
            "2",
            "--save_dir",
            str(tmp_path / "panels"),
        ],
    )
    assert code == 0, capsys.readouterr().err[-2000:]
    files = sorted(os.listdir(tmp_path / "panels"))
    assert len(files) == 4, f"--save_panels 2 wrote {files}"
    ious = {f: float(f.rsplit("_iou", 1)[1][:-4]) for f in files}
    worst = [v for f, v in ious.items() if f.startswith("worst")]
    best = [v for f, v in ious.items() if f.startswith("best")]
    ds = SegBuilder(cfg).val_dataset
    model.eval()
    all_ious = []
    for i in range(len(ds)):
        s = ds[i]
        pred = predict_probs(model, paddle.to_tensor(s["img"][None]), True, [32, 32], [16, 16]).argmax(1)[0].numpy()
        all_ious.append(image_iou(pred, s["label"], 4))
    all_ious = sorted(round(v, 3) for v in all_ious)
    assert sorted(worst) == all_ious[:2] and sorted(best) == all_ious[-2:], (
        f"worst {sorted(worst)} best {sorted(best)} of {all_ious}"
    )


def test_panels_are_readable_and_say_what_white_means(monkeypatch):
    """A quickstart-sized image (128 x 98 gave a 392 x 134 panel) gives a panel at least twice that; a truth with
    ignored pixels (drawn white) adds a legend item saying so, drawn like a class swatch."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (98, 128, 3), dtype=np.uint8)
    lab, pred = rng.integers(0, 4, (98, 128)), rng.integers(0, 4, (98, 128))
    lab[:10] = 255
    import segmenter.visualize.panels as panels

    seen = []
    monkeypatch.setattr(panels, "legend", lambda *a, **k: seen.append(k.get("extra", ())) or legend(*a, **k))
    p = panels.panel(img, lab, pred, SHAPES_NAMES, palette(4))
    assert p.shape[1] >= 2 * 392 and p.shape[0] >= 2 * 134, f"panel {p.shape[1]}x{p.shape[0]} (w x h)"
    assert [t for t, rgb in seen[-1] if "ignored" in t and tuple(rgb) == (255, 255, 255)], (
        f"the legend does not explain white: extra items {seen[-1]}"
    )
    panels.panel(img, np.where(lab == 255, 0, lab), pred, SHAPES_NAMES, palette(4))
    assert not seen[-1], f"no ignored pixel, yet the legend lists {seen[-1]}"
    plain = legend(SHAPES_NAMES, palette(4), 800, [1])
    with_white = legend(SHAPES_NAMES, palette(4), 800, [1], extra=[("ignored (255)", (255, 255, 255))])
    ink = lambda a: int((a.sum(2) < 100).sum())  # noqa: E731  (black pixels: swatch outlines and text)
    assert ink(with_white) > ink(plain) + 40, f"the white item draws nothing: {ink(with_white)} vs {ink(plain)}"


def test_curves_draw_miou_on_its_whole_range(tmp_path, monkeypatch):
    """A 0.002 dip in mIoU stays a 0.2 % wiggle: the axis spans 0..1 and the title prints the values."""
    import matplotlib.pyplot as plt

    figs = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figs.append(fig))
    plot_curves(
        {"loss": [(1, 2.0), (2, 1.5)], "lr": [(1, 0.1), (2, 0.05)], "mIoU": [(1, 0.612), (2, 0.610), (3, 0.6125)]},
        str(tmp_path / "c.png"),
    )
    ax = figs[-1].axes[2]
    assert ax.get_ylim() == (0.0, 1.0), f"mIoU axis spans {ax.get_ylim()}"
    assert "last 0.6125" in ax.get_title() and "best 0.6125" in ax.get_title(), ax.get_title()


def test_curves_titles_stay_inside_the_figure(tmp_path, monkeypatch):
    """The mIoU panel's title with a best_model of a long run fits the PNG (it ran past the right edge:
    '... best 0.9832 at iter 300 (best_mo')."""
    import matplotlib.pyplot as plt

    figs = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figs.append(fig))
    curve = [(i, 0.5 + i / 400_000) for i in range(8000, 160_001, 8000)]
    plot_curves({"loss": [(1, 2.0)], "lr": [(1, 0.1)], "mIoU": curve}, str(tmp_path / "c.png"), best=(0.9832, 152000))
    fig = figs[-1]
    fig.canvas.draw()
    edge = fig.bbox
    for ax in fig.axes:
        box = ax.title.get_window_extent()
        assert edge.x0 <= box.x0 and box.x1 <= edge.x1 and box.y1 <= edge.y1, (ax.get_title(), box, edge)


def test_attention_figure_is_readable(tmp_path, monkeypatch):
    """4 columns are at least 1200 px wide; every row has a colour bar (one scale for its maps); no title touches
    the images of the row above."""
    import matplotlib.pyplot as plt

    from segmenter.visualize.attention import AttentionMaps, draw_attention_grid

    rng = np.random.default_rng(0)
    soft = lambda a: np.exp(a) / np.exp(a).sum(0, keepdims=True)  # noqa: E731
    maps = AttentionMaps(
        box=(0, 0, 48, 64),
        query=(1, 2),
        layer=3,
        patch_size=16,
        heads=rng.random((3, 48, 64)).astype(np.float32) * [[[0.1]], [[0.5]], [[1.0]]],
        class_attn=rng.random((4, 48, 64)).astype(np.float32),
        class_masks=soft(rng.normal(size=(4, 48, 64))).astype(np.float32),
    )
    figs = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figs.append(fig))
    path = draw_attention_grid(
        rng.integers(0, 255, (48, 64, 3), dtype=np.uint8),
        maps,
        str(tmp_path / "a.png"),
        ["sky", "road", "car", "tree"],
        max_classes=3,
    )
    width = Image.open(path).size[0]
    assert width >= 1200, f"4 columns drawn {width} px wide"
    fig = figs[-1]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 3, f"{len(bars)} colour bars for 3 rows"
    heads = [im for ax in fig.axes[1:4] for im in ax.get_images()]
    assert {im.get_clim() for im in heads} == {(0.0, float(maps.heads.max()))}, (
        f"head maps not on one scale: {[im.get_clim() for im in heads]}"
    )
    r = fig.canvas.get_renderer()
    grid = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    rows = [grid[i * 4 : (i + 1) * 4] for i in range(3)]
    for upper, lower in zip(rows, rows[1:]):
        bottom = min(ax.get_window_extent(r).y0 for ax in upper if ax.get_images())
        for ax in lower:
            if ax.get_title():
                top = ax.title.get_window_extent(r).y1
                assert top < bottom, f"title '{ax.get_title()}' reaches y={top:.0f}, above row bottom {bottom:.0f}"
