"""Class names: the standard lists of PaddleSeg's built-in datasets, and a dataset section's own `class_names:`
(a list) or `class_names_file:` (a text file, one name per line, in class-index order).

The lists follow each release's label order as PaddleSeg reads it: ADE20K's 150 classes after its -1 shift
(file value 1 'wall' is class 0), Cityscapes' 19 train ids, Pascal Context's 60 (PaddleSeg's convert_voc2010.py
keeps background as class 0, then the 59 classes in sorted Detail-id order) and VOC's 21 (background first).
"""
import os
from typing import Any, Dict, List, Optional

ADE20K = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel",
    "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool",
    "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step",
    "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket",
    "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen",
    "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag")

CITYSCAPES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")

PASCAL_CONTEXT = (
    "background", "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle",
    "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain",
    "dog", "door", "fence", "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light",
    "motorbike", "mountain", "mouse", "person", "plate", "platform", "pottedplant", "road", "rock", "sheep",
    "shelves", "sidewalk", "sign", "sky", "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor",
    "wall", "water", "window", "wood")

PASCAL_VOC = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")

# Dataset `type` -> its names (SegmenterShapes' come from segmenter.datasets.shapes).
BUILT_IN = {"ADE20K": ADE20K, "Cityscapes": CITYSCAPES, "PascalContext": PASCAL_CONTEXT, "PascalVOC": PASCAL_VOC}

# Keys a dataset section may carry besides its class's arguments; engine.config_check.take_class_names reads and
# removes them before PaddleSeg builds the dataset.
NAME_KEYS = ("class_names", "class_names_file")



def read_names(section: Dict[str, Any], where: str) -> Optional[List[str]]:
    """The names a dataset section gives by class_names (a list) or class_names_file (one name per line), or
    None; where ('config a.yml: val_dataset') starts the errors."""
    if all(k in section for k in NAME_KEYS):
        raise ValueError(f"{where} gives both class_names and class_names_file; keep one.")
    if "class_names" in section:
        names = section["class_names"]
        if not isinstance(names, list) or not all(isinstance(n, (str, int, float)) for n in names):
            raise ValueError(f"{where}.class_names must be a list of names, one per class; got {names!r}.")
        return [str(n) for n in names]
    if "class_names_file" in section:
        file = section["class_names_file"]
        if not isinstance(file, str) or not os.path.isfile(file):
            raise ValueError(f"{where}.class_names_file {file} does not exist; give a text file with one class name "
                             "per line (its path relative to the working folder, like train_path).")
        with open(file, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    return None
