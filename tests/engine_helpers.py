"""A tiny quickstart config for engine tests (embed 32, depth 2, 32 px)."""

import os

TINY_YAML = """
batch_size: 4
iters: 6
train_dataset: {type: SegmenterShapes, num_samples: 16, img_size: 32, max_shapes: 2, seed: 0, mode: train}
val_dataset: {type: SegmenterShapes, num_samples: 4, img_size: 48, max_shapes: 2, seed: 1, mode: val}
model:
  type: Segmenter
  num_classes: 4
  backbone: {type: SegmenterViT, img_size: 32, patch_size: 8, in_channels: 3, embed_dim: 32, depth: 2,
             num_heads: 2, mlp_ratio: 2, qkv_bias: True, distilled: False, norm_eps: 1.0e-06,
             pos_embed_interp: bilinear, drop_rate: 0.1, attn_drop_rate: 0.0, drop_path_rate: 0.1,
             pretrained: null}
  decoder: {name: linear}
optimizer: {type: AdamW, weight_decay: 0.01}
lr_scheduler: {type: PolynomialDecay, learning_rate: 0.001, end_lr: 1.0e-05, power: 0.9}
loss: {types: [{type: SegmenterCrossEntropyLoss}], coef: [1]}
test_config: {is_slide: True, crop_size: [32, 32], stride: [16, 16]}
"""


def write_tiny_config(tmp_path) -> str:
    """Write the tiny YAML under tmp_path and return its path."""
    path = os.path.join(str(tmp_path), "tiny.yml")
    with open(path, "w") as f:
        f.write(TINY_YAML)
    return path
