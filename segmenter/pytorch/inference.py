"""Twin of `segmenter/inference.py` and `segmenter/engine/infer.py`: the Inferencer on the PyTorch model, with the
same whole / sliding-window / flip / multi-scale inference. Imports torch only, never Paddle."""

from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from segmenter.class_names import read_names
from segmenter.inference import BaseInferencer
from segmenter.pytorch.config import build_model, load_config
from segmenter.runtime import check_precision
from segmenter.windows import window_starts


def slide_logits(
    model: torch.nn.Module, x: torch.Tensor, crop: tuple[int, int], stride: tuple[int, int], window_batch_size: int = 1
) -> torch.Tensor:
    """Logits [B, C, H, W] averaged over overlapping windows (run window_batch_size at a time); crop and stride
    are (h, w)."""
    _, _, h, w = x.shape
    boxes = [(y, xx) for y in window_starts(h, crop[0], stride[0]) for xx in window_starts(w, crop[1], stride[1])]
    total, count = None, torch.zeros([1, 1, h, w], dtype=x.dtype)
    for i in range(0, len(boxes), window_batch_size):
        chunk = boxes[i : i + window_batch_size]
        crops = [x[:, :, y : y + crop[0], xx : xx + crop[1]] for y, xx in chunk]
        out = model(torch.cat(crops, dim=0))[0]  # [n * B, C, ch, cw]
        outs = torch.split(out, x.shape[0], dim=0)
        if total is None:
            total = torch.zeros([x.shape[0], out.shape[1], h, w], dtype=x.dtype)
        for (y, xx), o in zip(chunk, outs):
            ch, cw = o.shape[2], o.shape[3]
            total[:, :, y : y + ch, xx : xx + cw] += o
            count[:, :, y : y + ch, xx : xx + cw] += 1
    return total / count


def predict_probs(
    model: torch.nn.Module,
    x: torch.Tensor,
    is_slide: bool = False,
    crop_size=None,
    stride=None,
    window_batch_size: int = 1,
    flip_horizontal: bool = False,
    scales=(1.0,),
) -> torch.Tensor:
    """Softmax probabilities [B, C, H, W], averaged over scales and (optionally) horizontal flips."""
    h, w = x.shape[2], x.shape[3]
    acc = None
    for s in scales:
        xs = x if s == 1.0 else F.interpolate(x, size=[int(h * s + 0.5), int(w * s + 0.5)], mode="bilinear")
        inputs = [xs, torch.flip(xs, dims=[3])] if flip_horizontal else [xs]
        for k, xi in enumerate(inputs):
            if is_slide:
                # crop_size and stride are PaddleSeg's [width, height]; slide_logits takes (h, w)
                logits = slide_logits(
                    model, xi, (crop_size[1], crop_size[0]), (stride[1], stride[0]), window_batch_size
                )
            else:
                logits = model(xi)[0]
            if k == 1:
                logits = torch.flip(logits, dims=[3])
            if list(logits.shape[2:]) != [h, w]:
                logits = F.interpolate(logits, size=[h, w], mode="bilinear")
            p = F.softmax(logits, dim=1)
            acc = p if acc is None else acc + p
    return acc / (len(scales) * (2 if flip_horizontal else 1))


class Inferencer(BaseInferencer):
    """Segment images with the PyTorch twin built from the same YAML (see `segmenter.inference.Inferencer`).

    Args:
        config: path of a YAML config.
        weights: any weights file segmenter.convert reads (ours .pdparams, official, PaddleSeg, timm) or a
            checkpoint folder holding model.pdparams; None keeps the random init.
        batch_size: images of one size run together, this many at a time. Default: 4.
        **overrides: is_slide, crop_size, stride, window_batch_size, flip_horizontal, scales, precision (default
            None: test_config.precision, else "fp32"; "bf16": the forward under torch.autocast("cpu", bfloat16),
            so the two frameworks can be compared at bf16; a CPU with bf16 arithmetic, as the Paddle Inferencer).
    """

    def __init__(self, config: str, weights: Optional[str] = None, batch_size: int = 4, **overrides: Any):
        from segmenter.pytorch.weights import load_pretrained

        cfg = load_config(config)
        tc = dict(cfg.get("test_config") or {})
        precision = overrides.pop("precision", None)
        where = "precision" if precision is not None else f"config {config}: test_config.precision"
        self.precision = check_precision(tc.get("precision", "fp32") if precision is None else precision, where)
        self.model = build_model(cfg)
        if weights:
            load_pretrained(self.model, weights)  # a file or a checkpoint folder (convert.files.resolve_weights)
        self.model.eval()
        kw = {
            "is_slide": tc.get("is_slide", False),
            "crop_size": tc.get("crop_size"),
            "stride": tc.get("stride"),
            "window_batch_size": 1,
            "flip_horizontal": False,
            "scales": (1.0,),
        }
        unknown = sorted(set(overrides) - set(kw) - {"fast_path"})  # the twin has one path: fast_path is moot
        if unknown:
            raise TypeError(
                f"unknown inference option(s) {unknown}; the options are {sorted(kw)}"
                + (
                    " (opts/verbose are the Paddle Inferencer's: edit the YAML for the twin)"
                    if "opts" in unknown
                    else ""
                )
                + "."
            )
        overrides.pop("fast_path", None)
        kw.update({k: v for k, v in overrides.items() if v is not None})
        if kw["is_slide"] and (not kw["crop_size"] or not kw["stride"]):
            raise ValueError(
                f"{config}: slide inference needs crop_size and stride (got {kw['crop_size']}, "
                f"{kw['stride']}); set test_config in the YAML or pass crop_size=, stride=."
            )
        sections = [cfg.get(k) or {} for k in ("val_dataset", "train_dataset")]
        names = next((n for n in (read_names(s, f"config {config}: dataset") for s in sections) if n), None)
        super().__init__(
            cfg.get("val_dataset") or {},
            kw,
            self.model.num_classes,
            (cfg.get("train_dataset") or {}).get("type"),
            names=names,
            batch_size=batch_size,
        )

    def _probs(self, x: np.ndarray) -> np.ndarray:
        # bf16: autocast runs the matmuls, convs and SDPA in bf16 and keeps softmax, LayerNorm and the sums in fp32
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return predict_probs(self.model, torch.from_numpy(x), **self.infer_kwargs).float().numpy()
