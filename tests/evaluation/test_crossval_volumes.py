"""``medzoo cv`` on native volumes: per-fold sliding-window evaluation, fold figure = mean Dice."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as sps

from medzoo.evaluation import crossval


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_cv_unet_on_volumes_from_the_cli(volume_ds, tmp_path):
    out = tmp_path / "cv"
    result = subprocess.run([sys.executable, "-m", "medzoo", "cv", "unet", "--data", str(volume_ds),
                             "--folds", "3", "--epochs", "1", "--option", "base_width=4",
                             "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((volume_ds / "dataset.json").read_text())
    foreground = info["label_classes"][1:]
    assert result.stdout.startswith("unet: dice ")

    rows = _rows(out / "folds.csv")
    assert [int(r["fold"]) for r in rows] == [0, 1, 2]
    assert sum(int(r["n_test"]) for r in rows) == info["counts"]["records"]  # every volume tested once
    for r in rows:
        fold_metrics = json.loads((out / "unet" / f"fold-{r['fold']}" / "eval" / "metrics.json").read_text())
        assert fold_metrics["volume"] is True and fold_metrics["split"] == "test"
        assert fold_metrics["n"] == int(r["n_test"])
        per_class = [float(r[f"dice_{c}"]) for c in foreground]
        assert all(0.0 <= d <= 1.0 for d in per_class)
        assert float(r["dice"]) == pytest.approx(np.mean(per_class), abs=1e-9)  # fold = mean Dice
        assert float(r["dice"]) == pytest.approx(fold_metrics["metrics"]["dice"])
        assert float(r["hd95"]) >= 0.0 and 0.0 <= float(r["nsd"]) <= 1.0

    summary = {s["metric"]: s for s in _rows(out / "summary.csv")}
    dice = np.array([float(r["dice"]) for r in rows])
    assert float(summary["dice"]["mean"]) == pytest.approx(dice.mean(), abs=1e-6)
    assert float(summary["dice"]["sd"]) == pytest.approx(dice.std(ddof=1), abs=1e-6)
    assert {f"dice_{c}" for c in foreground} <= set(summary)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["volume"] is True and stats["n_records"] == info["counts"]["records"]
    assert (out / "comparison.png").is_file() and (out / "folds_dice.png").is_file()
    assert "cross-validation" in (out / "report.html").read_text()


def test_volume_cv_statistics_compare_fold_dice():
    dice = {"a": [0.80, 0.85, 0.90, 0.82], "b": [0.70, 0.80, 0.81, 0.79]}
    rows = [{"model": m, "repeat": 0, "fold": f, "n_train": 12, "n_test": 4, "dice": v}
            for m, values in dice.items() for f, v in enumerate(values)]
    st = crossval.volume_cv_statistics(["a", "b"], rows)
    assert st["volume"] is True and st["n_records"] == 16 and st["vs_chance"] == {}
    (entry,) = st["between_models"]
    assert entry["metric"] == "dice" and entry["n_folds"] == 4
    expected = sps.ttest_rel(dice["a"], dice["b"])
    assert entry["paired_ttest"]["p_value"] == pytest.approx(expected.pvalue, rel=1e-6)
    corrected = entry["corrected_resampled_ttest"]["p_value"]
    assert expected.pvalue < corrected < 1.0  # Nadeau–Bengio widens the variance
    assert entry["mcnemar"]["p_value"] is None and entry["delong"]["p_value"] is None
