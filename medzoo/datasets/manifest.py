"""labels.csv (the user's input) and the dataset dir's index.csv / dataset.json (ingest's output)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

from medzoo.errors import InputError

NEGATIVE_NAMES = ("normal", "negative", "healthy", "benign", "background", "none", "no", "0")
INDEX_COLUMNS = ("record_id", "row", "frame", "patient", "study", "series", "label", "fold",
                 "modality", "window_center", "window_width", "photometric", "has_mask")


INDEX_EXTRA_COLUMNS = ("voi", "slices")
"""Columns index.csv carries after :data:`INDEX_COLUMNS` (added in schema 1; readers may ignore
them): ``voi`` = window | lut | colour, ``slices`` = slices in the record (1 for 2D)."""


@dataclasses.dataclass(frozen=True)
class LabelRow:
    """One data row of labels.csv: ``row`` is 1-based; ``path``/``mask`` are absolute Paths.

    ``inputs`` holds the extra input columns (``path_<name>``, e.g. ``path_mr``) in header
    order as ``(column, Path or None)``; each becomes one more channel group of the image.
    """

    row: int
    path: Path
    label: str
    mask: Path | None
    inputs: tuple = ()

    @property
    def columns(self) -> list:
        """``[("path", path), ("path_mr", …), …]``: every input of the row, channel order."""
        return [("path", self.path), *self.inputs]


def input_columns(labels_csv) -> list[str]:
    """The input columns of labels.csv: ``path`` then every ``path_<name>`` in header order."""
    with open(labels_csv, newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh), [])
    return ["path"] + [h.strip().lower() for h in header
                       if h.strip().lower().startswith("path_") and len(h.strip()) > 5]


def order_classes(labels) -> list[str]:
    """Class names sorted, known negative names first (so index 1 is positive for two classes).

    Examples
    --------
    >>> order_classes(["lesion", "normal", "lesion"])
    ['normal', 'lesion']
    """
    names = sorted(set(labels))
    rank = {n: i for i, n in enumerate(NEGATIVE_NAMES)}
    return sorted(names, key=lambda n: (0, rank[n.lower()]) if n.lower() in rank else (1, n))


MULTI_LABEL_SEPARATOR = "|"


def split_label(label: str) -> list[str]:
    """Class names of one labels.csv ``label`` cell: ``"nodule|effusion"`` → both, in order.

    A cell naming several classes makes the dataset multi-label (``"multi_label": true``);
    duplicates and empty parts are dropped.

    Examples
    --------
    >>> split_label("nodule| effusion|nodule")
    ['nodule', 'effusion']
    """
    names = [part.strip() for part in str(label).split(MULTI_LABEL_SEPARATOR)]
    return list(dict.fromkeys(n for n in names if n))


def multi_hot(label: str, classes) -> list[int]:
    """The multi-hot vector of ``label``'s class names over ``classes`` (KeyError if unknown)."""
    index = {c: i for i, c in enumerate(classes)}
    vector = [0] * len(index)
    for name in split_label(label):
        vector[index[name]] = 1
    return vector


def read_labels(labels_csv) -> list[LabelRow]:
    """Read and validate labels.csv (``path,label[,mask]``, paths relative to the CSV's folder).

    Several inputs per row (co-registered modalities for fusion models): add columns named
    ``path_<name>`` (e.g. ``path,path_mr,label,mask``); see :attr:`LabelRow.inputs`.

    Rows are kept even when their label is empty (ingest rejects them with "label missing").

    Raises
    ------
    InputError
        Missing or unreadable file, no ``path``/``label`` column, or no data row.
    """
    path = Path(labels_csv)
    if not path.is_file():
        raise InputError(f"Labels file {path}: expected a CSV file with columns path,label[,mask]. "
                         "Received: no such file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            missing = [c for c in ("path", "label") if c not in header]
            if missing:
                raise InputError(f"Labels file {path}: expected columns path,label[,mask]. "
                                 f"Received: columns {','.join(header) or '(none)'}")
            reader.fieldnames = header
            raw = list(reader)
    except UnicodeDecodeError:
        raise InputError(f"Labels file {path}: expected UTF-8 CSV text. Received: binary data")
    except csv.Error as exc:
        raise InputError(f"Labels file {path}: expected CSV. Received: {exc}")
    base = path.parent
    extra = [h for h in header if h.startswith("path_") and len(h) > 5]
    if len(set(extra)) != len(extra):
        raise InputError(f"Labels file {path}: expected each path_<name> column once. "
                         f"Received: columns {','.join(header)}")
    rows = []
    for i, rec in enumerate(raw, start=1):
        rel = (rec.get("path") or "").strip()
        if not rel and not any((v or "").strip() for v in rec.values() if isinstance(v, str)):
            continue  # blank line
        mask = (rec.get("mask") or "").strip()
        inputs = tuple((col, base / (rec.get(col) or "").strip()
                        if (rec.get(col) or "").strip() else None) for col in extra)
        rows.append(LabelRow(row=i, path=base / rel if rel else base / "",
                             label=(rec.get("label") or "").strip(),
                             mask=base / mask if mask else None, inputs=inputs))
    if not rows:
        raise InputError(f"Labels file {path}: expected at least one data row. Received: none")
    return rows


def expand_path(path: Path) -> list[Path]:
    """A file → ``[file]``; a folder (one series) → every regular file under it, sorted."""
    if path.is_dir():
        found = []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
        return found
    return [path]


def _dataset_file(ds_dir, name) -> Path:
    ds_dir = Path(ds_dir)
    if not (ds_dir / "dataset.json").is_file():
        raise InputError(f"{ds_dir}: expected a dataset dir (made by `medzoo data ingest`) "
                         "holding dataset.json. Received: no dataset.json")
    return ds_dir / name


def read_dataset_info(ds_dir) -> dict:
    """The parsed ``dataset.json`` of a dataset dir.

    Raises
    ------
    InputError
        When ``ds_dir`` holds no (readable) dataset.json.
    """
    path = _dataset_file(ds_dir, "dataset.json")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: expected JSON. Received: {type(exc).__name__}")


def read_index(ds_dir) -> list[dict]:
    """Rows of ``index.csv`` with ``row``, ``frame``, ``label``, ``fold`` as int,
    ``window_center``/``window_width`` as float and ``has_mask`` as bool.

    Raises
    ------
    InputError
        When ``ds_dir`` is not a dataset dir or index.csv is missing.
    """
    path = _dataset_file(ds_dir, "index.csv")
    if not path.is_file():
        raise InputError(f"{ds_dir}: expected index.csv in the dataset dir. Received: none")
    out = []
    with open(path, newline="") as fh:
        for rec in csv.DictReader(fh):
            for key in ("row", "frame", "label", "fold"):
                rec[key] = int(rec[key])
            for key in ("window_center", "window_width"):
                rec[key] = float(rec[key])
            rec["has_mask"] = rec["has_mask"] in ("1", "true", "True")
            if rec.get("slices"):
                rec["slices"] = int(rec["slices"])
            out.append(rec)
    return out
