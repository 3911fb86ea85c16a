"""MMSegmentation's ADE20K train transforms as PaddleSeg transforms, draw for draw and pixel for pixel.

MMSeg (`_base_/datasets/ade20k.py`) trains on RandomResize(scale, ratio_range, keep_ratio) -> RandomCrop(crop_size,
cat_max_ratio) -> RandomFlip(prob) -> PhotoMetricDistortion, then its SegDataPreProcessor normalises and pads to
the crop size (image 0 after normalising, label 255). The four classes below redo those transforms on PaddleSeg's
data dict (`img`, `label`, `gt_fields`); PaddleSeg's own Normalize followed by Padding(im_padding_value 0,
label_padding_value 255) is the preprocessor's step. Every random number comes from the global np.random, in
MMSeg's order (ratio; crop offsets h, w per try; flip; brightness, mode, contrast, saturation, hue), so one seed
gives MMSeg's sample (parity_tests/test_mmseg_pipeline.py checks that against the real transforms).

Pixel formats. MMSeg decodes uint8 BGR and flips to RGB in its preprocessor; PaddleSeg decodes the same pixels to
float32 RGB. The first transform here turns that image back into uint8 (lossless: the values are whole numbers
0..255), because the rounding of cv2's uint8 resize and MMSeg's uint8 clipping are part of the result. Channel
order changes nothing: resizing, cropping and flipping act per channel, brightness and contrast add or scale
every channel alike, and cv2's RGB<->HSV conversions on RGB pixels equal its BGR<->HSV conversions on the same
pixels in BGR order. Labels must already be what MMSeg's LoadAnnotations(reduce_zero_label=True) gives:
PaddleSeg's ADE20K class shifts them (uint8 label - 1, so 0 'other' becomes 255) before the transforms run.
"""

from typing import Sequence

import cv2
import numpy as np
from paddleseg.cvlibs import manager


def _pair(value, name: str, kind: type, transform: str) -> tuple:
    """Two positive numbers of `kind` (an int is accepted for both), else an error naming the parameter."""
    pair = (value, value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    ok = (
        isinstance(pair, (list, tuple))
        and len(pair) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)
        and all((kind is float or float(v).is_integer()) and v > 0 for v in pair)
    )
    if not ok:
        raise ValueError(f"{transform}: {name} must be two positive {kind.__name__}s, got {value!r}.")
    return tuple(kind(v) for v in pair)


def _uint8(img: np.ndarray, transform: str) -> np.ndarray:
    """The decoded image as uint8; PaddleSeg's loader gives float32 holding whole numbers 0..255."""
    if img.dtype == np.uint8:
        return img
    out = img.astype(np.uint8)
    if img.min() < 0 or img.max() > 255 or not np.array_equal(out, img):
        raise ValueError(
            f"{transform} works on the decoded 0..255 image (MMSeg's uint8), but got {img.dtype} values "
            f"in [{img.min():.3g}, {img.max():.3g}]: put it before Normalize in the transforms list."
        )
    return out


@manager.TRANSFORMS.add_component
class MMSegRandomResize:
    """MMSeg's RandomResize(scale, ratio_range, keep_ratio): scale times one uniform ratio, then mmcv's imrescale.

    With keep_ratio the image is scaled by min(long(scale) / long side, short(scale) / short side) and each side
    rounded as int(side * factor + 0.5); without it the image is resized to scale. Image bilinear (cv2, uint8),
    labels nearest.

    Args:
        scale (list): (width, height) before the ratio, as MMSeg writes it. Default: (2048, 512).
        ratio_range (list): (min, max) of the uniform ratio. Default: (0.5, 2.0).
        keep_ratio (bool, optional): Keep the aspect ratio (fit inside the scaled box). Default: True.
    """

    def __init__(
        self, scale: Sequence[int] = (2048, 512), ratio_range: Sequence[float] = (0.5, 2.0), keep_ratio: bool = True
    ):
        self.scale = _pair(scale, "scale", int, "MMSegRandomResize")
        lo, hi = _pair(ratio_range, "ratio_range", float, "MMSegRandomResize")
        if lo > hi:
            raise ValueError(f"MMSegRandomResize: ratio_range must be (min, max) with min <= max, got {ratio_range!r}.")
        self.ratio_range, self.keep_ratio = (lo, hi), bool(keep_ratio)

    def __call__(self, data: dict) -> dict:
        lo, hi = self.ratio_range
        ratio = np.random.random_sample() * (hi - lo) + lo  # mmcv RandomResize._random_sample_ratio
        scale = int(self.scale[0] * ratio), int(self.scale[1] * ratio)  # (w, h)
        return _resize(data, scale, self.keep_ratio, "MMSegRandomResize")


def _resize(data: dict, scale: tuple, keep_ratio: bool, transform: str) -> dict:
    """mmcv's imrescale (keep_ratio) or imresize to scale (w, h): image bilinear on uint8, labels nearest."""
    img = _uint8(data["img"], transform)
    h, w = img.shape[:2]
    if keep_ratio:  # mmcv.rescale_size
        factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
        size = int(w * float(factor) + 0.5), int(h * float(factor) + 0.5)  # (w, h), mmcv's _scale_size
    else:
        size = scale
    data["img"] = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
    for key in data.get("gt_fields", []):
        data[key] = cv2.resize(data[key], size, interpolation=cv2.INTER_NEAREST)
    return data


@manager.TRANSFORMS.add_component
class MMSegResize:
    """MMSeg's test-time Resize(scale, keep_ratio): the image fitted inside scale, as MMSegRandomResize without the
    ratio (no random draw). Records ('resize', original (h, w)) in trans_info, as PaddleSeg's resizes do, so that
    evaluation resizes the prediction back to the label's size.

    PaddleSeg's ResizeByShort(short_size, max_size) gives the same size except on exact halves (it rounds to even),
    resizes the float image (MMSeg resizes uint8), and keeps a reduced short_size for every later image once one
    image was wider than max_size / short_size (it overwrites its own setting).

    Args:
        scale (list): (width, height), as MMSeg writes it. Default: (2048, 512).
        keep_ratio (bool, optional): Keep the aspect ratio (fit inside scale). Default: True.
    """

    def __init__(self, scale: Sequence[int] = (2048, 512), keep_ratio: bool = True):
        self.scale, self.keep_ratio = _pair(scale, "scale", int, "MMSegResize"), bool(keep_ratio)

    def __call__(self, data: dict) -> dict:
        data.setdefault("trans_info", []).append(("resize", data["img"].shape[0:2]))
        return _resize(data, self.scale, self.keep_ratio, "MMSegResize")


@manager.TRANSFORMS.add_component
class MMSegRandomCrop:
    """MMSeg's RandomCrop(crop_size, cat_max_ratio, ignore_index): a crop of at most crop_size, no padding.

    The offsets are drawn again (up to 10 more times) while one class covers cat_max_ratio or more of the crop's
    labelled pixels, or the crop holds fewer than two classes (ignore_index not counted); the last draw is kept.

    Args:
        crop_size (list): (height, width), MMSeg's order (PaddleSeg's RandomPaddingCrop takes (width, height)).
        cat_max_ratio (float, optional): Largest share one class may cover; 1 draws once. Default: 1.0.
        ignore_index (int, optional): Label value left out of the class count. Default: 255.
    """

    def __init__(self, crop_size: Sequence[int], cat_max_ratio: float = 1.0, ignore_index: int = 255):
        self.crop_size = _pair(crop_size, "crop_size", int, "MMSegRandomCrop")
        if isinstance(cat_max_ratio, bool) or not isinstance(cat_max_ratio, (int, float)) or not 0 < cat_max_ratio <= 1:
            raise ValueError(
                f"MMSegRandomCrop: cat_max_ratio must be a number in (0, 1] (1 = no check), got {cat_max_ratio!r}."
            )
        self.cat_max_ratio, self.ignore_index = float(cat_max_ratio), int(ignore_index)

    def _draw(self, h: int, w: int) -> tuple:
        """(y1, y2, x1, x2): offset h drawn before offset w, as MMSeg's generate_crop_bbox."""
        y = np.random.randint(0, max(h - self.crop_size[0], 0) + 1)
        x = np.random.randint(0, max(w - self.crop_size[1], 0) + 1)
        return y, y + self.crop_size[0], x, x + self.crop_size[1]

    def __call__(self, data: dict) -> dict:
        h, w = data["img"].shape[:2]
        box = self._draw(h, w)
        if self.cat_max_ratio < 1.0:
            if "label" not in data:
                raise ValueError("MMSegRandomCrop: cat_max_ratio < 1 needs data['label'] (a train dataset's label).")
            for _ in range(10):
                labels, counts = np.unique(data["label"][box[0] : box[1], box[2] : box[3]], return_counts=True)
                counts = counts[labels != self.ignore_index]
                if len(counts) > 1 and np.max(counts) / np.sum(counts) < self.cat_max_ratio:
                    break
                box = self._draw(h, w)
        y1, y2, x1, x2 = box
        for key in ["img", *data.get("gt_fields", [])]:
            data[key] = data[key][y1:y2, x1:x2, ...]
        return data


@manager.TRANSFORMS.add_component
class MMSegRandomFlip:
    """MMSeg's RandomFlip(prob) (horizontal): one np.random.choice draw, as mmcv's _choose_direction.

    Args:
        prob (float, optional): Probability of a horizontal flip. Default: 0.5.
    """

    def __init__(self, prob: float = 0.5):
        if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0 <= prob <= 1:
            raise ValueError(f"MMSegRandomFlip: prob must be a number in [0, 1], got {prob!r}.")
        self.prob = float(prob)

    def __call__(self, data: dict) -> dict:
        if np.random.choice(2, p=[self.prob, 1.0 - self.prob]) == 0:  # index 0 = 'horizontal', 1 = no flip
            for key in ["img", *data.get("gt_fields", [])]:
                data[key] = np.ascontiguousarray(data[key][:, ::-1, ...])
        return data


@manager.TRANSFORMS.add_component
class MMSegPhotoMetricDistortion:
    """MMSeg's PhotoMetricDistortion: brightness, contrast (first or last), saturation, hue, each with chance 1/2.

    Draws, in MMSeg's order: brightness on/off (+ delta), mode (1: contrast before saturation, 0: after), then
    contrast, saturation and hue on/off (+ factor or shift) as each step runs. Every step rounds to uint8 (values
    clipped to 0..255, truncated), saturation and hue go through cv2's 8-bit HSV (hue 0..179).

    Args:
        brightness_delta (int, optional): Brightness offset drawn from [-delta, delta). Default: 32.
        contrast_range (list, optional): (lower, upper) of the contrast factor. Default: (0.5, 1.5).
        saturation_range (list, optional): (lower, upper) of the saturation factor. Default: (0.5, 1.5).
        hue_delta (int, optional): Hue shift drawn from the integers in [-delta, delta). Default: 18.
    """

    def __init__(
        self,
        brightness_delta: int = 32,
        contrast_range: Sequence[float] = (0.5, 1.5),
        saturation_range: Sequence[float] = (0.5, 1.5),
        hue_delta: int = 18,
    ):
        name = "MMSegPhotoMetricDistortion"
        for key, v in (("brightness_delta", brightness_delta), ("hue_delta", hue_delta)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name}: {key} must be an integer >= 0, got {v!r}.")
        self.brightness_delta, self.hue_delta = brightness_delta, hue_delta
        self.contrast_range = _pair(contrast_range, "contrast_range", float, name)
        self.saturation_range = _pair(saturation_range, "saturation_range", float, name)
        for key, (lo, hi) in (("contrast_range", self.contrast_range), ("saturation_range", self.saturation_range)):
            if lo > hi:
                raise ValueError(f"{name}: {key} must be (lower, upper) with lower <= upper, got ({lo}, {hi}).")

    @staticmethod
    def _convert(img: np.ndarray, alpha=1, beta=0) -> np.ndarray:
        """img * alpha + beta in float32, clipped and truncated to uint8 (MMSeg's `convert`)."""
        return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def _contrast(self, img: np.ndarray) -> np.ndarray:
        if np.random.randint(2):
            return self._convert(img, alpha=np.random.uniform(*self.contrast_range))
        return img

    def __call__(self, data: dict) -> dict:
        img = _uint8(data["img"], "MMSegPhotoMetricDistortion")  # RGB: see the module docstring
        if np.random.randint(2):
            img = self._convert(img, beta=np.random.uniform(-self.brightness_delta, self.brightness_delta))
        mode = np.random.randint(2)
        if mode == 1:
            img = self._contrast(img)
        if np.random.randint(2):
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            hsv[:, :, 1] = self._convert(hsv[:, :, 1], alpha=np.random.uniform(*self.saturation_range))
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if np.random.randint(2):
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + np.random.randint(-self.hue_delta, self.hue_delta)) % 180
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if mode == 0:
            img = self._contrast(img)
        data["img"] = img
        return data
