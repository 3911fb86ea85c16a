"""Three lines of Python to segment images: `Inferencer(config, weights)(images)`.

    from segmenter import Inferencer
    seg = Inferencer("configs/quickstart/segmenter_tiny_shapes_64.yml", "output/best_model")
    out = seg("img.jpg")            # or an RGB uint8 array, a list of either, or a folder
    out.pred                        # [H, W] class map at the original size
    out.save("pred.png")            # overlay + colour legend

The framework-free part (reading inputs, normalising, batching, results) is `BaseInferencer`, shared with the
PyTorch twin `segmenter.pytorch.inference.Inferencer`; only `_load` and `_probs` touch a framework, which is why
Paddle is imported inside them rather than at the top (the twin must import this file without Paddle).
"""

import os
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from segmenter.shards import launched, share
from segmenter.visualize.palette import class_names, legend, overlay, palette

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ImageInput = Union[str, np.ndarray]


@dataclass
class Prediction:
    """The result for one image: `pred` [H, W] int64 at the original size, `probs` [C, H, W] if asked for."""

    image: np.ndarray  # RGB uint8 [H, W, 3]
    pred: np.ndarray
    names: List[str]
    probs: Optional[np.ndarray] = None
    path: Optional[str] = None

    def overlay(self, alpha: float = 0.5, with_legend: bool = True) -> np.ndarray:
        """RGB uint8 image with the class colours blended in, and a legend of the classes present under it."""
        pal = palette(len(self.names))
        out = overlay(self.image, self.pred, pal, alpha)
        if with_legend:
            strip = legend(self.names, pal, out.shape[1], [int(c) for c in np.unique(self.pred)])
            out = np.concatenate([out, strip], axis=0)  # [H + legend, W, 3]
        return out

    def save(self, path: str, alpha: float = 0.5) -> str:
        """Write the overlay with its legend as a PNG."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        Image.fromarray(self.overlay(alpha)).save(path)
        return path

    def show(self, alpha: float = 0.5) -> None:
        """Show the overlay with matplotlib (in a notebook, inline)."""
        import matplotlib.pyplot as plt

        plt.figure(figsize=(8, 8 * self.image.shape[0] / self.image.shape[1]))
        plt.imshow(self.overlay(alpha))
        plt.axis("off")
        plt.show()


class Predictions(list):
    """The Predictions of a list or a folder, in input order; `skipped` holds (path, why) of each image left out
    because it does not decode (only with skip_unreadable=True; otherwise such an image raises)."""

    skipped: List[Tuple[str, str]]

    def __init__(self, items: Sequence[Prediction] = (), skipped: Sequence[Tuple[str, str]] = ()):
        super().__init__(items)
        self.skipped = list(skipped)


def read_images(
    inputs: Union[ImageInput, Sequence[ImageInput]], skip_unreadable: bool = False, shard: bool = True
) -> tuple[list[np.ndarray], list[Optional[str]], bool, list[Tuple[str, str]]]:
    """(RGB uint8 images, their paths or None, whether one image was given, (path, why) of each image skipped) of a
    path, array, list or folder. A folder under paddle.distributed.launch gives this rank its share of the sorted
    files (segmenter.shards) unless shard is False. A file that does not decode raises, or with skip_unreadable
    is left out of a list or folder and reported in the fourth item."""
    single = isinstance(inputs, np.ndarray) or (isinstance(inputs, str) and not os.path.isdir(inputs))
    if isinstance(inputs, str) and os.path.isdir(inputs):
        items = sorted(os.path.join(inputs, f) for f in os.listdir(inputs) if f.lower().endswith(IMAGE_EXTS))
        if not items:
            raise FileNotFoundError(f"Inferencer: folder {inputs} holds no image ({', '.join(IMAGE_EXTS)}).")
        if shard:
            items = share(items, *launched())
    else:
        items = [inputs] if single else list(inputs)
    images, paths, skipped = [], [], []
    for it in items:
        if isinstance(it, str):
            if not os.path.isfile(it):
                raise FileNotFoundError(
                    f"Inferencer: image {it} does not exist; pass an image file, a folder, "
                    "or an RGB uint8 array [H, W, 3]."
                )
            try:
                images.append(np.asarray(Image.open(it).convert("RGB")))
            except Exception as e:  # noqa: BLE001  (any decoder error means the same: the file is damaged)
                if single or not skip_unreadable:
                    raise ValueError(
                        f"Inferencer: cannot decode image {it}: {e} (pass skip_unreadable=True to leave such "
                        "images out of a list or folder)"
                    ) from e
                skipped.append((it, f"{type(e).__name__}: {e}"))
                continue
            paths.append(it)
        else:
            a = np.asarray(it)
            if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
                raise ValueError(
                    f"Inferencer: an array input must be RGB uint8 [H, W, 3]; got {a.dtype} "
                    f"{list(a.shape)}. Convert with np.asarray(PIL.Image.open(f).convert('RGB'))."
                )
            images.append(a)
            paths.append(None)
    return images, paths, single, skipped


class BaseInferencer:
    """Framework-free part of the inferencers: normalise like the val set, batch same-size images, wrap results.

    Args:
        val_cfg: the config's val_dataset section (its mean/std normalise the images; default 0.5/0.5).
        infer_kwargs: predict_probs options (is_slide, crop_size, stride, window_batch_size, flip_horizontal, scales).
        num_classes, dataset_type: for the class names of the legend.
    """

    def __init__(
        self,
        val_cfg: Dict[str, Any],
        infer_kwargs: Dict[str, Any],
        num_classes: int,
        dataset_type: Optional[str] = None,
        names: Optional[Sequence[str]] = None,
        batch_size: int = 4,
    ):
        self.mean = np.asarray(val_cfg.get("mean", (0.5, 0.5, 0.5)), np.float32)[:, None, None]
        self.std = np.asarray(val_cfg.get("std", (0.5, 0.5, 0.5)), np.float32)[:, None, None]
        self.infer_kwargs = dict(infer_kwargs)
        self.names = class_names(num_classes, dataset_type, names)
        self.batch_size = batch_size

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, list]:
        """RGB uint8 [H, W, 3] -> (normalised float32 [3, h, w], trans_info), as the validation images were."""
        return ((image.transpose(2, 0, 1).astype(np.float32) / 255.0 - self.mean) / self.std).astype(np.float32), []

    def restore(self, probs: np.ndarray, trans_info: list) -> np.ndarray:
        """Probabilities [C, h, w] of the network input -> [C, H, W] at the image's original size."""
        return probs

    def __call__(
        self,
        inputs: Union[ImageInput, Sequence[ImageInput]],
        return_probs: bool = False,
        skip_unreadable: bool = False,
        shard: bool = True,
    ) -> Union[Prediction, Predictions]:
        """Segment a path, an RGB uint8 array, a list of them or a folder; one Prediction per image (Predictions,
        a list, unless a single image was given). Images of one size are run together, batch_size at a time.

        skip_unreadable: a file of a list or folder that does not decode is left out (named in a warning and in
            the result's `skipped`) instead of raising. Default: False.
        shard: a folder under paddle.distributed.launch gives each rank its share of the sorted files (every
            world-th from its rank on); False: every rank takes the whole folder. Default: True.
        """
        images, paths, single, skipped = read_images(inputs, skip_unreadable, shard)
        if skipped:
            first = "; ".join(f"{p} ({why})" for p, why in skipped[:3])
            warnings.warn(
                f"Inferencer: skipped {len(skipped)} of {len(images) + len(skipped)} images that cannot be decoded: "
                f"{first}{'; ...' if len(skipped) > 3 else ''}",
                stacklevel=2,
            )
        prepared = [self.preprocess(im) for im in images]  # (x [3, h, w], trans_info)
        by_size: Dict[tuple, List[int]] = {}
        for i, (x, _) in enumerate(prepared):
            by_size.setdefault(x.shape[1:], []).append(i)
        results: List[Optional[Prediction]] = [None] * len(images)
        for idx in by_size.values():
            for k in range(0, len(idx), self.batch_size):
                chunk = idx[k : k + self.batch_size]
                x = np.stack([prepared[i][0] for i in chunk])  # [B, 3, h, w]
                probs = self._probs(x)  # [B, C, h, w]
                for j, i in enumerate(chunk):
                    p = self.restore(probs[j], prepared[i][1])  # [C, H, W] at the original size
                    results[i] = Prediction(images[i], p.argmax(0), self.names, p if return_probs else None, paths[i])
        return results[0] if single else Predictions(results, skipped)

    def _probs(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Inferencer(BaseInferencer):
    """Segment images with a Paddle Segmenter built from a config, with the config's test_config (slide window,
    crop, stride) unless overridden; flip and scales as tools/val.py's --aug_eval. Images go through the config's
    val transforms exactly as tools/predict.py sends them (engine.predict.preprocess), and the probabilities come
    back to each image's original size through their trans_info (engine.infer.reverse_transform).

    Args:
        config: path of a YAML config (PaddleSeg format).
        weights: a .pdparams or a checkpoint folder (save_dir/best_model); None keeps the random init.
        batch_size: images of one size run together, this many at a time. Default: 4.
        opts: config overrides ["key=value", ...], as the tools' --opts. Default: None.
        verbose: log PaddleSeg's build messages with the resolved config. Default: False.
        **overrides: is_slide, crop_size, stride, window_batch_size, flip_horizontal, scales, fast_path (default
            None: test_config.fast_path, else on: each repeated input size of 512x512 and up compiled once, as
            segmenter.engine.compiled explains, so changing `self.model`'s weights afterwards needs a new
            Inferencer; False: the dygraph model throughout), precision (default None: test_config.precision, else
            "fp32"; "bf16": every input size through a oneDNN bf16 predictor, on a CPU with bf16 arithmetic;
            `self.precision` may be switched afterwards, as the demo page's toggle does).
    """

    def __init__(
        self,
        config: str,
        weights: Optional[str] = None,
        batch_size: int = 4,
        opts: Optional[List[str]] = None,
        verbose: bool = False,
        **overrides: Any,
    ):
        from segmenter.engine.builder import Builder
        from segmenter.engine.compiled import inference_model
        from segmenter.engine.run import class_names_of, load_config, load_model, test_kwargs

        cfg = load_config(config, opts, verbose=verbose)
        self.cfg = cfg
        kw = test_kwargs(cfg, overrides)  # an option's mistake is said before the model is built
        self.model = load_model(cfg, weights) if weights else Builder(cfg).model
        self.model.eval()
        train_type = (cfg.train_dataset_cfg or {}).get("type")
        self.fast_path, self.precision = kw.pop("fast_path"), kw.pop("precision")
        self.nets = {self.precision: inference_model(self.model, self.fast_path, self.precision)}
        super().__init__(
            cfg.val_dataset_cfg or {},
            kw,
            self.model.num_classes,
            train_type,
            names=class_names_of(cfg, self.model.num_classes),
            batch_size=batch_size,
        )

    @property
    def net(self):
        """What runs the model at `self.precision`: its CompiledModel (built on first use), or the model itself."""
        if self.precision not in self.nets:
            from segmenter.engine.compiled import inference_model
            from segmenter.runtime import check_precision

            check_precision(self.precision, "Inferencer: precision")
            self.nets[self.precision] = inference_model(self.model, self.fast_path, self.precision)
        return self.nets[self.precision]

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, list]:
        from segmenter.engine.predict import preprocess

        return preprocess(self.cfg, image)

    def restore(self, probs: np.ndarray, trans_info: list) -> np.ndarray:
        if not trans_info:
            return probs
        import paddle

        from segmenter.engine.infer import reverse_transform

        return reverse_transform(paddle.to_tensor(probs[None]), trans_info)[0].numpy()

    def _probs(self, x: np.ndarray) -> np.ndarray:
        import paddle

        from segmenter.engine.infer import predict_probs

        with paddle.no_grad():
            return predict_probs(self.net, paddle.to_tensor(x), **self.infer_kwargs).numpy()
