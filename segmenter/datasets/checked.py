"""Any dataset as the engine reads it: errors that name the file, label checks, and seeded random transforms.

PaddleSeg's datasets read with cv2.imread, which returns None for a missing or corrupt file, so a bad file
surfaces as "'NoneType' object has no attribute 'astype'" naming nothing; its random transforms
(ResizeStepScaling, RandomPaddingCrop, RandomHorizontalFlip, RandomDistort) draw from the global np.random and
random. CheckedDataset wraps any dataset (PaddleSeg's or ours) so that every data error is one line naming the
file (a truncated image too, which cv2 would decode half grey with only libjpeg's "Premature end of JPEG file"
on stderr); it checks each label file's values as the dataset class reads them, before the transforms (a random
crop would cut away a bad value in a corner), the first time a process reads the file; and, given a seed, it
reseeds both global generators from (seed, epoch, index) before each training sample: the batch of an iteration
then depends on (seed, iteration) only, whatever the worker count or resume point.
"""

import os
import random

import numpy as np
import paddle
import paddleseg.datasets
from PIL import Image


class DataError(ValueError):
    """A problem with a dataset file; the message names the file and says what to do."""


def sample_files(dataset, idx: int) -> tuple:
    """(image path, label path or None) of sample idx when the dataset lists its files, else ()."""
    files = getattr(dataset, "file_list", None) or getattr(dataset, "pairs", None)
    if not files or idx >= len(files):
        return ()
    return tuple(files[idx])


def _decode(path: str) -> np.ndarray:
    """The file's pixels as PIL decodes them (raises on a missing, corrupt or truncated file)."""
    with Image.open(path) as im:
        im.load()  # PIL refuses a truncated file ("image file is truncated"), where cv2.imread returns half an image
        return np.asarray(im)


def decode_error(path: str) -> str:
    """Why an existing file does not decode whole ('OSError: image file is truncated ...'), or ''."""
    try:
        _decode(path)
    except Exception as e:  # noqa: BLE001  (any decoder error means the same to the user)
        return f"{type(e).__name__}: {e}"
    return ""


def _diagnose(path: str, kind: str) -> str:
    """What is wrong with one file, or '' if it exists and decodes."""
    if not os.path.isfile(path):
        return f"{kind} {path} does not exist; fix the path in the file list or restore the file"
    why = decode_error(path)
    return f"{kind} {path} cannot be decoded ({why}); replace it or remove it from the list" if why else ""


def label_as_read(dataset, raw: np.ndarray) -> np.ndarray:
    """The label a dataset class hands its transforms, from the file's values: PaddleSeg's ADE20K subtracts 1 in
    uint8 (0 'other' becomes 255, ignored; 1..150 become 0..149); its Dataset, Cityscapes (*_labelTrainIds.png),
    PascalContext, VOC and our datasets use the values as stored."""
    if isinstance(dataset, paddleseg.datasets.ADE20K):
        return raw - np.array(1, raw.dtype)
    return raw


class CheckedDataset(paddle.io.Dataset):
    """dataset with file-naming errors, label checks and, with seed, per-(seed, epoch, index) random transforms.

    Index k reads sample k % len(dataset) in epoch k // len(dataset), so a batch sampler can say which epoch
    a sample belongs to (batch_stream does).
    """

    def __init__(self, dataset, num_classes: int, seed: int = None):
        if len(dataset) == 0:
            root = getattr(dataset, "dataset_root", None)
            raise DataError(
                f"{type(dataset).__name__} (dataset_root {root}) lists no sample; check dataset_root, "
                "the mode and the file list in the YAML."
            )
        self.dataset, self.num_classes, self.seed = dataset, num_classes, seed
        self.ignore_index = getattr(dataset, "ignore_index", 255)
        self.checked = set()  # files decoded and checked in this process (each worker keeps its own)

    def __len__(self) -> int:
        return len(self.dataset)

    def name(self, idx: int) -> str:
        """The image file of sample idx, or 'sample idx'."""
        files = sample_files(self.dataset, idx)
        return files[0] if files else f"sample {idx}"

    def __getitem__(self, k: int) -> dict:
        epoch, idx = divmod(int(k), len(self.dataset))
        if self.seed is not None:  # PaddleSeg's transforms draw from the global generators
            s = int(np.random.SeedSequence([self.seed, epoch, idx]).generate_state(1)[0])
            random.seed(s)
            np.random.seed(s)
        files = sample_files(self.dataset, idx)
        self._check_sizes(files)
        self._check_files(files)
        try:
            sample = self.dataset[idx]
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001  (re-raised with the file named, or as it was)
            why = next((d for d in (_diagnose(p, kind) for p, kind in zip(files, ("image", "label")) if p) if d), "")
            if why:
                raise DataError(f"{why}.") from e
            if files:
                raise DataError(f"reading {files[0]} failed: {type(e).__name__}: {e}") from e
            raise
        self._check_label(sample, files, idx)
        return sample

    def _check_sizes(self, files: tuple) -> None:
        """Image and label of one size (read from the file headers only)."""
        if len(files) < 2 or not files[1] or not all(os.path.isfile(p) for p in files):
            return
        try:
            with Image.open(files[0]) as a, Image.open(files[1]) as b:
                sa, sb = a.size, b.size
        except Exception:  # noqa: BLE001  (undecodable: reported with its file by __getitem__)
            return
        if sa != sb:
            raise DataError(
                f"label {files[1]} is {sb[0]}x{sb[1]} but image {files[0]} is {sa[0]}x{sa[1]} "
                "(width x height); a label must be a single-channel PNG of its image's size."
            )

    def _check_files(self, files: tuple) -> None:
        """On the first read of each file in this process: it decodes whole, and a label's values as the dataset
        class reads them, before the transforms, are classes or the ignore index."""
        for path, kind in zip(files, ("image", "label")):
            if not path or path in self.checked:
                continue
            try:
                pixels = _decode(path)
            except Exception as e:  # noqa: BLE001  (re-raised naming the file)
                raise DataError(f"{_diagnose(path, kind)}.") from e
            if kind == "label":
                self._check_values(label_as_read(self.dataset, pixels), path, stored=pixels)
            self.checked.add(path)

    def _check_label(self, sample: dict, files: tuple, idx: int) -> None:
        """Label values, after the transforms, in [0, num_classes) or the ignore index."""
        self._check_values(np.asarray(sample["label"]), files[1] if len(files) > 1 and files[1] else self.name(idx))

    def _check_values(self, label: np.ndarray, where: str, stored: np.ndarray = None) -> None:
        """label (as the dataset hands it on) holds classes or the ignore index; the error quotes the file's own
        values (stored) when the class shifts them."""
        bad = (label != self.ignore_index) & ((label < 0) | (label >= self.num_classes))
        if not bad.any():
            return
        values = sorted(set(np.unique((label if stored is None else stored)[bad]).tolist()))[:5]
        if stored is not None and isinstance(self.dataset, paddleseg.datasets.ADE20K):
            allowed = f"[0, {self.num_classes + 1}] (ADE20K reads file value v as class v - 1; 0 is ignored)"
        else:
            allowed = f"[0, {self.num_classes}) that are not the ignore index {self.ignore_index}"
        raise DataError(
            f"label {where} holds values {values} outside {allowed}; fix the label, num_classes or ignore_index."
        )
