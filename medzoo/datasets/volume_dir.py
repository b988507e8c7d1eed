"""The dataset dir of native-spacing volumes, written by DICOM volume ingest
(:mod:`medzoo.datasets.volumes`) and MSD / nnU-Net ingest (:mod:`medzoo.datasets.msd`) alike.

Everything is written into a hidden work folder beside OUT (:func:`work_dir`, locked while the
ingest runs; a killed run's folder is removed by the next), then renamed to OUT
(:func:`publish`); :func:`building` does both around a ``with`` block. :func:`write_dataset_tables` writes index.csv, rejected.csv, warnings.csv,
plan.json, fingerprint.json and dataset.json and checks inputs = loaded + rejected.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from medzoo import fsio
from medzoo.datasets import deid, manifest

SCHEMA_VERSION = 1


def add_pixel_stats(stats: list, image: np.ndarray) -> None:
    """Add one record's sum, sum of squares and size to ``stats`` (dataset.json pixel_stats)."""
    for slab in image:  # slice by slice: no float64 copy of the volume
        stats[0] += float(slab.sum(dtype=np.float64))
        stats[1] += float(np.square(slab, dtype=np.float64).sum())
    stats[2] += image.size


def publish(tmp: Path, out: Path) -> None:
    """Make the finished work folder ``tmp`` (from :func:`work_dir`) the dataset dir ``out``."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [tmp, *tmp.rglob("*")]:  # mkdtemp/mkstemp make them private: as any file
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)
    (tmp / ".lock").unlink()
    if out.exists():
        out.rmdir()
    os.rename(tmp, out)


def work_dir(out: Path):
    """A new hidden work folder beside OUT, flock'ed while this ingest runs, and its lock.

    Work folders of OUT left by an ingest that was killed (their lock is free) are removed
    first: a killed native ingest is not resumed, and its partial shards may be large.
    """
    import fcntl

    for stale in out.parent.glob(f".{out.name}.volumes-*"):
        try:
            fd = os.open(stale / ".lock", os.O_RDWR)
        except OSError:
            continue  # no lock yet: being created right now
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # another ingest of OUT is running
        else:
            shutil.rmtree(stale, ignore_errors=True)
        finally:
            os.close(fd)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.volumes-", dir=out.parent))
    lock = os.open(tmp / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    return tmp, lock


@contextlib.contextmanager
def building(out: Path):
    """The work folder of dataset dir ``out`` (:func:`work_dir`), for the ``with`` block to
    fill: published as ``out`` (:func:`publish`) when the block ends, removed when it raises."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp, lock = work_dir(out)
    try:
        yield tmp
        publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(lock)


def write_dataset_tables(tmp, index, rejected, classes, label_classes, plan, fingerprint, stats,
                         n_inputs, folds, seed, key, has_mask, *, channels: int = 1,
                         extra_info=None) -> dict:
    """index.csv, rejected.csv, warnings.csv, plan.json, fingerprint.json, dataset.json.

    ``index`` rows carry ``_files`` (inputs loaded through the record) and ``_names`` (its
    image-level class names) besides the index columns; ``extra_info`` is added to
    dataset.json. Returns the counts and the plan; checks inputs = loaded + rejected.
    """
    cols = manifest.INDEX_COLUMNS + manifest.INDEX_EXTRA_COLUMNS
    fsio.write_csv(tmp / "index.csv", ({c: rec[c] for c in cols} for rec in index), cols)
    fsio.write_csv(tmp / "rejected.csv",
                   ({"row": r, "path": p, "reason": why} for r, p, why in sorted(rejected)),
                   ("row", "path", "reason"))
    fsio.write_csv(tmp / "warnings.csv", [], ("row", "path", "reason"))
    loaded = sum(rec["_files"] for rec in index)
    per_class = {c: 0 for c in classes}
    per_fold = {str(f): 0 for f in range(folds)}
    for rec in index:
        for name in rec["_names"]:
            per_class[name] += 1
        per_fold[str(rec["fold"])] += 1
    by_reason = collections.Counter(reason for _, _, reason in rejected)
    counts = {"inputs": n_inputs, "loaded": loaded, "rejected": len(rejected),
              "records": len(index), "per_class": per_class, "per_fold": per_fold,
              "patients": len({rec["patient"] for rec in index}),
              "rejected_by_reason": dict(sorted(by_reason.items())), "warnings": 0}
    if loaded + len(rejected) != n_inputs:  # the promise: every input accounted for once
        raise AssertionError(f"inputs {n_inputs} != loaded {loaded} + rejected {len(rejected)}")
    total, total_sq, n = stats
    mean = total / n
    info = {
        "schema_version": SCHEMA_VERSION,
        "task": "segmentation" if has_mask else "classification",
        "kind": "volume",
        "spacing_mode": "native",
        "image_size": plan["median_shape"],
        "channels": int(channels),
        "classes": classes,
        "label_classes": list(label_classes) if label_classes else ["background"],
        "has_mask": has_mask,
        "window": None,
        "folds": int(folds),
        "seed": int(seed),
        "counts": counts,
        "modalities": dict(sorted(collections.Counter(r["modality"] for r in index).items())),
        "pixel_stats": {"mean": round(mean, 6),
                        "std": round(math.sqrt(max(0.0, total_sq / n - mean * mean)), 6)},
        "key_fingerprint": deid.key_fingerprint(key),
        "input_columns": ["path"],
        "plan": plan,
        **(extra_info or {}),
    }
    fsio.write_json(tmp / "plan.json", plan)
    fsio.write_json(tmp / "fingerprint.json", fingerprint)
    fsio.write_json(tmp / "dataset.json", info)
    return dict(counts, plan=plan)
