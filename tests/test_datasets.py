"""The shapes dataset (deterministic, class = shape not colour) and the checks of the file-list dataset."""

import numpy as np
import pytest
from PIL import Image

from segmenter.datasets import SegmenterFileList, SegmenterShapes


def test_shapes_deterministic_by_seed():
    a, b, c = SegmenterShapes(4, 48, seed=7), SegmenterShapes(4, 48, seed=7), SegmenterShapes(4, 48, seed=8)
    for i in range(4):
        assert (a[i]["img"] == b[i]["img"]).all() and (a[i]["label"] == b[i]["label"]).all(), f"sample {i} differs"
    diff = np.abs(a[0]["img"] - c[0]["img"]).max()
    assert diff > 0.1, f"seeds 7 and 8 give the same image (max|diff|={diff})"
    s = a[0]
    assert s["img"].shape == (3, 48, 48) and s["label"].shape == (48, 48), f"{s['img'].shape} {s['label'].shape}"


def test_colour_does_not_tell_class():
    """A colour rule cannot name the class: nearest class-mean colour is near chance on held-out regions."""
    ds = SegmenterShapes(120, 64, seed=0, mode="val")
    colours, classes = [], []
    for i in range(len(ds)):
        img, label = ds.sample(i)
        for c in range(1, 4):
            if (label == c).sum() > 20:
                colours.append(img[label == c].mean(0))
                classes.append(c)
    colours, classes = np.array(colours), np.array(classes)
    assert (np.bincount(classes, minlength=4)[1:] >= 30).all(), f"regions per class {np.bincount(classes)}"
    half = len(classes) // 2
    centroids = np.stack([colours[:half][classes[:half] == c].mean(0) for c in range(1, 4)])
    guess = 1 + np.argmin(((colours[half:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    accuracy = (guess == classes[half:]).mean()
    assert accuracy < 0.5, f"nearest class-mean colour names the class of {accuracy:.0%} of regions (chance 33%)"
    for c in range(1, 4):
        spread = colours[classes == c].max(0) - colours[classes == c].min(0)
        assert (spread > 100).all(), f"class {c} colour spread {spread} is narrow: colour would give it away"


def test_shapes_stand_out_from_background():
    """Every shape pixel is brighter on some channel than the dark background, so shape is visible."""
    ds = SegmenterShapes(20, 64, seed=3)
    for i in range(len(ds)):
        img, label = ds.sample(i)
        bg, fg = img[label == 0].astype(float).mean(0), img[label > 0].astype(float).mean(0)
        assert bg.max() < 100 and (fg - bg).max() > 40, f"sample {i}: background {bg}, shapes {fg}"


def write_pair(root, name, img_shape=(8, 8, 3), label=None):
    Image.fromarray(np.zeros(img_shape, np.uint8)).save(root / f"{name}.png")
    Image.fromarray(np.zeros((8, 8), np.uint8) if label is None else label).save(root / f"{name}_l.png")
    return f"{name}.png {name}_l.png\n"


def test_file_list_reads(tmp_path):
    (tmp_path / "list.txt").write_text(write_pair(tmp_path, "a", label=np.full((8, 8), 255, np.uint8)))
    s = SegmenterFileList(str(tmp_path), str(tmp_path / "list.txt"), 3)[0]
    assert s["img"].shape == (3, 8, 8) and (s["label"] == 255).all(), f"{s['img'].shape} {np.unique(s['label'])}"


def test_missing_root_and_list(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        SegmenterFileList(str(tmp_path / "nowhere"), "x.txt", 3)
    with pytest.raises(FileNotFoundError, match="nolist.txt"):
        SegmenterFileList(str(tmp_path), str(tmp_path / "nolist.txt"), 3)
    (tmp_path / "list.txt").write_text("missing.png missing_l.png\n")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        SegmenterFileList(str(tmp_path), str(tmp_path / "list.txt"), 3)


def test_undecodable_image(tmp_path):
    line = write_pair(tmp_path, "a")
    (tmp_path / "a.png").write_bytes(b"not a png")
    (tmp_path / "list.txt").write_text(line)
    ds = SegmenterFileList(str(tmp_path), str(tmp_path / "list.txt"), 3)
    with pytest.raises(ValueError, match="cannot decode .*a.png"):
        ds[0]


def test_label_out_of_range(tmp_path):
    label = np.zeros((8, 8), np.uint8)
    label[3, 4] = 7
    (tmp_path / "list.txt").write_text(write_pair(tmp_path, "a", label=label))
    with pytest.raises(ValueError, match="a_l.png holds value 7 outside"):
        SegmenterFileList(str(tmp_path), str(tmp_path / "list.txt"), 3)[0]


def test_size_mismatch(tmp_path):
    (tmp_path / "list.txt").write_text(write_pair(tmp_path, "a", img_shape=(8, 9, 3)))
    with pytest.raises(ValueError, match=r"a_l.png has shape \(8, 8\) but image .*a.png is \(8, 9\)"):
        SegmenterFileList(str(tmp_path), str(tmp_path / "list.txt"), 3)[0]


def test_shapes_bad_arguments():
    with pytest.raises(ValueError, match="num_samples=0"):
        SegmenterShapes(0)
    with pytest.raises(ValueError, match="mode='test'"):
        SegmenterShapes(4, mode="test")
    with pytest.raises(ValueError, match=r"radius=\[10, 5\]"):
        SegmenterShapes(4, radius=[10, 5])
    with pytest.raises(ValueError, match=r"radius=\[40, 50\]"):
        SegmenterShapes(4, img_size=64, radius=[40, 50])


def test_shapes_radius_sets_scale():
    small, large = SegmenterShapes(30, 96, radius=[4, 6]), SegmenterShapes(30, 96, radius=[16, 20])

    def area(ds):
        return np.mean(
            [(ds.sample(i)[1] > 0).sum() / max(1, len(np.unique(ds.sample(i)[1])) - 1) for i in range(len(ds))]
        )

    assert area(large) > 4 * area(small), f"mean shape area {area(large):.0f} vs {area(small):.0f} px"
