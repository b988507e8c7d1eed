"""A small native-volume dataset written straight to records, per the volume contract
(/work/briefs/volume_contract.md, docs/internals.md): until ``medzoo data ingest --spacing``
exists on main, tests of patch training, sliding-window evaluation and export build their data
with :func:`write_volume_dataset` (real TFRecord shards, index.csv, dataset.json, plan.json).

Each patient is a noisy volume of its own size holding an "organ" ellipsoid (label 1) and, in
most patients, a small "lesion" sphere (label 2) of brighter intensity.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from medzoo.datasets.records import ShardWriter, record_features

LABEL_CLASSES = ["background", "organ", "lesion"]
SPACING = (2.0, 1.0, 1.0)


def phantom_volume(rng, shape, with_lesion=True):
    """``(image D×H×W×1 float32, labels D×H×W uint8)`` of one phantom patient."""
    d, h, w = shape
    z, y, x = np.meshgrid(np.arange(d), np.arange(h), np.arange(w), indexing="ij")
    cz, cy, cx = d / 2 + rng.uniform(-1, 1), h / 2 + rng.uniform(-3, 3), w / 2 + rng.uniform(-3, 3)
    rz, ry, rx = d * 0.3, h * rng.uniform(0.25, 0.32), w * rng.uniform(0.25, 0.32)
    labels = np.zeros(shape, np.uint8)
    labels[((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1] = 1
    if with_lesion:
        lz, ly, lx = cz + rng.uniform(-1, 1), cy + rng.uniform(-3, 3), cx + rng.uniform(-3, 3)
        radius = rng.uniform(2.5, 4.0)  # voxels in-plane; 2 mm slices halve it along z
        lesion = ((2 * (z - lz)) ** 2 + (y - ly) ** 2 + (x - lx) ** 2) <= radius ** 2
        labels[lesion] = 2
    image = np.choose(labels, [0.0, 1.0, 2.2]).astype(np.float32)
    image += rng.normal(0, 0.35, size=shape).astype(np.float32)
    return image[..., None], labels


def write_volume_dataset(out, *, patients=8, folds=4, seed=0, patch_size=(16, 32, 32),
                         shapes=None) -> Path:
    """Write a native-volume dataset dir at ``out``; return it.

    ``shapes``: one (D, H, W) per patient (default: sizes varying around 20×40×40).
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    rows, sizes = [], []
    with ShardWriter(out / "shards", records_per_shard=4) as writer:
        for p in range(patients):
            shape = tuple(shapes[p]) if shapes else (int(rng.integers(18, 25)),
                                                     int(rng.integers(36, 49)),
                                                     int(rng.integers(36, 49)))
            with_lesion = p % 4 != 3
            image, labels = phantom_volume(rng, shape, with_lesion)
            origin = (-60.0 + p, -90.0, -80.0 + 2 * p)
            original_spacing = (SPACING[0] * 2, 0.5, 0.5)  # finer in-plane, thicker slices
            original_shape = [max(1, round(n * s / o)) for n, s, o in zip(shape, SPACING,
                                                                           original_spacing)]
            record_id = f"r{p:03d}"
            features = record_features(record_id, image, int(with_lesion), mask=labels,
                                       spacing=SPACING)
            features.update({"origin": list(origin), "direction": np.eye(3).ravel().tolist(),
                             "original_shape": original_shape,
                             "original_spacing": list(original_spacing),
                             "original_origin": list(origin)})
            writer.write(features)
            sizes.append(shape)
            rows.append({"record_id": record_id, "row": p + 1, "frame": 1, "patient": f"P{p:03d}",
                         "study": f"S{p:03d}", "series": f"E{p:03d}", "label": int(with_lesion),
                         "fold": p % folds, "modality": "CT", "window_center": 0,
                         "window_width": 0, "photometric": "MONOCHROME2", "has_mask": 1,
                         "voi": "window", "slices": shape[0]})
    with open(out / "index.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    median = [int(v) for v in np.median(np.array(sizes), axis=0)]
    plan = {"schema_version": 1, "modality": "CT", "median_spacing": list(SPACING),
            "target_spacing": list(SPACING), "anisotropic": False, "median_shape": median,
            "normalization": {"scheme": "ct", "clip": [-1000.0, 1000.0], "mean": 0.0, "std": 1.0},
            "patch_size": list(patch_size), "batch_size": 2, "memory_gb": 1.0,
            "label_classes": LABEL_CLASSES, "foreground_oversample": 0.33, "overrides": {}}
    info = {"schema_version": 1, "task": "segmentation", "kind": "volume",
            "spacing_mode": "native", "image_size": median, "channels": 1,
            "classes": ["normal", "lesion"], "label_classes": LABEL_CLASSES, "has_mask": True,
            "window": None, "folds": folds, "seed": seed,
            "counts": {"records": patients, "loaded": patients, "rejected": 0,
                       "patients": patients,
                       "per_fold": {str(f): sum(r["fold"] == f for r in rows) for f in range(folds)}},
            "modalities": {"CT": patients}, "preprocessing": [], "plan": plan,
            "pixel_stats": {"mean": 0.0, "std": 1.0}}
    (out / "dataset.json").write_text(json.dumps(info, indent=2) + "\n")
    (out / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    return out


# ------------------------------------------------------------------ session fixtures
# Imported by tests/conftest.py: one small dataset, one 3D run and its export per session.

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def volume_ds(tmp_path_factory):
    return write_volume_dataset(tmp_path_factory.mktemp("volumes") / "ds", patients=6, folds=3)


@pytest.fixture(scope="session")
def volume_run(volume_ds, tmp_path_factory):
    from medzoo.training.fit import train

    run = tmp_path_factory.mktemp("runs") / "unet3d"
    train("unet", volume_ds, run, epochs=2, seed=0, verbose=0, augment=True,
          model_options={"base_width": 4})
    return run


@pytest.fixture(scope="session")
def volume_export(volume_run, tmp_path_factory):
    from medzoo.evaluation.evaluate import evaluate
    from medzoo.export.exporter import export_run

    return export_run(volume_run, tmp_path_factory.mktemp("models"), bless_if=["dice>=0.0"],
                      evaluator=evaluate)
