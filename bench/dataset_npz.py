"""Dump a medzoo dataset dir to one .npz (images, labels, masks, folds) for bench/monai_2d.py.

    PYTHONPATH=$PWD python bench/dataset_npz.py DS_DIR OUT.npz

Run in medzoo's venv; the MONAI side (its own venv, bench/requirements-monai.txt) reads the
.npz, so both sides train and test on exactly the same stored images and patient folds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ds_dir, out = (Path(a) for a in (argv or sys.argv[1:]))
    from medzoo.datasets import records, splits

    info = json.loads((ds_dir / "dataset.json").read_text())
    fold_of = splits.fold_assignment(ds_dir, info["folds"], info["seed"])
    recs = list(records.read_records(ds_dir))
    images = np.stack([r["image"] for r in recs]).astype(np.float32)
    masks = np.stack([np.asarray(r["mask"]).reshape(images.shape[1:3]) if r.get("mask") is not None
                      else np.zeros(images.shape[1:3]) for r in recs]).astype(np.uint8)
    np.savez_compressed(out, images=images, labels=np.array([int(r["label"]) for r in recs]),
                        masks=masks, folds=np.array([fold_of[r["record_id"]] for r in recs]),
                        n_folds=info["folds"])
    print(f"{len(recs)} records, {images.shape[1]} px → {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
