"""Figures as files: one look for every chart medzoo draws, written PNG + SVG, atomically.

A base module, below every package of the chain, because training draws its curves and
evaluation its charts and explanations, and all of them must write the same way: matplotlib's
Agg canvas (no pyplot state), no software or date metadata, no random ids, nothing from the data
but what is drawn.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib import rcParams
from matplotlib.figure import Figure

from medzoo import fsio

__all__ = ["FONT", "new_figure", "save_figure", "number"]

FONT = 11  # points; titles are FONT + 1 or + 2, tick labels FONT - 1


def new_figure(width: float, height: float, ncols: int = 1):
    """A figure of ``width`` × ``height`` inches with ``ncols`` gridded axes side by side.

    Returns
    -------
    fig, axes : Figure and a 1-D array of its ``ncols`` axes
    """
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    for ax in axes:
        ax.tick_params(labelsize=FONT - 1)
        ax.grid(True, alpha=0.3)
    return fig, axes


def _atomic_save(fig: Figure, path: Path, fmt: str, metadata: dict) -> None:
    with fsio.atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, metadata=metadata)


def save_figure(fig: Figure, path) -> Path:
    """Write ``fig`` to ``path`` (PNG) and its ``.svg`` twin atomically, without metadata that could leak.

    Returns
    -------
    Path of the PNG.

    Raises
    ------
    ValueError
        When ``path`` does not end in ``.png``.
    """
    png = Path(path)
    if png.suffix.lower() != ".png":
        raise ValueError(f"Argument `path` must end in .png. Received: path={os.fspath(path)!r}")
    _atomic_save(fig, png, "png", {"Software": None})
    old_salt = rcParams["svg.hashsalt"]
    rcParams["svg.hashsalt"] = "medzoo"  # deterministic element ids, no random state in the file
    try:
        _atomic_save(fig, png.with_suffix(".svg"), "svg", {"Creator": None, "Date": None, "Format": None,
                                                            "Type": None})
    finally:
        rcParams["svg.hashsalt"] = old_salt
    return png


def number(value) -> float:
    """``value`` as a float to draw; ``nan`` (a gap in the line) when it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
