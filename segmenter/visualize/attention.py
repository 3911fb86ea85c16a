"""Attention maps of a Segmenter or UPerNetViT, from the `return_attn` flag of its own forward (Paddle or twin).

For one query (a patch given by a pixel, or the class token) the attention of every head of one encoder layer
over the patches; for the mask-transformer decoder, each class embedding's attention over the patches and the
class's predicted mask. Maps are upsampled to the image (nearest per patch, as the official script does) and
cropped to it. Any size works (the model pads and resamples its position embedding); with sliding windows the
maps are those of the window that holds the query pixel.
"""

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from segmenter.resample import bilinear_weights
from segmenter.windows import window_starts

COLUMN_INCHES, ROW_INCHES = 3.2, 3.3  # one map of the grid figure, with its title (+0.8 in colour bars, +0.4 title)


@dataclass
class AttentionMaps:
    """Maps of one window of the image; all arrays float32 at the window's size h x w."""

    box: Tuple[int, int, int, int]  # (y0, x0, h, w) of the window in the image
    query: Optional[Tuple[int, int]]  # (row, col) of the query patch in the window's grid; None = class token
    layer: int
    patch_size: int
    heads: np.ndarray  # [num_heads, h, w] encoder attention of the query over the patches
    class_attn: Optional[np.ndarray] = None  # [n_cls, h, w] decoder class->patch attention, mean over heads
    class_masks: Optional[np.ndarray] = None  # [n_cls, h, w] softmax of the decoder's masks (the model's output)


def window_box(
    h: int, w: int, pixel: Optional[Tuple[int, int]], crop: Optional[Sequence[int]], stride: Optional[Sequence[int]]
) -> Tuple[int, int, int, int]:
    """The slide window (the engine's placement) holding `pixel` (first one in scan order; the class token takes
    the first window); the whole image without crop. crop and stride are (h, w)."""
    if crop is None:
        return 0, 0, h, w
    starts = [
        next(o for o in window_starts(size, c, s) if o <= p < o + c)
        for size, c, s, p in zip((h, w), crop, stride, pixel or (0, 0))
    ]
    return starts[0], starts[1], min(crop[0], h), min(crop[1], w)


def _upsample_patches(grid_maps: np.ndarray, patch: int, h: int, w: int) -> np.ndarray:
    """[K, gh, gw] -> [K, h, w]: each patch's value over its patch x patch pixels, cropped to the image."""
    return np.repeat(np.repeat(grid_maps, patch, axis=1), patch, axis=2)[:, :h, :w]


def patch_grid(h: int, w: int, patch: int) -> Tuple[int, int]:
    """Token grid of an h x w input: the models zero-pad bottom/right to whole patches."""
    return -(-h // patch), -(-w // patch)


def _run(model, x: np.ndarray, mask_decoder: bool):
    """Encoder tokens and attentions (and decoder masks/attentions) of the framework `model` belongs to, as numpy."""
    if type(model).__module__.startswith("segmenter.pytorch"):
        import torch

        with torch.no_grad():
            tokens, attns = model.backbone(torch.from_numpy(x), return_attn=True)
            dec = None
            if mask_decoder:
                grid = patch_grid(x.shape[2], x.shape[3], model.backbone.stride)
                masks, dattns = model.decoder(tokens[:, model.backbone.num_prefix_tokens :], grid, return_attn=True)
                dec = masks.numpy(), [a.numpy() for a in dattns]
        return [a.numpy() for a in attns], dec
    import paddle

    with paddle.no_grad():
        tokens, attns = model.backbone(paddle.to_tensor(x), return_attn=True)
        dec = None
        if mask_decoder:
            grid = patch_grid(x.shape[2], x.shape[3], model.backbone.stride)
            masks, dattns = model.decoder(tokens[:, model.backbone.num_prefix_tokens :], grid, return_attn=True)
            dec = masks.numpy(), [a.numpy() for a in dattns]
    return [a.numpy() for a in attns], dec


def attention_maps(
    model,
    image: np.ndarray,
    layer: int = -1,
    pixel: Optional[Tuple[int, int]] = None,
    crop_size: Optional[Sequence[int]] = None,
    stride: Optional[Sequence[int]] = None,
    decoder_layer: int = -1,
) -> AttentionMaps:
    """Attention maps of a Segmenter (Paddle or PyTorch) on one normalised image [3, H, W] float32.

    Args:
        layer: encoder block (negative counts from the end).
        pixel: (y, x) of the query patch in image pixels; None queries the class token.
        crop_size, stride: slide-window inference, PaddleSeg's [width, height] as in test_config; the maps are
            those of the window holding `pixel`.
        decoder_layer: mask-transformer block whose class->patch attention is shown.
    """
    _, H, W = image.shape
    vit = model.backbone
    if pixel is not None and not (0 <= pixel[0] < H and 0 <= pixel[1] < W):
        raise ValueError(
            f"attention: pixel (y, x)={tuple(pixel)} is outside the {H}x{W} image; pick 0 <= y < {H}, 0 <= x < {W}."
        )
    if not -vit.depth <= layer < vit.depth:
        raise ValueError(f"attention: layer={layer} but the encoder has {vit.depth} blocks; use 0..{vit.depth - 1}.")
    # MMSeg's ViT (UPerNet) drops the prefix tokens after the position embedding: its blocks attend patches only
    prefix = vit.num_prefix_tokens if vit.with_cls_token else 0
    if pixel is None and not prefix:
        raise ValueError(
            "attention: this backbone has no class token in its blocks (with_cls_token: False, as "
            "MMSeg's UPerNet); pass a pixel to query a patch."
        )
    y0, x0, h, w = window_box(H, W, pixel, crop_size and crop_size[::-1], stride and stride[::-1])  # as (h, w)
    x = np.ascontiguousarray(image[None, :, y0 : y0 + h, x0 : x0 + w], np.float32)  # [1, 3, h, w]
    p = vit.stride  # pixels per token: the patch, or the hybrid stem's stride times its patch
    gh, gw = patch_grid(h, w, vit.stride)  # the model pads to whole patches
    mask_decoder = type(getattr(model, "decoder", None)).__name__ == "MaskTransformer"
    attns, dec = _run(model, x, mask_decoder)
    if pixel is None:
        q, query = 0, None
    else:
        query = ((pixel[0] - y0) // p, (pixel[1] - x0) // p)
        q = prefix + query[0] * gw + query[1]
    a = attns[layer][0, :, q, prefix:].reshape(-1, gh, gw)  # [heads, N] -> [heads, gh, gw]
    out = AttentionMaps((y0, x0, h, w), query, layer % vit.depth, p, _upsample_patches(a, p, h, w))
    if dec is not None:
        masks, dattns = dec
        n_cls = masks.shape[1]
        ca = dattns[decoder_layer][0, :, -n_cls:, : gh * gw].mean(0).reshape(n_cls, gh, gw)  # [n_cls, N] -> grid
        out.class_attn = _upsample_patches(ca, p, h, w)
        # the model's own upsampling (bilinear, align_corners=False) to the padded size, then the crop
        up = bilinear_weights(gh, gh * p) @ masks[0] @ bilinear_weights(gw, gw * p).T  # [n_cls, gh*p, gw*p]
        up = up[:, :h, :w]
        e = np.exp(up - up.max(0, keepdims=True))
        out.class_masks = (e / e.sum(0, keepdims=True)).astype(np.float32)
    return out


def draw_attention_grid(
    image: np.ndarray, maps: AttentionMaps, path: str, names: Optional[Sequence[str]] = None, max_classes: int = 8
) -> str:
    """A labelled PNG grid: the window with the query marked, then one map per head (row 1); for a mask decoder
    also each class's attention (row 2) and predicted mask (row 3) for the `max_classes` classes covering the
    most pixels. image: the RGB uint8 picture [H, W, 3] the maps were computed on."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y0, x0, h, w = maps.box
    win = image[y0 : y0 + h, x0 : x0 + w]
    heads = maps.heads.shape[0]
    classes = []
    if maps.class_masks is not None:
        area = np.bincount(maps.class_masks.argmax(0).ravel(), minlength=maps.class_masks.shape[0])
        classes = [int(c) for c in np.argsort(-area, kind="stable")[:max_classes]]
        names = list(names) if names is not None else [f"class {c}" for c in range(len(area))]
    rows, cols = (3 if classes else 1), max(heads + 1, len(classes) + 1)
    # at 100 dpi 4 columns are 1360 px (colour bars included); constrained layout keeps titles off the row above
    fig, axes = plt.subplots(
        rows, cols, figsize=(COLUMN_INCHES * cols + 0.8, ROW_INCHES * rows + 0.4), squeeze=False, layout="constrained"
    )
    for ax in axes.ravel():
        ax.axis("off")
    where = "class token" if maps.query is None else f"patch (row {maps.query[0]}, col {maps.query[1]})"
    axes[0, 0].imshow(win)
    axes[0, 0].set_title(f"window y{y0} x{x0}" if (h, w) != image.shape[:2] else "image", fontsize=11)
    if maps.query is not None:  # the query patch as a red box
        ps = maps.patch_size
        axes[0, 0].add_patch(
            plt.Rectangle(
                (maps.query[1] * ps - 0.5, maps.query[0] * ps - 0.5), ps, ps, fill=False, edgecolor="red", linewidth=1.5
            )
        )

    def row(r: int, maps_: list, titles: list, label: str, cmap: str, top: float) -> None:
        """Maps on one colour scale 0..top for the whole row, with its colour bar."""
        for j, (m, t) in enumerate(zip(maps_, titles)):
            im = axes[r, j + 1].imshow(m, cmap=cmap, vmin=0, vmax=top)
            axes[r, j + 1].set_title(t, fontsize=11)
        fig.colorbar(im, ax=list(axes[r, 1:]), shrink=0.85, pad=0.01).set_label(label, fontsize=10)

    row(
        0,
        list(maps.heads),
        [f"layer {maps.layer} head {k}" for k in range(heads)],
        "attention weight (one scale per row)",
        "viridis",
        float(maps.heads.max()) or 1.0,
    )
    fig.suptitle(f"encoder attention of the {where}; colour bars give each row's scale", fontsize=13)
    if classes:
        axes[1, 0].imshow(win)
        axes[1, 0].set_title("class attention", fontsize=11)
        axes[2, 0].imshow(win)
        axes[2, 0].set_title("class mask", fontsize=11)
        row(
            1,
            [maps.class_attn[c] for c in classes],
            [f"{names[c]} (attn)" for c in classes],
            "attention weight",
            "viridis",
            float(maps.class_attn[classes].max()) or 1.0,
        )
        row(
            2,
            [maps.class_masks[c] for c in classes],
            [f"{names[c]} (mask)" for c in classes],
            "mask probability",
            "magma",
            1.0,
        )
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
