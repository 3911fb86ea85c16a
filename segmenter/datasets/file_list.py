"""A file-list dataset that checks its inputs: every bad path or value is an error naming the file and value."""

import os

import numpy as np
import paddle
from paddleseg.cvlibs import manager
from PIL import Image


@manager.DATASETS.add_component
class SegmenterFileList(paddle.io.Dataset):
    """Images and label PNGs listed one pair per line ("image_path label_path", relative to dataset_root).

    Args:
        dataset_root (str): Folder the paths in file_list are relative to.
        file_list (str): Text file with one "image label" pair per line.
        num_classes (int): Label values must lie in [0, num_classes) or equal ignore_index.
        mode (str, optional): 'train' adds random horizontal flips. Default: 'val'.
        ignore_index (int, optional): Label value left out of loss and metrics. Default: 255.
        mean (list, optional): Normalisation mean in [0, 1] units. Default: [0.5, 0.5, 0.5].
        std (list, optional): Normalisation std in [0, 1] units. Default: [0.5, 0.5, 0.5].
    """

    IMG_CHANNELS = 3
    IGNORE_INDEX = 255

    def __init__(
        self,
        dataset_root: str,
        file_list: str,
        num_classes: int,
        mode: str = "val",
        ignore_index: int = 255,
        mean: list = (0.5, 0.5, 0.5),
        std: list = (0.5, 0.5, 0.5),
    ):
        if not os.path.isdir(dataset_root):
            raise FileNotFoundError(f"dataset_root {dataset_root} does not exist; set dataset_root in the YAML.")
        if not os.path.isfile(file_list):
            raise FileNotFoundError(f"file_list {file_list} does not exist; set file_list in the YAML.")
        self.pairs = []
        with open(file_list) as f:
            for n, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2:
                    raise ValueError(f"{file_list} line {n}: expected 'image label', got {line.strip()!r}.")
                img, lab = (os.path.join(dataset_root, p) for p in parts)
                for p in (img, lab):
                    if not os.path.isfile(p):
                        raise FileNotFoundError(f"{file_list} line {n}: {p} does not exist.")
                self.pairs.append((img, lab))
        if not self.pairs:
            raise ValueError(f"file_list {file_list} lists no image; add 'image label' lines.")
        self.num_classes, self.mode, self.ignore_index = num_classes, mode, ignore_index
        self.mean = np.asarray(mean, np.float32)[:, None, None]
        self.std = np.asarray(std, np.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.pairs)

    @staticmethod
    def _open(path: str) -> Image.Image:
        try:
            im = Image.open(path)
            im.load()
            return im
        except Exception as e:
            raise ValueError(f"cannot decode {path}: {e}; replace or remove it from the file list.") from e

    def __getitem__(self, idx: int) -> dict:
        img_path, lab_path = self.pairs[idx]
        img = np.asarray(self._open(img_path).convert("RGB"))
        label = np.asarray(self._open(lab_path)).astype(np.int64)
        if label.ndim != 2 or label.shape != img.shape[:2]:
            raise ValueError(
                f"label {lab_path} has shape {label.shape} but image {img_path} is {img.shape[:2]}; "
                "labels must be single-channel PNGs of the image's size."
            )
        bad = (label >= self.num_classes) & (label != self.ignore_index) | (label < 0)
        if bad.any():
            raise ValueError(
                f"label {lab_path} holds value {int(label[bad][0])} outside [0, {self.num_classes}) "
                f"and not ignore_index {self.ignore_index}; fix the label or num_classes."
            )
        x = (img.transpose(2, 0, 1).astype(np.float32) / 255.0 - self.mean) / self.std  # [H, W, 3] -> [3, H, W]
        if self.mode == "train" and np.random.random() < 0.5:
            x, label = x[:, :, ::-1], label[:, ::-1]
        return {"img": np.ascontiguousarray(x), "label": np.ascontiguousarray(label)}
