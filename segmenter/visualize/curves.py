"""Training curves (loss, learning rate, validation mIoU) as one PNG that explains its empty panels."""

import os
from typing import Optional, Tuple

AXES = {"loss": "training loss", "lr": "learning rate", "mIoU": "validation mIoU"}


def plot_curves(history: dict, path: str, best: Optional[Tuple[float, int]] = None) -> dict:
    """history {"loss"|"lr"|"mIoU": [(iter, value), ...]} -> one PNG of three labelled panels; returns what each
    panel shows: "curve" or the note written on an empty one. best: (mIoU, iter) of the run's best_model, named in
    the mIoU panel's title and marked on its curve (default: the curve's highest point)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    shown = {}
    for ax, key in zip(axes, ("loss", "lr", "mIoU")):
        if history.get(key):
            xs, ys = zip(*history[key])
            ax.plot(xs, ys, marker="." if key == "mIoU" else None)
            shown[key] = "curve"
            if key == "mIoU":  # on its whole range, so that a dip of 0.002 looks like one, not like a cliff
                ax.set_ylim(0, 1)
                b, at = best if best is not None else (max(ys), xs[ys.index(max(ys))])
                ax.plot([at], [b], marker="*", markersize=12, color="tab:orange", linestyle="none")
                whose = " (best_model)" if best is not None else ""
                # three short lines: on one, "... at iter 300 (best_model)" ran past the figure's right edge
                ax.set_title(f"{AXES[key]}\nlast {ys[-1]:.4f}, best {b:.4f}\nat iter {at}{whose}", fontsize=10)
        else:
            why = "no evaluation ran:\ntrain with --do_eval" if key == "mIoU" else "no iteration logged"
            shown[key] = why
            ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="gray")
        if not ax.get_title():
            ax.set_title(AXES[key])
        ax.set_xlabel("iteration")
        ax.set_ylabel(key)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return shown
