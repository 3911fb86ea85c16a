"""What the demo page asks of a model, framework-free: decode an upload, predict, draw, and attention on a click.

`Demo` wraps the Inferencer (Paddle, or the PyTorch twin with framework="torch"): a prediction is the Inferencer's
own three steps (preprocess, probabilities, restore) with the page's slice / flip toggles, so its class map equals
`Inferencer(config, weights, is_slide=..., flip_horizontal=...)(image).pred`. Attention comes from
`segmenter.visualize.attention.attention_maps` on the network input of the last image. Every answer is a dict
ready for JSON; a user's mistake raises `DemoError` with the sentence the page shows.
"""

import base64
import io
import threading
import time
import warnings
from collections import OrderedDict
from typing import Any, Dict, Optional

import numpy as np
from PIL import Image

from segmenter.demo.samples import SAMPLES
from segmenter.demo.server import DemoError, size_text
from segmenter.visualize.attention import attention_maps, patch_grid
from segmenter.visualize.palette import overlay, palette

MAX_CLASS_PANELS = 8  # class attention / mask panels of a mask-transformer: the classes covering the most pixels
# The uploads kept for clicks: the newest KEEP_IMAGES, and fewer when their pixels pass KEEP_MB (the newest is always
# kept); past either cap the oldest goes first. A click on an evicted upload asks to upload it again.
KEEP_IMAGES = 8
KEEP_MB = 256  # RGB uint8: 8 uploads of 3000x3500, or 5 of 4096x4096 (48 MB each)


def png_data_url(rgb: np.ndarray) -> str:
    """An RGB uint8 [H, W, 3] (or a class map [H, W] as 8 or 16-bit grey) as a data: URL the page can show."""
    if rgb.ndim == 2:
        img = (
            Image.fromarray(rgb.astype(np.uint8), "L")
            if rgb.max(initial=0) < 256
            else Image.fromarray(rgb.astype(np.uint16), "I;16")
        )
    else:
        img = Image.fromarray(rgb)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)  # fast: this is on the upload-to-overlay path
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def colormap(maps: np.ndarray, name: str, lo: Optional[float] = None, hi: Optional[float] = None) -> np.ndarray:
    """[h, w] float -> RGB uint8 [h, w, 3] through a matplotlib colormap, lo..hi (default: the map's min..max, as
    the attention tool's imshow scales it)."""
    import matplotlib

    lo = float(maps.min()) if lo is None else lo
    hi = float(maps.max()) if hi is None else hi
    v = np.clip((maps - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(maps)
    return (matplotlib.colormaps[name](v)[..., :3] * 255).astype(np.uint8)


class Demo:
    """One model behind the page.

    Args:
        config: YAML config; weights: .pdparams (any format segmenter.convert reads with framework="torch") or a
            checkpoint folder; None keeps the random init.
        framework: "paddle" or "torch" (the twin).
        max_side: longest image side accepted, px. Default: 4096.
        max_bytes: largest upload, bytes. Default: 32 MiB.
        max_tokens: tokens of one forward (whole image, or a slice window). Default: 8192 (2048x1024 at patch 16).
        max_attn_bytes: memory of the attention weights one click computes (layers x heads x tokens^2 x 4 bytes).
            Default: 2 GiB.
        precision: "fp32" or "bf16", where the page's bf16 toggle starts (the Inferencer's precision, available on
            a CPU with bf16 arithmetic). Default: "fp32".
    """

    def __init__(
        self,
        config: str,
        weights: Optional[str] = None,
        framework: str = "paddle",
        max_side: int = 4096,
        max_bytes: int = 32 << 20,
        max_tokens: int = 8192,
        max_attn_bytes: int = 2 << 30,
        precision: str = "fp32",
    ):
        if framework == "torch":
            from segmenter.pytorch.inference import Inferencer

            self.seg = Inferencer(config, weights, precision=precision)
        else:
            from segmenter.inference import Inferencer

            self.seg = Inferencer(config, weights, precision=precision)
        self.precision = self.seg.precision  # the toggle's start; a request may ask for the other one
        self.config, self.weights, self.framework = config, weights, framework
        self.model = self.seg.model
        self.vit = self.model.backbone
        n = self.model.num_classes
        self.names = list(self.seg.names)  # the config's class_names(_file), or the dataset's standard names
        self.palette = palette(n)
        self.base_kwargs = dict(self.seg.infer_kwargs)
        self.can_slide = bool(self.base_kwargs.get("crop_size") and self.base_kwargs.get("stride"))
        self.max_side, self.max_bytes, self.max_tokens, self.max_attn_bytes = (
            max_side,
            max_bytes,
            max_tokens,
            max_attn_bytes,
        )
        self.bf16_why = self.bf16_unavailable()
        self.samples = {name: draw() for name, draw in SAMPLES.items()}
        self.images: "OrderedDict[str, Dict[str, Any]]" = OrderedDict()  # the last few uploads, for clicks
        self.lock = threading.Lock()  # one model call at a time; the page's server has a thread per request
        self.runs = 0

    # -- what the page shows before any image -------------------------------------------------------------------
    def describe(self) -> str:
        decoder = getattr(self.model, "decoder", None)
        head = {"MaskTransformer": "mask transformer", "DecoderLinear": "linear"}.get(type(decoder).__name__, "")
        kind = f"Segmenter ({head} decoder)" if head else type(self.model).__name__
        framework = "PyTorch twin" if self.framework == "torch" else "Paddle"
        return (
            f"{kind}, ViT {self.vit.depth} blocks x {self.vit.blocks[0].attn.num_heads} heads, patch "
            f"{self.vit.patch_size}, {len(self.names)} classes ({framework})"
        )

    def info(self) -> Dict[str, Any]:
        kw = self.base_kwargs
        return {
            "config": self.config,
            "weights": self.weights or "random init",
            "model": self.describe(),
            "framework": self.framework,
            "names": self.names,
            "colors": ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in self.palette],
            "depth": self.vit.depth,
            "heads": self.vit.blocks[0].attn.num_heads,
            "patch": self.vit.patch_size,
            "mask_decoder": self.has_class_masks(),
            "slide": {
                "available": self.can_slide,
                "default": bool(kw.get("is_slide")),
                "crop_size": kw.get("crop_size"),
                "stride": kw.get("stride"),
            },
            "flip": {"default": bool(kw.get("flip_horizontal"))},
            "bf16": {"available": not self.bf16_why, "default": self.precision == "bf16", "why": self.bf16_why},
            "limits": {"max_side": self.max_side, "max_bytes": self.max_bytes, "max_tokens": self.max_tokens},
            "samples": [{"name": k, "size": list(v.shape[:2])} for k, v in self.samples.items()],
        }

    def bf16_unavailable(self) -> str:
        """Why this machine cannot run the model in bf16 ('' where it can): the CPU, or paddle's device / fast path."""
        from segmenter.runtime import check_precision

        try:
            check_precision("bf16", "the bf16 toggle:")
            if self.framework != "torch":
                from segmenter.engine.compiled import inference_model

                inference_model(self.model, self.seg.fast_path, "bf16")  # the device and the fast path
        except ValueError as e:
            return str(e)
        return ""

    def has_class_masks(self) -> bool:
        return type(getattr(self.model, "decoder", None)).__name__ == "MaskTransformer"

    def sample_png(self, name: str) -> bytes:
        if name not in self.samples:
            raise DemoError(f"no sample named {name!r}; the samples are {', '.join(self.samples)}.")
        buf = io.BytesIO()
        Image.fromarray(self.samples[name]).save(buf, format="PNG")
        return buf.getvalue()

    # -- an upload -> the prediction ---------------------------------------------------------------------------
    def decode(self, data: bytes, name: str = "the upload") -> np.ndarray:
        """RGB uint8 [H, W, 3] of an uploaded file; a file that is not an image, or is too large, is a DemoError."""
        if len(data) > self.max_bytes:
            raise DemoError(
                f"{name} is {size_text(len(data))}; the limit is {size_text(self.max_bytes)} (--max_mb): "
                "upload a smaller file."
            )
        if not data:
            raise DemoError(f"{name} is empty: pick an image file (PNG, JPEG, BMP, TIFF, WebP).")
        too_big = f"the limit is {self.max_side} px on the longest side (--max_side): resize it first."
        try:
            with warnings.catch_warnings():  # the side limit below is ours, checked before decoding the pixels
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
            w, h = img.size  # read from the header: nothing is decoded yet
        except Image.DecompressionBombError as e:  # PIL's own limit, far above max_side's
            raise DemoError(f"{name} is too large ({e}); {too_big}") from None
        except Exception:
            raise DemoError(f"{name} is not an image PIL can read: pick a PNG, JPEG, BMP, TIFF or WebP file.") from None
        if max(h, w) > self.max_side:
            raise DemoError(f"{name} is {w}x{h} px; {too_big}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                return np.asarray(img.convert("RGB"))
        except Exception as e:
            raise DemoError(
                f"{name} ({w}x{h} {img.format}) could not be decoded ({e}): the file may be truncated or "
                "damaged; save it again or pick another."
            ) from None

    def check_tokens(self, h: int, w: int, slide: bool) -> None:
        """A forward over more than max_tokens patches is refused before it runs (attention is quadratic)."""
        cw, ch = self.base_kwargs["crop_size"] if slide else (w, h)  # PaddleSeg's order: [width, height]
        gh, gw = patch_grid(min(ch, h), min(cw, w), self.vit.stride)
        if gh * gw > self.max_tokens:
            hint = "turn on slice" if self.can_slide and not slide else "upload a smaller image"
            raise DemoError(
                f"this {w}x{h} px input is {gh * gw} patches of {self.vit.stride} px in one forward; "
                f"the limit is {self.max_tokens} (--max_tokens): {hint}."
            )

    def predict(
        self,
        data: bytes,
        slide: Optional[bool] = None,
        flip: Optional[bool] = None,
        name: str = "the upload",
        bf16: Optional[bool] = None,
    ) -> Dict[str, Any]:
        """Class map, overlay, per-class area and timings of one uploaded file."""
        t = [time.perf_counter()]
        image = self.decode(data, name)
        t.append(time.perf_counter())
        slide = self.base_kwargs["is_slide"] if slide is None else (slide and self.can_slide)
        flip = self.base_kwargs["flip_horizontal"] if flip is None else flip
        precision = self.precision if bf16 is None else ("bf16" if bf16 else "fp32")
        if precision == "bf16" and self.bf16_why:
            raise DemoError(self.bf16_why)
        with self.lock:
            x, trans_info = self.seg.preprocess(image)  # [3, h, w]: the config's val transforms
            self.check_tokens(x.shape[1], x.shape[2], slide)
            t.append(time.perf_counter())
            self.seg.infer_kwargs = {**self.base_kwargs, "is_slide": slide, "flip_horizontal": flip}
            self.seg.precision = precision
            try:
                probs = self.seg._probs(x[None])[0]  # [C, h, w]
            finally:
                self.seg.infer_kwargs = dict(self.base_kwargs)
                self.seg.precision = self.precision
            t.append(time.perf_counter())
            pred = self.seg.restore(probs, trans_info).argmax(0)  # [H, W] at the image's size
            t.append(time.perf_counter())
            self.runs += 1
            image_id = str(self.runs)
            self.keep(image_id, image, slide)
        counts = np.bincount(pred.ravel(), minlength=len(self.names))
        areas = [
            {
                "id": int(c),
                "name": self.names[c],
                "color": "#%02x%02x%02x" % tuple(int(v) for v in self.palette[c]),
                "pixels": int(counts[c]),
                "percent": round(100.0 * counts[c] / pred.size, 2),
            }
            for c in np.argsort(-counts, kind="stable")
            if counts[c]
        ]
        out = {
            "id": image_id,
            "size": [int(image.shape[0]), int(image.shape[1])],
            "slide": slide,
            "flip": flip,
            "precision": precision,
            "image": png_data_url(image),
            "overlay": png_data_url(overlay(image, pred, self.palette, 0.5)),
            "mask": png_data_url(pred),
            "areas": areas,
        }
        t.append(time.perf_counter())
        steps = ("decode", "preprocess", "model", "restore", "render")
        out["timings_ms"] = {s: round(1000 * (b - a), 1) for s, a, b in zip(steps, t, t[1:])}
        out["timings_ms"]["server total"] = round(1000 * (t[-1] - t[0]), 1)
        return out

    def keep(self, image_id: str, image: np.ndarray, slide: bool) -> None:
        """Hold an upload for clicks (the picture only: a click preprocesses it again); evict as KEEP_* say."""
        self.images[image_id] = {"image": image, "slide": slide}
        held = lambda: sum(v["image"].nbytes for v in self.images.values()) / 2**20  # noqa: E731
        while len(self.images) > 1 and (len(self.images) > KEEP_IMAGES or held() > KEEP_MB):
            self.images.popitem(last=False)  # the oldest

    # -- a click -> attention ------------------------------------------------------------------------------------
    def attention(self, image_id: str, y: int, x: int, layer: int = -1) -> Dict[str, Any]:
        """Per-head attention of the patch under pixel (y, x) of the image (original pixels) in encoder `layer`,
        and for a mask transformer each class's attention and mask, over the window the prediction used."""
        t0 = time.perf_counter()
        if image_id not in self.images:
            raise DemoError(
                f"that image is no longer held by the server (it keeps the last {KEEP_IMAGES}): upload it again."
            )
        held = self.images[image_id]
        image = held["image"]
        xin, _ = self.seg.preprocess(image)  # [3, h, w]: the network input of the prediction, made again
        H, W = image.shape[:2]
        h, w = xin.shape[1:]
        if not (0 <= y < H and 0 <= x < W):
            raise DemoError(f"pixel (y={y}, x={x}) is outside the {W}x{H} image.")
        if not -self.vit.depth <= layer < self.vit.depth:
            raise DemoError(f"layer {layer}: the encoder has {self.vit.depth} blocks (0..{self.vit.depth - 1}).")
        py, px = int(y * h / H), int(x * w / W)  # the network input may be resized by the val transforms
        slide = held["slide"]
        # the windows as the engine places them (engine.infer.slide_logits reads crop_size and stride as (h, w))
        crop = tuple(self.base_kwargs["crop_size"]) if slide else None  # PaddleSeg's order: (width, height)
        stride = tuple(self.base_kwargs["stride"]) if slide else None
        bh, bw = (min(crop[1], h), min(crop[0], w)) if crop else (h, w)
        gh, gw = patch_grid(bh, bw, self.vit.stride)
        tokens = gh * gw + self.vit.num_prefix_tokens
        need = 4 * self.vit.depth * self.vit.blocks[0].attn.num_heads * tokens**2
        if need > self.max_attn_bytes:
            raise DemoError(
                f"the attention of this {bw}x{bh} px {'window' if slide else 'image'} takes "
                f"{size_text(need)} ({self.vit.depth} layers x {self.vit.blocks[0].attn.num_heads} "
                f"heads x {tokens}^2 tokens); the limit is {size_text(self.max_attn_bytes)} "
                f"(--max_attn_gb): {'turn on slice or ' if self.can_slide and not slide else ''}"
                "use a smaller image."
            )
        with self.lock:
            m = attention_maps(self.model, xin, layer, (py, px), crop, stride)
        y0, x0, bh, bw = m.box
        shown = image if (h, w) == (H, W) else np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
        win = shown[y0 : y0 + bh, x0 : x0 + bw]  # the page boxes the query patch on it (at least 10 px on screen)
        out = {
            "layer": m.layer,
            "query": list(m.query),
            "pixel": [py, px],
            "box": [y0, x0, bh, bw],
            "patch": m.patch_size,
            "window": png_data_url(np.ascontiguousarray(win)),
            "heads": [
                {"head": k, "min": float(a.min()), "max": float(a.max()), "png": png_data_url(colormap(a, "viridis"))}
                for k, a in enumerate(m.heads)
            ],
            "classes": [],
        }
        if m.class_masks is not None:
            area = np.bincount(m.class_masks.argmax(0).ravel(), minlength=m.class_masks.shape[0])
            for c in np.argsort(-area, kind="stable")[:MAX_CLASS_PANELS]:
                out["classes"].append(
                    {
                        "id": int(c),
                        "name": self.names[c],
                        "pixels": int(area[c]),
                        "attn_min": float(m.class_attn[c].min()),
                        "attn_max": float(m.class_attn[c].max()),
                        "attn": png_data_url(colormap(m.class_attn[c], "viridis")),
                        "mask": png_data_url(colormap(m.class_masks[c], "magma", 0.0, 1.0)),
                    }
                )
        out["timings_ms"] = {"attention": round(1000 * (time.perf_counter() - t0), 1)}
        return out
