"""Tiny models for the demo tests: shipped configs with depth (and width) overrides, and seeded random weights."""

import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name -> (shipped config, overrides appended under it)
TINY = {
    "linear": (
        "configs/quickstart/segmenter_tiny_shapes_64.yml",
        "model:\n  backbone:\n    depth: 1\n    embed_dim: 32\n    num_heads: 2\n",
    ),
    "mask": (
        "configs/segmenter/segmenter_vit_small_mask_ade20k_512x512_160k.yml",
        "model:\n  backbone:\n    depth: 1\n    embed_dim: 64\n    num_heads: 2\n"
        "  decoder:\n    n_layers: 1\n    d_model: 64\n    n_heads: 2\n"
        # the shipped val pipeline (ResizeByShort, Normalize) and slice windows, scaled down 512 -> 96
        "val_dataset:\n  transforms:\n    - {type: ResizeByShort, short_size: 96}\n"
        "    - {type: Normalize, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}\n"
        "test_config:\n  is_slide: True\n  crop_size: [64, 64]\n  stride: [48, 48]\n",
    ),
    "upernet": (
        "configs/upernet_vit/upernet_deit_s16_ade20k_512x512_160k.yml",
        "model:\n  backbone:\n    depth: 2\n    embed_dim: 32\n    num_heads: 2\n    out_indices: [0, 1]\n"
        "  decode_head:\n    channels: 16\n  auxiliary_head: null\n",
    ),
}


def tiny_config(tmp_path, name: str) -> str:
    """A YAML under tmp_path whose _base_ is the shipped config of `name`, with the tiny overrides."""
    base, overrides = TINY[name]
    path = os.path.join(str(tmp_path), f"tiny_{name}.yml")
    with open(path, "w") as f:
        f.write(f"_base_: {os.path.join(ROOT, base)}\n{overrides}")
    return path


def random_weights(config: str, path: str, seed: int = 0) -> str:
    """Seeded random weights of the config's Paddle model, saved as a .pdparams."""
    import paddle

    from segmenter.engine.builder import Builder
    from segmenter.engine.run import load_config

    paddle.seed(seed)
    model = Builder(load_config(config)).model
    paddle.save(model.state_dict(), path)
    return path


def odd_image(h: int = 75, w: int = 103, seed: int = 0) -> np.ndarray:
    """An RGB uint8 picture of a size no patch divides: blobs of colour on noise, so classes vary."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(4):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(8, 24)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(100, 256, 3)
    return img
