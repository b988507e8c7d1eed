"""Voxel label maps of volume series: class names, ``.npy`` maps, and the annotation readers.

A label map is uint8 ``(D, H, W)`` in the series' array order (docs/internals.md) whose value v
is ``label_classes[v]`` (``label_classes[0] == "background"``). ``.npy`` maps are read here;
NIfTI, DICOM SEG and RTSTRUCT through :func:`medzoo.datasets.annotations.read_label_map`
(imported only when such a mask is met).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medzoo.datasets.geometry import SeriesGeometry
from medzoo.errors import InputError


class SeriesRejected(Exception):
    """A whole series (or one of its files) cannot be used; ``reason`` says why."""

    def __init__(self, reason: str, file_reasons: dict | None = None):
        super().__init__(reason)
        self.reason = reason
        self.file_reasons = file_reasons or {}


def resolve_label_classes(labels_csv, label_classes=None):
    """Voxel class names: the argument, else ``label_classes.json`` or an MSD-style
    ``dataset.json`` (``"labels": {"0": "background", …}``) beside labels.csv, else None.

    Raises
    ------
    InputError
        A class list whose first name is not ``background``, or with duplicates.
    """
    names = None
    source = "--label-classes"
    if label_classes:
        names = ([n.strip() for n in label_classes.split(",")] if isinstance(label_classes, str)
                 else [str(n) for n in label_classes])
    else:
        base = Path(labels_csv).parent
        for file in ("label_classes.json", "dataset.json"):
            path = base / file
            if not path.is_file():
                continue
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                raise InputError(f"{path}: expected JSON. Received: unreadable text")
            if isinstance(data, dict) and "label_classes" in data:
                data = data["label_classes"]
            elif isinstance(data, dict) and isinstance(data.get("labels"), dict):
                data = [name for _, name in sorted(
                    ((int(k), v) for k, v in data["labels"].items()), key=lambda kv: kv[0])]
            if isinstance(data, list):
                names, source = [str(n) for n in data], str(path.name)
                break
    if names is None:
        return None
    if not names or names[0] != "background" or len(set(names)) != len(names) or len(names) > 256:
        raise InputError(f"Label classes ({source}) must start with 'background' and name each "
                         f"class once (at most 256). Received: {names}")
    return names


def _npy_label_map(path: Path, shape, n_classes: int) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        raise SeriesRejected("label map unreadable (expected a .npy array)")
    if arr.dtype.kind not in "biuf":
        raise SeriesRejected(f"label map must hold integer class indices (received dtype "
                             f"{arr.dtype})")
    if tuple(arr.shape) != tuple(shape):
        got = "x".join(map(str, arr.shape)) or "scalar"
        raise SeriesRejected(f"label map shape {got} does not match its series (expected "
                             f"{'x'.join(map(str, shape))}, the series' array order z, y, x)")
    lo, hi = 0, 0
    for k in range(0, shape[0], 16):  # in blocks: an int64 map may be 8x the uint8 one
        block = np.asarray(arr[k:k + 16])
        if block.dtype.kind == "f" and not np.all(np.isfinite(block) & (block == np.round(block))):
            raise SeriesRejected("label map must hold integer class indices (received "
                                 "fractional or non-finite values)")
        lo, hi = min(lo, int(block.min())), max(hi, int(block.max()))
    if lo < 0 or hi >= n_classes:
        bad = lo if lo < 0 else hi
        raise SeriesRejected(f"label value {bad} not in the class list (0..{n_classes - 1})")
    return np.asarray(arr, dtype=np.uint8)


def load_label_map(mask: Path, geometry: SeriesGeometry, label_classes, segment_map=None):
    """A row's label map as uint8 (D, H, W) in the series' array order, and its class names.

    ``.npy``: read here (needs ``label_classes``). Anything else (NIfTI, DICOM SEG, RTSTRUCT):
    :func:`medzoo.datasets.annotations.read_label_map`, imported only when needed.

    Raises
    ------
    SeriesRejected
        Unreadable, wrong shape, a value not in the class list, no reader for the format.
    """
    if mask.suffix.lower() == ".npy":
        if not label_classes:
            raise SeriesRejected("label map classes unknown (give --label-classes or a "
                                 "label_classes.json beside labels.csv)")
        return _npy_label_map(mask, geometry.shape, len(label_classes)), list(label_classes)
    try:
        from medzoo.datasets import annotations
    except ImportError:
        raise SeriesRejected("annotations reader not available") from None
    try:
        label_map = annotations.read_label_map(mask, geometry, class_names=label_classes,
                                               segment_map=segment_map)
    except annotations.AnnotationError as exc:
        raise SeriesRejected(str(exc)) from None
    array = np.asarray(label_map.array)
    if tuple(array.shape) != tuple(geometry.shape):
        raise SeriesRejected(f"label map shape {'x'.join(map(str, array.shape))} does not match "
                             f"its series (expected {'x'.join(map(str, geometry.shape))})")
    return array.astype(np.uint8, copy=False), list(label_map.classes)


def remap(array, classes, label_classes):
    """Class indices of a reader's own class list → the dataset's (by name)."""
    if label_classes is None or list(classes) == list(label_classes):
        return array
    index = {name: i for i, name in enumerate(label_classes)}
    missing = [c for c in classes if c not in index]
    if missing:
        raise SeriesRejected(f"label class {missing[0]!r} not in the class list "
                             f"({', '.join(label_classes)})")
    lut = np.array([index[c] for c in classes], np.uint8)
    return lut[array]
