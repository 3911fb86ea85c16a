"""Training curves (loss, learning rate, validation mIoU) as one PNG that explains its empty panels."""

import os

AXES = {"loss": "training loss", "lr": "learning rate", "mIoU": "validation mIoU"}


def plot_curves(history: dict, path: str) -> dict:
    """history {"loss"|"lr"|"mIoU": [(iter, value), ...]} -> one PNG of three labelled panels; returns what each
    panel shows: "curve" or the note written on an empty one."""
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
                ax.set_title(f"{AXES[key]}\nlast {ys[-1]:.4f}, best {max(ys):.4f}")
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
