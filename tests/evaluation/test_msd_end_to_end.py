"""A Decathlon folder written with nibabel goes the whole way: `medzoo data ingest --layout msd`
(planned and resampled like DICOM volumes), `medzoo train unet` (3D patches, 1 epoch),
`medzoo export`, `medzoo evaluate` (sliding window through onnxruntime, per-class mm metrics)."""

import csv
import json
import math
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from medzoo.datasets import records

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
CLASSES = ["organ", "tumour"]


def _decathlon(root, cases=6):
    """MSD layout, one CT channel; case n at 0.8 × 0.8 × (2.5 or 5) mm with a box organ (1)
    holding a small tumour (2); every other case has slices twice as thick."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    for n in range(cases):
        z_mm = 5.0 if n % 2 else 2.5
        nz = 8 if n % 2 else 16
        labels = np.zeros((32, 32, nz), np.uint8)  # NIfTI axes x, y, z
        zs = slice(nz // 4, 3 * nz // 4)
        labels[6 + n:24 + n // 2, 8:26, zs] = 1
        labels[12:18, 12:18, nz // 2 - 1:nz // 2 + 1] = 2
        image = (-800 + 850 * (labels > 0) + 60 * (labels == 2)
                 + rng.normal(0, 20, labels.shape)).astype(np.float32)
        lps = np.diag([0.8, 0.8, z_mm, 1.0])
        lps[:3, 3] = [-12.8, -12.8, -20.0]
        for array, folder in ((image, "imagesTr"), (labels, "labelsTr")):
            img = nib.Nifti1Image(array, LPS_TO_RAS @ lps)
            img.set_qform(img.affine, code=1)
            img.set_sform(img.affine, code=1)
            nib.save(img, str(root / folder / f"organ_{n:03d}.nii.gz"))
    (root / "dataset.json").write_text(json.dumps({
        "name": "Organ", "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "organ", "2": "tumour"}, "numTraining": cases}))


def _medzoo(*args, timeout=600):
    proc = subprocess.run([sys.executable, "-m", "medzoo", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_decathlon_ingest_train_export_evaluate(tmp_path):
    root = tmp_path / "Task97_Organ"
    _decathlon(root)
    ds, run, models, out = (tmp_path / n for n in ("ds", "run", "models", "eval"))
    proc = _medzoo("data", "ingest", "--layout", "msd", root, "--out", ds, "--folds", "3",
                   "--patch-size", "8,16,16", "--batch-size", "2",
                   "--key-file", tmp_path / "key")
    assert "ingested 6 of 6 cases (msd, 1 channel(s)), rejected 0" in proc.stdout
    plan = json.loads((ds / "plan.json").read_text())
    assert plan["target_spacing"][0] == pytest.approx(2.5)  # the 5 mm cases resampled to it
    assert plan["patch_size"] == [8, 16, 16]
    _medzoo("train", "unet", "--data", ds, "--out", run, "--epochs", "1", "--test-fold", "0",
            "--option", "base_width=4", "--seed", "0")
    history = list(csv.DictReader(open(run / "history.csv")))
    assert len(history) == 1 and math.isfinite(float(history[0]["loss"]))
    _medzoo("export", run, "--out", models)
    exports = sorted(p for p in models.glob("*/*") if (p / "model.onnx").is_file())
    assert len(exports) == 1
    card = json.loads((exports[0] / "model_card.json").read_text())
    assert card["domain"]["modalities"] == {"CT": 3 * 16 + 3 * 8}  # every slice of 6 cases
    assert card["domain"]["pixel_spacing_mm"] == [0.8, 0.8]
    assert card["domain"]["slice_spacing_mm"] == [2.5, 5.0]
    _medzoo("evaluate", exports[0], "--data", ds, "--out", out, "--bootstrap", "0")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["volume"] is True and sorted(metrics["per_class"]) == CLASSES
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert sorted({r["class"] for r in rows}) == CLASSES
    assert len({r["record_id"] for r in rows}) == 2  # fold 0 of 3 folds over 6 cases
    masks = {}
    for path in records.shard_paths(ds):
        for data in records.iter_tfrecord(path):
            parsed = records.parse_record(records.decode_example(data))
            masks[parsed["record_id"]] = parsed["mask"]
    voxel_ml = float(np.prod(plan["target_spacing"])) / 1000.0
    for r in rows:
        assert 0.0 <= float(r["dice"]) <= 1.0
        # the reference volume is the ingested (resampled) label map's
        value = CLASSES.index(r["class"]) + 1
        expected_ml = int((masks[r["record_id"]] == value).sum()) * voxel_ml
        assert float(r["volume_ref_ml"]) == pytest.approx(expected_ml, rel=1e-3)
    for name in CLASSES:
        dices = [float(r["dice"]) for r in rows if r["class"] == name]
        assert metrics["per_class"][name]["dice"] == pytest.approx(np.mean(dices), abs=1e-5)
