"""Pictures of what a Segmenter does: colour palette + legend, image | truth | prediction panels, attention maps,
training curves. Framework-free (numpy, PIL, matplotlib) and below the engine: it imports nothing from
`segmenter.engine` (the validation panels that run a model live in `engine/val_panels.py`); the attention maps take
a Paddle model or its PyTorch twin alike."""

from segmenter.visualize.attention import AttentionMaps, attention_maps, draw_attention_grid
from segmenter.visualize.curves import plot_curves
from segmenter.visualize.palette import class_names, colorize, legend, overlay, palette
from segmenter.visualize.panels import panel

__all__ = [
    "AttentionMaps",
    "attention_maps",
    "class_names",
    "colorize",
    "draw_attention_grid",
    "legend",
    "overlay",
    "palette",
    "panel",
    "plot_curves",
]
