"""Chart 1 of the seed: loss and accuracy (or Dice) per epoch, training and validation."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from medzoo import fsio


def read_history(path) -> list[dict]:
    """Rows of a Keras ``CSVLogger`` file as floats, one per epoch.

    A resumed run may have logged an epoch twice (killed between the log and the backup); the
    last row for an epoch wins.
    """
    path = Path(path)
    if not path.is_file():
        return []
    by_epoch: dict[int, dict] = {}
    for row in fsio.read_csv(path):
        # CSVLogger writes "NA" for metrics it has no value for (e.g. val_* without validation).
        values = {k: float(v) for k, v in row.items() if v not in ("", "NA", None)}
        by_epoch[int(values["epoch"])] = {**values, "epoch": int(values["epoch"])}
    return [by_epoch[e] for e in sorted(by_epoch)]


def plot(history: list[dict], path) -> Path:
    """Draw ``history`` (rows from :func:`read_history`) to ``path`` (PNG, plus an SVG twin)."""
    return plot_training_curves(history, Path(path))


def plot_training_curves(history_rows: Sequence[Mapping], path, *, title: str = "Training curves") -> Path:
    """Chart 1: loss and accuracy per epoch, training and validation.

    Drawn with matplotlib's Agg canvas and written PNG + SVG by :func:`medzoo.figures.save_figure`.

    Parameters
    ----------
    history_rows : sequence of dict
        Rows of Keras ``CSVLogger`` (``epoch`` counted from 0, ``loss``, ``accuracy``, ``val_loss``,
        ``val_accuracy``, maybe more; values may be strings). Without ``accuracy`` the right panel
        shows the first other metric (e.g. ``dice``).
    path : path ending in .png

    Returns
    -------
    Path of the PNG.

    Raises
    ------
    ValueError
        When there are no rows or no ``loss`` column.
    """
    from medzoo.figures import FONT, new_figure, number, save_figure

    rows = list(history_rows)
    if not rows or "loss" not in rows[0]:
        raise ValueError(f"`history_rows` must be CSVLogger rows with a 'loss' column. Received: "
                         f"{len(rows)} rows, columns {sorted(rows[0]) if rows else []}")
    epochs = np.array([number(r.get("epoch", i)) for i, r in enumerate(rows)]) + 1
    keys = list(rows[0])
    skip = {"epoch", "loss", "lr", "learning_rate"}
    metric = "accuracy" if "accuracy" in keys else next(
        (k for k in keys if k not in skip and not k.startswith("val_")), None)
    fig, axes = new_figure(10, 4, ncols=2 if metric else 1)
    panels = [("loss", "Loss")] + ([(metric, metric.replace("_", " ").capitalize())] if metric else [])
    for ax, (key, label) in zip(axes, panels):
        for col, name, style in ((key, "training", "-o"), ("val_" + key, "validation", "--s")):
            if col in keys:
                ax.plot(epochs, [number(r.get(col)) for r in rows], style, markersize=4, label=name)
        ax.set_xlabel("Epoch", fontsize=FONT)
        ax.set_ylabel(label, fontsize=FONT)
        ax.set_title(f"{label} per epoch", fontsize=FONT + 1)
        ax.legend(fontsize=FONT - 1)
        if len(epochs) < 15:
            ax.set_xticks(epochs)
    fig.suptitle(f"{title} ({len(rows)} epochs)", fontsize=FONT + 2)
    return save_figure(fig, path)

