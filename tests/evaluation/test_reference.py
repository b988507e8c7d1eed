"""`medzoo evaluate --predictions --reference --images`: SEGs medzoo writes scored against
reference SEG / RTSTRUCT / NIfTI of the same series (Dice, HD95 in mm), without TensorFlow."""

import csv
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest
import volume_phantom as vp

from medzoo.deploy.dicom_seg import build_segmentation
from medzoo.evaluation.reference import structure_metrics


def _scores(pred, ref, spacing):
    """structure_metrics of two boolean masks as class 'nodule' → (dice, hd95_mm)."""
    m = structure_metrics(np.asarray(pred, np.uint8), ["background", "nodule"],
                          np.asarray(ref, np.uint8), ["background", "nodule"], spacing)["nodule"]
    return m["dice"], m["hd95_mm"]


def test_hd95_known_shift_and_brute_force():
    """Dice and HD95 (through evaluation.surface) keep this report's conventions: HD95 0.0 when
    both masks are empty, None when exactly one is."""
    ref = np.zeros((8, 20, 20), bool)
    ref[2:6, 5:15, 5:15] = True
    shifted = np.roll(ref, 1, axis=0)
    dice, hd = _scores(shifted, ref, (2.5, 0.7, 0.8))
    assert hd == pytest.approx(2.5) and dice == pytest.approx(2 * 300 / 800)
    assert _scores(ref, ref, (2.5, 0.7, 0.8)) == (1.0, 0.0)
    assert _scores(ref, np.zeros_like(ref), (1, 1, 1)) == (0.0, None)
    assert _scores(np.zeros_like(ref), np.zeros_like(ref), (1, 1, 1)) == (1.0, 0.0)
    # against all pairwise surface distances of two random blobs
    rng = np.random.default_rng(0)
    a = rng.random((6, 12, 12)) > 0.7
    b = rng.random((6, 12, 12)) > 0.7
    from scipy import ndimage

    def surf(m):
        return np.argwhere(m & ~ndimage.binary_erosion(m, border_value=0)) * [2.0, 0.5, 0.7]

    sa, sb = surf(a), surf(b)
    d = np.linalg.norm(sa[:, None] - sb[None], axis=-1)
    brute = max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))
    assert _scores(a, b, (2.0, 0.5, 0.7))[1] == pytest.approx(brute)


def _nifti(labels, path):
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    xyz = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    img = nib.Nifti1Image(labels.transpose(2, 1, 0).copy(), lps_to_ras @ vp.affine() @ xyz)
    img.set_sform(img.affine, code=1)
    nib.save(img, str(path))


def test_evaluate_predicted_segs_against_references(tmp_path):
    images, ref, pred = tmp_path / "images", tmp_path / "ref", tmp_path / "pred"
    ref.mkdir()
    pred.mkdir()
    nodule = vp.label_map() == 3
    shifted = np.roll(nodule, 1, axis=0)
    for n, (name, mask) in enumerate([("s1", nodule), ("s2", shifted), ("s3", nodule)], 1):
        datasets = [pydicom.dcmread(p) for p in vp.write_series(images / name, seed=n)]
        order = [vp.slice_index(d) for d in datasets]
        seg = build_segmentation(datasets, mask[order], model_name="unet", model_version=1)
        seg.save_as(str(pred / f"series-{n:03d}.dcm"))
        if name == "s1":
            vp.write_seg(ref / "s1-seg.dcm", datasets)
        elif name == "s2":
            vp.write_rtstruct(ref / "s2-rt.dcm", datasets, vp.phantom_contours(datasets))
        else:
            _nifti(vp.label_map(), ref / "s3.nii.gz")
    orphan = [pydicom.dcmread(p) for p in vp.write_series(tmp_path / "elsewhere", seed=9)]
    order = [vp.slice_index(d) for d in orphan]
    build_segmentation(orphan, nodule[order], model_name="unet", model_version=1).save_as(
        str(pred / "series-004.dcm"))

    out = tmp_path / "eval"
    args = ["evaluate", "--predictions", str(pred), "--reference", str(ref), "--images",
            str(images), "--out", str(out), "--segment-map",
            "Lesion=lesion,Nodule=lesion,Left Lung=lung,Right Lung=lung,Heart=heart",
            "--label-classes", "background,lung,heart,lesion"]
    # the command line in a fresh process, which must not import TensorFlow on the way
    code = ("import sys\nfrom medzoo import cli\ntry: rc = cli.main(%r)\nfinally: print("
            "'TF' if 'tensorflow' in sys.modules else 'no TF')\nsys.exit(rc)" % args)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "evaluated 3 of 4 predictions, rejected 1" in proc.stdout
    assert proc.stdout.strip().endswith("no TF")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["structures"] == ["lesion"]
    rows = list(csv.DictReader(open(out / "per_case.csv")))
    by_case = {r["case"]: r for r in rows}
    assert float(by_case["1"]["dice"]) == 1.0 and float(by_case["1"]["hd95_mm"]) == 0.0
    assert float(by_case["3"]["dice"]) == 1.0  # NIfTI reference, exact
    expected = _scores(shifted, nodule, (1, 1, 1))[0]
    assert float(by_case["2"]["dice"]) == pytest.approx(expected, abs=0.01)  # RTSTRUCT reference
    assert float(by_case["2"]["hd95_mm"]) == pytest.approx(2.5, abs=0.01)
    assert metrics["per_structure"]["lesion"]["n"] == 3
    assert list(csv.DictReader(open(out / "rejected.csv"))) == [
        {"row": "4", "path": "series-004.dcm", "reason": "its series is not among --images"}]
