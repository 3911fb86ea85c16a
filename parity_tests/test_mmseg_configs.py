"""Every shipped MMSeg row against the config MMSeg's own wheel carries (`mmseg/.mim/configs/`): the numbers of
the recipe, and the architecture. For the architecture MMSeg builds its model from its real config (depth cut
to fit the machine), the converter reads that model's weights, and the model it derives must equal ours."""

import copy
import glob
import inspect
import os
from unittest import mock

import numpy as np
import pytest
import torch

pytest.importorskip("mmseg")

import segmenter.pytorch as tm  # noqa: E402
from parity_tests import mmlab  # noqa: E402
from segmenter.convert import model_config  # noqa: E402
from segmenter.convert.core import to_canonical  # noqa: E402
from segmenter.pytorch import build_model, load_config  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MM = os.path.join(os.path.dirname(__import__("mmseg").__file__), ".mim", "configs")
# ours -> MMSeg's file
ROWS = {
    "upernet_vit/upernet_vit_b16_mln_ade20k_512x512_80k": "vit/vit_vit-b16_mln_upernet_8xb2-80k_ade20k-512x512",
    "upernet_vit/upernet_vit_b16_mln_ade20k_512x512_160k": "vit/vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512",
    "upernet_vit/upernet_vit_b16_ln_mln_ade20k_512x512_160k": "vit/vit_vit-b16-ln_mln_upernet_8xb2-160k_ade20k-512x512",
    "upernet_vit/upernet_deit_s16_ade20k_512x512_80k": "vit/vit_deit-s16_upernet_8xb2-80k_ade20k-512x512",
    "upernet_vit/upernet_deit_s16_ade20k_512x512_160k": "vit/vit_deit-s16_upernet_8xb2-160k_ade20k-512x512",
    "upernet_vit/upernet_deit_s16_mln_ade20k_512x512_160k": "vit/vit_deit-s16_mln_upernet_8xb2-160k_ade20k-512x512",
    "upernet_vit/upernet_deit_s16_ln_mln_ade20k_512x512_160k": "vit/vit_deit-s16-ln_mln_upernet_8xb2-160k_ade20k-512x512",
    "upernet_vit/upernet_deit_b16_ade20k_512x512_80k": "vit/vit_deit-b16_upernet_8xb2-80k_ade20k-512x512",
    "upernet_vit/upernet_deit_b16_ade20k_512x512_160k": "vit/vit_deit-b16_upernet_8xb2-160k_ade20k-512x512",
    "upernet_vit/upernet_deit_b16_mln_ade20k_512x512_160k": "vit/vit_deit-b16_mln_upernet_8xb2-160k_ade20k-512x512",
    "upernet_vit/upernet_deit_b16_ln_mln_ade20k_512x512_160k": "vit/vit_deit-b16-ln_mln_upernet_8xb2-160k_ade20k-512x512",
    "segmenter_mmseg/segmenter_vit_tiny_mask_ade20k_512x512_160k": "segmenter/segmenter_vit-t_mask_8xb1-160k_ade20k-512x512",
    "segmenter_mmseg/segmenter_vit_small_linear_ade20k_512x512_160k": "segmenter/segmenter_vit-s_fcn_8xb1-160k_ade20k-512x512",
    "segmenter_mmseg/segmenter_vit_small_mask_ade20k_512x512_160k": "segmenter/segmenter_vit-s_mask_8xb1-160k_ade20k-512x512",
    "segmenter_mmseg/segmenter_vit_base_mask_ade20k_512x512_160k": "segmenter/segmenter_vit-b_mask_8xb1-160k_ade20k-512x512",
    "segmenter_mmseg/segmenter_vit_large_mask_ade20k_640x640_160k": "segmenter/segmenter_vit-l_mask_8xb1-160k_ade20k-512x512",
}
# MMSeg v0.13's first UPerNet ViT rows (PR #520 at commit 4d77761, trained with mmsegmentation 0.13/0.14's ViT):
# the 1.2.2 wheel has no such config, so their recipe is checked against the numbers read in those files (below)
# and their architecture against MMSeg 1.2.2's modules configured as that release (mmlab.upernet_v0_cfg). Their
# train/val pipeline is v0.x's `_base_/datasets/ade20k.py` (read in the 0.20.2 wheel), number for number the 1.x
# one the wheel's ViT-B 80k row uses, so that row's pipeline is the reference.
V0_ROWS = {  # ours -> (embed_dim, heads, drop_path_rate, iters)
    "upernet_vit/upernet_vit_b16_v013_ade20k_512x512_80k": (768, 12, 0.0, 80000),
    "upernet_vit/upernet_vit_b16_v013_ade20k_512x512_160k": (768, 12, 0.0, 160000),
    "upernet_vit/upernet_deit_s16_v013_ade20k_512x512_80k": (384, 6, 0.1, 80000),
    "upernet_vit/upernet_deit_s16_v013_ade20k_512x512_160k": (384, 6, 0.1, 160000),
    "upernet_vit/upernet_deit_b16_v013_ade20k_512x512_80k": (768, 12, 0.1, 80000),
    "upernet_vit/upernet_deit_b16_v013_ade20k_512x512_160k": (768, 12, 0.1, 160000),
}
PIPELINE_ROWS = {**ROWS, **{k: ROWS["upernet_vit/upernet_vit_b16_mln_ade20k_512x512_80k"] for k in V0_ROWS}}
# MMSeg's DeiT-S 160k file inherits the 80k file, schedule included; ours trains the 160k its name says.
MMSEG_ITERS_DIFFER = {"upernet_vit/upernet_deit_s16_ade20k_512x512_160k"}
DEPTH = 4  # blocks kept on both sides; UPerNet then reads every block (MMSeg: 2, 5, 8, 11 of 12)


def _mmseg_cfg(rel):
    from mmengine.config import Config

    return Config.fromfile(os.path.join(MM, rel + ".py"))


def test_every_shipped_mmseg_config_is_a_row():
    shipped = {
        os.path.relpath(p, os.path.join(ROOT, "configs"))[:-4]
        for d in ("upernet_vit", "segmenter_mmseg")
        for p in glob.glob(os.path.join(ROOT, "configs", d, "*.yml"))
    }
    assert shipped == set(ROWS) | set(V0_ROWS), f"configs without a row check: {sorted(shipped ^ set(ROWS))}"


@pytest.mark.parametrize("ours", sorted(ROWS))
def test_recipe_numbers_follow_mmseg(ours):
    cfg, mm = load_config(os.path.join(ROOT, "configs", ours + ".yml")), _mmseg_cfg(ROWS[ours])
    bb, mbb = cfg["model"]["backbone"], mm.model.backbone
    got = (
        bb["embed_dim"],
        bb["num_heads"],
        bb["depth"],
        bb["drop_path_rate"],
        bb["final_norm"],
        bb["norm_eps"],
        bb["pos_embed_interp"],
        tuple(bb["img_size"] if isinstance(bb["img_size"], list) else [bb["img_size"]] * 2),
    )
    want = (
        mbb.embed_dims,
        mbb.num_heads,
        mbb.num_layers,
        mbb.drop_path_rate,
        mbb.get("final_norm", False),
        mbb.norm_cfg.eps,
        mbb.interpolate_mode,
        tuple(mbb.img_size),
    )
    assert got == want, f"{ours} backbone {got} vs MMSeg {want}"
    assert cfg["batch_size"] == mm.train_dataloader.batch_size, (cfg["batch_size"], mm.train_dataloader.batch_size)
    if ours not in MMSEG_ITERS_DIFFER:
        assert cfg["iters"] == mm.train_cfg.max_iters, (cfg["iters"], mm.train_cfg.max_iters)
    opt, lr = cfg["optimizer"], cfg["lr_scheduler"]
    assert (opt["type"], opt["weight_decay"], lr["learning_rate"]) == (
        mm.optim_wrapper.optimizer.type,
        mm.optim_wrapper.optimizer.weight_decay,
        mm.optim_wrapper.optimizer.lr,
    )
    crop = mm.crop_size[0]
    assert cfg["train_dataset"]["transforms"][1]["crop_size"] == [crop, crop]
    test = mm.model.test_cfg
    if test.mode == "whole":
        assert cfg["test_config"]["is_slide"] is False
    else:
        tc = cfg["test_config"]
        assert (tc["stride"], tc["crop_size"]) == (list(test.stride), list(test.crop_size)), (tc, test)
    if cfg["model"]["type"] == "UPerNetViT":
        sched = mm.param_scheduler
        assert (lr["warmup_iters"], lr["power"], lr["end_lr"]) == (sched[0].end, sched[1].power, sched[1].eta_min)
        assert [c["name"] for c in opt["custom_cfg"]] == ["pos_embed", "cls_token"]
        assert cfg["loss"]["coef"] == [1, mm.model.auxiliary_head.loss_decode.loss_weight]
        assert bb["out_indices"] == list(mbb.out_indices)
    else:
        assert (lr["power"], lr["end_lr"]) == (mm.param_scheduler[0].power, mm.param_scheduler[0].eta_min)


OUR_TRAIN = [
    "MMSegRandomResize",
    "MMSegRandomCrop",
    "MMSegRandomFlip",
    "MMSegPhotoMetricDistortion",
    "Normalize",
    "Padding",
]
MM_TRAIN = [
    "LoadImageFromFile",
    "LoadAnnotations",
    "RandomResize",
    "RandomCrop",
    "RandomFlip",
    "PhotoMetricDistortion",
    "PackSegInputs",
]


@pytest.mark.parametrize("ours", sorted(PIPELINE_ROWS))
def test_train_pipeline_follows_mmseg(ours):
    """Type for type and number for number (defaults included: both sides are built and their attributes read)
    against the wheel's train pipeline and data preprocessor."""
    from mmengine.registry import DefaultScope
    from mmseg.registry import TRANSFORMS
    from paddleseg.cvlibs import manager

    cfg, mm = load_config(os.path.join(ROOT, "configs", ours + ".yml")), _mmseg_cfg(PIPELINE_ROWS[ours])
    data = cfg["train_dataset"]
    assert [t["type"] for t in data["transforms"]] == OUR_TRAIN, [t["type"] for t in data["transforms"]]
    assert [t["type"] for t in mm.train_dataloader.dataset.pipeline] == MM_TRAIN, mm.train_dataloader.dataset.pipeline
    resize, crop, flip, pmd, norm, pad = (
        manager.TRANSFORMS[t["type"]](**{k: v for k, v in t.items() if k != "type"}) for t in data["transforms"]
    )
    mmlab.mmseg_registry()
    with DefaultScope.overwrite_default_scope("mmseg"):
        built = [TRANSFORMS.build(t) for t in mm.train_dataloader.dataset.pipeline]
    load, ann, m_resize, m_crop, m_flip, m_pmd, _ = built
    # LoadAnnotations(reduce_zero_label=True): PaddleSeg's ADE20K shifts the labels the same way (0 -> 255)
    assert (data["type"], ann.reduce_zero_label, load.color_type) == ("ADE20K", True, "color")
    got = (resize.scale, resize.ratio_range, resize.keep_ratio)
    want = (tuple(m_resize.scale), tuple(m_resize.ratio_range), m_resize.resize_cfg["keep_ratio"])
    assert got == want, f"{ours} resize {got} vs MMSeg {want}"
    got, want = (
        (crop.crop_size, crop.cat_max_ratio, crop.ignore_index),
        (tuple(m_crop.crop_size), m_crop.cat_max_ratio, m_crop.ignore_index),
    )
    assert got == want, f"{ours} crop {got} vs MMSeg {want}"
    assert (flip.prob, "horizontal") == (m_flip.prob, m_flip.direction), (flip.prob, m_flip.prob, m_flip.direction)
    got = (pmd.brightness_delta, pmd.contrast_range, pmd.saturation_range, pmd.hue_delta)
    want = (
        m_pmd.brightness_delta,
        (m_pmd.contrast_lower, m_pmd.contrast_upper),
        (m_pmd.saturation_lower, m_pmd.saturation_upper),
        m_pmd.hue_delta,
    )
    assert got == want, f"{ours} photometric distortion {got} vs MMSeg {want}"
    pre = mm.model.data_preprocessor  # normalise after BGR -> RGB (PaddleSeg decodes RGB), then pad to size
    d = float(np.abs(np.asarray(norm.mean) * 255 - pre.mean).max() + np.abs(np.asarray(norm.std) * 255 - pre.std).max())
    assert d < 1e-9 and pre.bgr_to_rgb, f"{ours} Normalize {norm.mean}/{norm.std} x 255 vs MMSeg {pre.mean}/{pre.std}"
    got = (tuple(pad.target_size[::-1]), pad.im_padding_value, pad.label_padding_value)  # Padding takes (w, h)
    want = (tuple(pre.size), pre.pad_val, pre.seg_pad_val)
    assert got == want, f"{ours} Padding (size, image, label) {got} vs MMSeg's preprocessor {want}"


@pytest.mark.parametrize("ours", sorted(PIPELINE_ROWS))
def test_val_pipeline_follows_mmseg(ours):
    """MMSeg's test_pipeline resizes to fit `scale` keeping the ratio, then normalises: ours, number for number."""
    from mmengine.registry import DefaultScope
    from mmseg.registry import TRANSFORMS
    from paddleseg.cvlibs import manager

    cfg, mm = load_config(os.path.join(ROOT, "configs", ours + ".yml")), _mmseg_cfg(PIPELINE_ROWS[ours])
    val = cfg["val_dataset"]["transforms"]
    assert [t["type"] for t in val] == ["MMSegResize", "Normalize"], val
    mm_types = [t["type"] for t in mm.test_dataloader.dataset.pipeline]
    assert mm_types == ["LoadImageFromFile", "Resize", "LoadAnnotations", "PackSegInputs"], mm_types
    resize = manager.TRANSFORMS["MMSegResize"](**{k: v for k, v in val[0].items() if k != "type"})
    mmlab.mmseg_registry()
    with DefaultScope.overwrite_default_scope("mmseg"):
        m_resize = TRANSFORMS.build(mm.test_dataloader.dataset.pipeline[1])
    got, want = (resize.scale, resize.keep_ratio), (tuple(m_resize.scale), m_resize.keep_ratio)
    assert got == want, f"{ours} val resize {got} vs MMSeg {want}"
    assert cfg["val_dataset"]["transforms"][1] == cfg["train_dataset"]["transforms"][4], "val and train normalise alike"


def _cut(mm_model_cfg):
    """MMSeg's model config at DEPTH blocks, plain BN, no pretrained file."""
    m = copy.deepcopy(mm_model_cfg)
    m.pop("data_preprocessor", None)
    m.pop("pretrained", None)
    m.backbone.num_layers = DEPTH
    if isinstance(m.backbone.get("out_indices", -1), (list, tuple)):
        m.backbone.out_indices = tuple(range(DEPTH))
    for head in ("decode_head", "auxiliary_head"):
        if m.get(head) and "norm_cfg" in m[head]:
            m[head].norm_cfg = dict(type="BN", requires_grad=True)
    return m


def _normalized(model):
    """Constructor arguments with defaults filled in, training-only values (dropout, pretrained) left out."""
    cls = tm.UPerNetViT if model["type"] == "UPerNetViT" else tm.Segmenter
    out = {k: v.default for k, v in inspect.signature(cls).parameters.items() if v.default is not inspect._empty}
    out.update(copy.deepcopy(model))
    bb = {k: v.default for k, v in inspect.signature(tm.SegmenterViT).parameters.items()}
    bb.update(out["backbone"])
    bb["img_size"] = [bb["img_size"]] * 2 if isinstance(bb["img_size"], int) else list(bb["img_size"])
    out["backbone"] = bb
    for part in ("backbone", "decoder", "decode_head", "auxiliary_head"):
        for k in ("drop_rate", "attn_drop_rate", "drop_path_rate", "drop_path_mode", "pretrained", "dropout"):
            (out.get(part) or {}).pop(k, None)
        for k, v in (out.get(part) or {}).items():
            if isinstance(v, int) and not isinstance(v, bool) and k in ("mlp_ratio",):
                out[part][k] = float(v)
    out.pop("pretrained", None)
    return out


@pytest.mark.parametrize("ours", sorted(ROWS))
def test_architecture_is_what_the_converter_reads_from_mmseg(ours):
    """MMSeg's model from its config -> its weights -> our converter -> the model section; ours must equal it."""
    linspace = torch.linspace  # MMSeg reads its drop-path rates with .item(): keep that one tensor real
    # Shapes are all the converter needs to read the architecture: build on the meta device (no memory, no init).
    with torch.device("meta"), mock.patch.object(torch, "linspace", lambda *a, **k: linspace(*a, **k, device="cpu")):
        mm_model = mmlab.mmseg_registry().build(_cut(_mmseg_cfg(ROWS[ours]).model))
    raw = {k: np.empty(v.shape, np.float32) for k, v in mm_model.state_dict().items()}
    derived = _normalized(model_config(to_canonical(raw, "mmseg", ROWS[ours]).arch, None))
    mine = load_config(os.path.join(ROOT, "configs", ours + ".yml"))["model"]
    mine["num_classes"] = 150
    mine["backbone"]["depth"] = DEPTH
    if mine["backbone"].get("out_indices"):
        mine["backbone"]["out_indices"] = list(range(DEPTH))
    with torch.device("meta"):
        build_model({"model": copy.deepcopy(mine)})  # the twin builds it (unknown keys fail here)
    mine = _normalized(mine)
    assert mine == derived, f"{ours}:\n ours    {mine}\n derived {derived}"


@pytest.mark.parametrize("ours", sorted(V0_ROWS))
def test_v0_recipe_numbers_follow_the_release(ours):
    """The numbers of PR #520's configs at 4d77761 and of v0.x's bases (`_base_/models/upernet_vit-b16.py`,
    `_base_/datasets/ade20k.py` samples_per_gpu=4, `schedules/schedule_{80,160}k.py`), as read there."""
    cfg = load_config(os.path.join(ROOT, "configs", ours + ".yml"))
    width, heads, dpr, iters = V0_ROWS[ours]
    m = cfg["model"]
    bb, opt, lr = m["backbone"], cfg["optimizer"], cfg["lr_scheduler"]
    got = (
        bb["embed_dim"],
        bb["num_heads"],
        bb["depth"],
        bb["drop_path_rate"],
        bb["final_norm"],
        bb["norm_eps"],
        bb["pos_embed_interp"],
        bb["img_size"],
        bb["patch_bias"],
        bb["out_indices"],
        bb["patch_remainder"],
        bb["drop_path_mode"],
        cfg["iters"],
        cfg["batch_size"],
    )
    want = (width, heads, 12, dpr, False, 1e-6, "bicubic", 512, True, [11], "drop", "mlp_dropout", iters, 4)
    assert got == want, f"{ours} {got} vs v0.x {want}"
    got = (
        opt["type"],
        opt["beta1"],
        opt["beta2"],
        opt["weight_decay"],
        [c["name"] for c in opt["custom_cfg"]],
        [c["weight_decay_mult"] for c in opt["custom_cfg"]],
        lr["learning_rate"],
        lr["warmup_iters"],
        lr["warmup_start_lr"] / lr["learning_rate"],
        lr["power"],
        lr["end_lr"],
    )
    want = ("AdamW", 0.9, 0.999, 0.01, ["pos_embed", "cls_token", "norm"], [0.0] * 3, 6e-5, 1500, 1e-6, 1.0, 0.0)
    assert got[:-4] == want[:-4] and abs(got[-3] - want[-3]) < 1e-12 and got[-2:] == want[-2:], f"{got} vs {want}"
    got = (m["neck"], m["decode_head"], m["auxiliary_head"], cfg["loss"]["coef"], cfg["test_config"]["is_slide"])
    want = (
        {"scales": [0.5, 1, 2, 4]},
        {"channels": 512, "pool_scales": [1, 2, 3, 6], "dropout": 0.1},
        {"in_index": 0, "channels": 256, "num_convs": 1, "dropout": 0.1},
        [1, 0.4],
        False,
    )
    assert got == want, f"{ours} heads {got} vs v0.x {want}"


@pytest.mark.parametrize("ours", sorted(V0_ROWS))
def test_v0_architecture_is_what_the_converter_reads_from_mmseg(ours):
    """MMSeg 1.2.2's ViT + MultiLevelNeck + UPerHead + FCNHead configured as the v0.13 release (at DEPTH blocks)
    -> its weights under v0.x names (test_mmseg_v0's hand list) -> `mmseg0` converter -> the model section."""
    from parity_tests.test_mmseg_v0 import v0_name

    width, heads, _, _ = V0_ROWS[ours]
    linspace = torch.linspace
    with torch.device("meta"), mock.patch.object(torch, "linspace", lambda *a, **k: linspace(*a, **k, device="cpu")):
        mm_model = mmlab.mmseg_registry().build(
            mmlab.upernet_v0_cfg(depth=DEPTH, width=width, heads=heads, channels=512, aux_channels=256, img=512)
        )
    raw = {v0_name(k): np.empty(v.shape, np.float32) for k, v in mm_model.state_dict().items()}
    derived = _normalized(model_config(to_canonical(raw, "mmseg0", ours).arch, None))
    mine = load_config(os.path.join(ROOT, "configs", ours + ".yml"))["model"]
    mine["num_classes"] = 150
    mine["backbone"]["depth"] = DEPTH
    mine["backbone"]["out_indices"] = [DEPTH - 1]
    with torch.device("meta"):
        build_model({"model": copy.deepcopy(mine)})
    mine = _normalized(mine)
    assert mine == derived, f"{ours}:\n ours    {mine}\n derived {derived}"


@pytest.mark.parametrize("ours", sorted(V0_ROWS))
def test_v0_parameter_count_equals_mmseg(ours):
    """At full size (12 blocks, 150 classes, heads 512 / 256): our row's parameters (auxiliary head included) and
    MMSeg 1.2.2's model configured as the release, counted on the meta device."""
    width, heads, _, _ = V0_ROWS[ours]
    linspace = torch.linspace
    with torch.device("meta"), mock.patch.object(torch, "linspace", lambda *a, **k: linspace(*a, **k, device="cpu")):
        mm_model = mmlab.mmseg_registry().build(
            mmlab.upernet_v0_cfg(depth=12, width=width, heads=heads, channels=512, aux_channels=256, img=512)
        )
        mine = build_model(load_config(os.path.join(ROOT, "configs", ours + ".yml")))
    n_mm, n_ours = (sum(p.numel() for p in m.parameters()) for m in (mm_model, mine))
    print(f"{ours}: {n_ours / 1e6:.2f} M parameters (MMSeg {n_mm / 1e6:.2f} M)")
    assert n_ours == n_mm, f"{ours}: ours {n_ours} vs MMSeg {n_mm}"
