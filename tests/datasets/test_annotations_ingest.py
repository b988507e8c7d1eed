"""Volume ingest (`data ingest --spacing auto`) with SEG, RTSTRUCT and NIfTI masks in labels.csv:
the stored masks equal the phantom's label map voxel for voxel. Volume ingest is volumes-data's
(medzoo.datasets.volumes); until it is on this branch the test is skipped."""

import csv
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest
import volume_phantom as vp

from medzoo.datasets import records

pytest.importorskip("medzoo.datasets.volumes", reason="volume ingest (volumes-data) not here yet")

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
XYZ = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)


def test_volume_ingest_of_seg_rtstruct_nifti_masks(tmp_path):
    root = tmp_path / "dicom"
    rows = []
    for p in range(6):
        paths = vp.write_series(root / f"p{p}", seed=p)
        for path in paths:  # one patient per series
            ds = pydicom.dcmread(path)
            ds.PatientID = f"P{p}"
            ds.save_as(path)
        datasets = [pydicom.dcmread(path) for path in paths]
        if p < 2:
            mask = vp.write_seg(root / f"p{p}-seg.dcm", datasets).name
        elif p < 4:
            mask = vp.write_rtstruct(root / f"p{p}-rt.dcm", datasets,
                                     vp.phantom_contours(datasets)).name
        else:
            img = nib.Nifti1Image(vp.label_map().transpose(2, 1, 0).copy(),
                                  LPS_TO_RAS @ vp.affine() @ XYZ)
            img.set_sform(img.affine, code=1)
            nib.save(img, str(root / f"p{p}.nii.gz"))
            mask = f"p{p}.nii.gz"
        rows.append(f"p{p},{'lesion' if p % 2 else 'normal'},{mask}")
    (root / "labels.csv").write_text("path,label,mask\n" + "\n".join(rows) + "\n")
    ds_dir = tmp_path / "ds"
    proc = subprocess.run(
        [sys.executable, "-m", "medzoo", "data", "ingest", str(root), "--labels",
         str(root / "labels.csv"), "--spacing", "auto", "--out", str(ds_dir), "--folds", "3",
         "--label-classes", "background,lung,heart,lesion", "--key-file", str(tmp_path / "key"),
         "--segment-map", "Left Lung=lung,Right Lung=lung,Heart=heart,Nodule=lesion"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert list(csv.DictReader(open(ds_dir / "rejected.csv"))) == []
    truth = vp.label_map()
    masks = [records.parse_record(records.decode_example(data))["mask"]
             for path in records.shard_paths(ds_dir) for data in records.iter_tfrecord(path)]
    assert len(masks) == 6
    for n, mask in enumerate(masks):
        assert mask.shape == truth.shape
        if 2 <= n < 4:  # RTSTRUCT: rasterised
            for value in (1, 2, 3):
                a, b = mask == value, truth == value
                assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.99
        else:  # SEG and NIfTI: exact
            np.testing.assert_array_equal(mask, truth)
