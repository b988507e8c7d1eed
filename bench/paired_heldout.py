"""Two medzoo runs on the same held-out fold: AUC, Dice and their paired tests.

    PYTHONPATH=$PWD python bench/paired_heldout.py RUN_A RUN_B DS_DIR

AUC from the class-1 probability (classifiers) or the largest mask probability (segmenters),
compared with DeLong's test on the same records; per-record Dice (segmenters, 1.0 where both
masks are empty) compared with the Wilcoxon signed-rank test. Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from heldout import predict_held_out  # noqa: E402  (numpy-only imports; TF in the call)


def _scores(run_dir: Path, ds_dir: Path):
    _, _, out, y, truth = predict_held_out(run_dir, ds_dir)
    if truth is None:
        return y, out[:, 1], None
    pred = out[..., 0] >= 0.5
    inter = (pred & truth).sum((1, 2))
    denom = pred.sum((1, 2)) + truth.sum((1, 2))
    dice = np.where(denom == 0, 1.0, 2.0 * inter / np.maximum(denom, 1))
    return y, out.reshape(len(out), -1).max(1), dice


def main(argv=None) -> int:
    run_a, run_b, ds_dir = (Path(a) for a in (argv or sys.argv[1:]))
    from medzoo.evaluation import stats
    from medzoo.roc import roc_auc

    y, sa, da = _scores(run_a, ds_dir)
    _, sb, db = _scores(run_b, ds_dir)
    delong = stats.delong_test(y, sa, sb)
    result = {"a": str(run_a), "b": str(run_b), "n": int(y.size),
              "auc_a": round(roc_auc(y, sa), 4), "auc_b": round(roc_auc(y, sb), 4),
              "delong": stats.describe(delong)}
    if da is not None:
        result.update(dice_a=round(float(da.mean()), 4), dice_b=round(float(db.mean()), 4),
                      wilcoxon_dice=stats.describe(stats.wilcoxon_signed_rank(da, db)))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
