"""Chart 1 of the seed: loss and accuracy (or Dice) per epoch, training and validation."""

from __future__ import annotations

from pathlib import Path

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
    from medzoo.evaluation import charts

    return charts.plot_training_curves(history, Path(path))
