"""predict over folders as long runs use it: a damaged image is named and skipped (the run still ends non-zero), a
killed run leaves no half-written PNG and `--skip_existing` finishes it, and under paddle.distributed.launch each
rank predicts a disjoint share that rank 0 totals. The Inferencer: skip_unreadable, and the same share per rank."""

import contextlib
import os
import subprocess

import numpy as np
import paddle
import pytest
from paddleseg.cvlibs import SegBuilder
from PIL import Image

from segmenter.datasets import SegmenterShapes
from segmenter.engine.predict import run_predict
from segmenter.engine.run import load_config
from segmenter.shards import share
from tests.engine_helpers import ROOT, launch_command, launch_env, worker_log, write_tiny_config
from tests.helpers import tool_exit_code
from tests.test_data_errors import truncate_jpeg


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny config, its random weights, and a folder of 6 photos of 40 px, im3.jpg cut in half."""
    tmp = tmp_path_factory.mktemp("predict_runs")
    cfg = write_tiny_config(tmp)
    weights = str(tmp / "w.pdparams")
    paddle.save(SegBuilder(load_config(cfg)).model.state_dict(), weights)
    images = tmp / "images"
    images.mkdir()
    ds = SegmenterShapes(6, 40, seed=9, mode="val")
    for i in range(6):
        Image.fromarray(ds.sample(i)[0]).save(images / (f"im{i}.jpg" if i == 3 else f"im{i}.png"), quality=95)
    truncate_jpeg(str(images / "im3.jpg"))
    return cfg, weights, images


def masks(save_dir) -> dict:
    """{name: RGB array} of every PNG under save_dir/pseudo_color."""
    d = os.path.join(save_dir, "pseudo_color")
    return {f: np.asarray(Image.open(os.path.join(d, f)).convert("RGB")) for f in sorted(os.listdir(d))}


def test_predict_writes_every_readable_image_names_the_damaged_one_and_exits_non_zero(model, tmp_path, capsys):
    cfg, weights, images = model
    out = tmp_path / "out"
    argv = ["--config", cfg, "--model_path", weights, "--image_path", str(images), "--save_dir", str(out)]
    code = tool_exit_code("predict.py", argv)
    err = capsys.readouterr().err.strip().splitlines()
    written = sorted(os.listdir(out / "pseudo_color"))
    assert written == ["im0.png", "im1.png", "im2.png", "im4.png", "im5.png"], f"wrote {written} of 6 images"
    assert sorted(os.listdir(out / "added")) == written, sorted(os.listdir(out / "added"))
    bad = str(images / "im3.jpg")
    named = [ln for ln in err if "im3.jpg" in ln and not ln.startswith("error:")]
    assert len(named) == 1 and named[0].startswith(f"predict: cannot decode image {bad} (OSError"), (
        f"one line should name {bad}; stderr:\n" + "\n".join(err)
    )
    summary = f"error: predict: 1 of 6 images could not be decoded (named above): {bad}; the other 5 are in {out}"
    assert code == 1 and err[-1].startswith(summary), f"exit {code}, last line: {err[-1]}"


def test_inferencer_on_a_folder_raises_by_default_or_skips_and_reports(model):
    from segmenter import Inferencer

    cfg, weights, images = model
    seg = Inferencer(cfg, weights)
    with pytest.raises(ValueError, match="cannot decode image .*im3.jpg"):
        seg(str(images))
    with pytest.warns(UserWarning, match=r"skipped 1 of 6 images that cannot be decoded: .*im3.jpg"):
        out = seg(str(images), skip_unreadable=True)
    got = [os.path.basename(o.path) for o in out]
    assert got == ["im0.png", "im1.png", "im2.png", "im4.png", "im5.png"], f"predicted {got}"
    assert [os.path.basename(p) for p, _ in out.skipped] == ["im3.jpg"], out.skipped
    assert "truncated" in out.skipped[0][1], out.skipped


def test_a_killed_run_leaves_no_half_written_png_and_skip_existing_finishes_it(model, tmp_path, monkeypatch):
    cfg, weights, images = model
    folder = tmp_path / "images"
    folder.mkdir()
    for f in ("im0.png", "im1.png", "im2.png", "im4.png"):
        (folder / f).write_bytes((images / f).read_bytes())
    out = str(tmp_path / "out")
    save, calls = Image.Image.save, []

    def killed_on_the_fifth_png(self, fp, *a, **kw):  # writes half of the PNG where asked, then the process "dies"
        calls.append(fp)
        if len(calls) == 5:
            save(self, fp, *a, **kw)
            data = open(fp, "rb").read()
            open(fp, "wb").write(data[: len(data) // 2])
            raise KeyboardInterrupt
        return save(self, fp, *a, **kw)

    monkeypatch.setattr(Image.Image, "save", killed_on_the_fifth_png)
    with pytest.raises(KeyboardInterrupt):
        run_predict(load_config(cfg), weights, str(folder), out)
    monkeypatch.setattr(Image.Image, "save", save)
    left = sorted(
        os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs if not f.startswith(".")
    )  # the outputs under their final names
    for f in left:
        try:
            Image.open(f).load()
        except OSError as e:
            pytest.fail(f"{f} was left half-written by the killed run ({e}); outputs: {left}")
    before = {f: os.stat(f).st_mtime_ns for f in left}
    assert len(left) == 4, f"two images' mask and overlay should be whole before the kill, found {left}"
    total = run_predict(load_config(cfg), weights, str(folder), out, skip_existing=True)
    assert total == {"written": 2, "existing": 2, "unreadable": 0}, f"the rerun reported {total}"
    rewritten = [f for f, t in before.items() if os.stat(f).st_mtime_ns != t]
    assert not rewritten, f"--skip_existing rewrote {rewritten}"
    ref = str(tmp_path / "ref")
    run_predict(load_config(cfg), weights, str(folder), ref)
    a, b = masks(out), masks(ref)
    assert list(a) == list(b) == ["im0.png", "im1.png", "im2.png", "im4.png"], f"{list(a)} vs {list(b)}"
    for k in a:
        assert (a[k] == b[k]).all(), (
            f"{k}: the resumed run's mask differs from a clean run's on {(a[k] != b[k]).any(-1).mean():.1%} px"
        )


def test_shares_are_disjoint_cover_the_list_and_the_inferencer_takes_its_own(model, monkeypatch):
    items = [f"f{i:02d}" for i in range(11)]
    for world in (1, 2, 3, 4, 16):
        parts = [share(items, r, world) for r in range(world)]
        flat = sorted(x for p in parts for x in p)
        sizes = [len(p) for p in parts]
        assert flat == items and max(sizes) - min(sizes) <= 1, f"{world} ranks: shares {parts}"
    from segmenter import Inferencer

    cfg, weights, images = model
    seg = Inferencer(cfg, weights)
    monkeypatch.setenv("PADDLE_TRAINERS_NUM", "2")
    names = {}
    for rank in (0, 1):
        monkeypatch.setenv("PADDLE_TRAINER_ID", str(rank))
        with (
            pytest.warns(UserWarning) if rank == 1 else contextlib.nullcontext()
        ):  # im3.jpg, the damaged one, is rank 1's
            names[rank] = [os.path.basename(o.path) for o in seg(str(images), skip_unreadable=True)]
    assert names == {0: ["im0.png", "im2.png", "im4.png"], 1: ["im1.png", "im5.png"]}, f"shares {names}"
    with pytest.warns(UserWarning, match="im3.jpg"):
        whole = [os.path.basename(o.path) for o in seg(str(images), skip_unreadable=True, shard=False)]
    assert len(whole) == 5, f"shard=False should give every readable image on each rank, got {whole}"


@pytest.mark.slow  # a launched job of 2 processes (~15 s)
def test_two_ranks_predict_disjoint_shares_and_rank_0_reports_the_total(model, tmp_path):
    cfg, weights, images = model
    out, log = tmp_path / "out", str(tmp_path / "log")
    args = ["--config", cfg, "--model_path", weights, "--image_path", images, "--save_dir", out]
    cmd = launch_command("predict.py", args, log, nproc=2)
    r = subprocess.run(cmd, cwd=ROOT, env=launch_env(), capture_output=True, text=True, timeout=240)
    logs = [worker_log(log, k) for k in (0, 1)]
    assert r.returncode != 0, f"a damaged image should fail the job; launcher exit 0:\n{logs[0][-1500:]}"
    total = next((ln for ln in logs[0].splitlines() if ln.startswith("predict: wrote")), "")
    assert total.startswith("predict: wrote 5 of 6 images") and "(rank 0: 3, rank 1: 2;" in total, (
        f"rank 0's total: {total!r}\n{logs[0][-2000:]}"
    )
    bad = str(images / "im3.jpg")
    assert f"predict: cannot decode image {bad}" in logs[1], (
        f"rank 1 (index 3 is its) should name {bad}:\n{logs[1][-1500:]}"
    )
    assert (
        "error: predict: 1 of 6 images could not be decoded (each named in the log of its rank: rank 1: 1)" in logs[0]
    ), logs[0][-1500:]
    ref = tmp_path / "ref"
    readable = tmp_path / "readable"
    readable.mkdir()
    for f in os.listdir(images):
        if f != "im3.jpg":
            (readable / f).write_bytes((images / f).read_bytes())
    run_predict(load_config(cfg), weights, str(readable), str(ref))
    a, b = masks(out), masks(ref)
    assert list(a) == list(b), f"two ranks wrote {list(a)}, one process {list(b)}"
    for k in a:
        assert (a[k] == b[k]).all(), (
            f"{k}: differs from the single-process mask on {(a[k] != b[k]).any(-1).mean():.1%} px"
        )
