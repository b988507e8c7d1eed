"""Held-out (fold 0) AUC and Dice of a medzoo run, computed exactly as bench/monai_2d.py does.

    PYTHONPATH=$PWD python bench/heldout.py RUN_DIR DS_DIR

AUC: class-1 probability (classifier) or largest mask probability (segmenter); Dice: mean over
the held-out records at 0.5, 1.0 where truth and prediction are both empty (medzoo's rule).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from monai_2d import auc, dice  # noqa: E402  (numpy-only helpers; torch is imported in main)


def predict_held_out(run_dir: Path, ds_dir: Path):
    """The run's test-fold records (its own folds and split seed), predicted by its model.

    Returns
    -------
    config, images, outputs, labels, truth
        ``truth``: the records' masks as booleans (segmenters: 4-D outputs), else None.
    """
    from medzoo.datasets import records, splits
    from medzoo.training.fit import read_config
    from medzoo.zoo import saving

    config = read_config(run_dir)
    fold_of = splits.fold_assignment(ds_dir, config["folds"], config["split_seed"])
    wanted = sorted(r for r, f in fold_of.items() if f == config["test_fold"])
    recs = list(records.read_records(ds_dir, wanted))
    images = np.stack([r["image"] for r in recs])
    out = np.asarray(saving.load_model(run_dir / "model.keras").predict(images, verbose=0))
    y = np.array([int(r["label"]) for r in recs])
    truth = None
    if out.ndim == 4:
        truth = np.stack([np.asarray(r["mask"]).reshape(images.shape[1:3]) > 0 for r in recs])
    return config, images, out, y, truth


def main(argv=None) -> int:
    run_dir, ds_dir = (Path(a) for a in (argv or sys.argv[1:]))
    config, images, out, y, truth = predict_held_out(run_dir, ds_dir)
    result = {"model": f"medzoo {config['model']}", "train_seconds": config.get("train_seconds"),
              "epochs_run": config.get("epochs_run"), "n_test": len(y),
              "size": int(images.shape[1])}
    if truth is not None:
        result["dice"] = round(dice(out[..., 0] >= 0.5, truth), 4)
        result["auc"] = round(auc(y, out.reshape(len(out), -1).max(1)), 4)
    else:
        result["auc"] = round(auc(y, out[:, 1]), 4)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
