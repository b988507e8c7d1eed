"""Reading native-spacing volume datasets (docs/internals.md "Native volumes"; no TensorFlow).

A volume dataset (``dataset.json`` ``kind: "volume"`` with a ``plan``) stores one record per
series at the plan's target spacing, with its geometry: ``spacing``, ``origin``, ``direction``
and the source grid (``original_shape``, ``original_spacing``, ``original_origin``), so that a
prediction on the stored grid can be put back on the DICOM grid. This module reads those records
and the plan for training, evaluation and prediction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medzoo import fsio
from medzoo.datasets.manifest import read_dataset_info
from medzoo.datasets.records import parse_record, read_records
from medzoo.errors import InputError

__all__ = ["GEOMETRY_FEATURES", "is_volume_dataset", "read_plan", "parse_volume_record",
           "read_volume_records", "label_classes"]

GEOMETRY_FEATURES = ("spacing", "origin", "direction", "original_shape", "original_spacing",
                     "original_origin")


def is_volume_dataset(info: dict) -> bool:
    """True for a dataset of native-spacing volumes with a plan (patch training, sliding window)."""
    return info.get("kind") == "volume" and isinstance(info.get("plan"), dict)


def read_plan(ds_dir) -> dict:
    """The dataset's plan (``plan.json``, else ``dataset.json``'s ``plan``).

    Raises
    ------
    InputError
        Not a dataset dir, or a dataset without a plan (not ingested with ``--spacing``).
    """
    info = read_dataset_info(ds_dir)
    path = Path(ds_dir) / "plan.json"
    plan = fsio.read_json(path) if path.is_file() else info.get("plan")
    if not isinstance(plan, dict) or "patch_size" not in plan:
        raise InputError(f"{ds_dir}: expected a native-volume dataset with a plan (ingest "
                         "--spacing auto). Received: no plan.json and no plan in dataset.json")
    return plan


def label_classes(info_or_plan: dict) -> list[str]:
    """Voxel class names (``classes[0] == "background"``) of a dataset info or plan."""
    classes = info_or_plan.get("label_classes") or (info_or_plan.get("plan") or {}).get("label_classes")
    if not classes or classes[0] != "background":
        raise InputError("expected label_classes starting with 'background'. "
                         f"Received: {classes!r}")
    return [str(c) for c in classes]


def parse_volume_record(features: dict) -> dict:
    """Decoded Example features of a volume record → :func:`records.parse_record`'s dict plus
    the geometry: ``spacing``/``origin``/``original_spacing``/``original_origin`` (3 floats,
    z y x), ``direction`` (3×3, rows the LPS unit vectors of the array axes) and
    ``original_shape`` (3 ints). Missing geometry falls back to an identity grid at the stored
    spacing (records written before the contract)."""
    out = parse_record(features)
    if out["image"].ndim != 4:
        raise InputError(f"record {out['record_id']}: expected a volume record (D×H×W×C). "
                         f"Received: image shape {out['image'].shape}")
    spacing = tuple(float(v) for v in features.get("spacing") or (1.0, 1.0, 1.0))
    out["spacing"] = spacing
    out["origin"] = tuple(float(v) for v in features.get("origin") or (0.0, 0.0, 0.0))
    direction = features.get("direction") or np.eye(3).ravel().tolist()
    out["direction"] = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    out["original_shape"] = tuple(int(v) for v in features.get("original_shape")
                                  or out["image"].shape[:3])
    out["original_spacing"] = tuple(float(v) for v in features.get("original_spacing") or spacing)
    out["original_origin"] = tuple(float(v) for v in features.get("original_origin")
                                   or out["origin"])
    return out


def read_volume_records(ds_dir, record_ids=None):
    """Yield the volume records of a dataset dir (see :func:`parse_volume_record`), in stored
    order; only ``record_ids`` when given."""
    return read_records(ds_dir, record_ids, parse=parse_volume_record)
