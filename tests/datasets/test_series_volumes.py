"""Series checks (gaps, duplicates, geometry), order independent of file names, 3D volumes."""

import csv
import json
import shutil

import numpy as np
import pydicom
import pytest
import tensorflow as tf
from pydicom.uid import generate_uid

from medzoo.datasets.ingest import ingest
from medzoo.datasets.manifest import read_index
from medzoo.datasets.pipeline import make_dataset
from medzoo.datasets.records import read_records
from medzoo.datasets.synth import write_synthetic

SLICES = 5


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def series_dir(tmp_path_factory):
    """7 patients, one series folder each: p0 shuffled + nested names, p4 a slice missing,
    p5 a duplicated position, p6 one slice with another pixel spacing."""
    src = tmp_path_factory.mktemp("series_src")
    summary = write_synthetic(src, patients=7, size=32, slices=SLICES, seed=11)
    root = tmp_path_factory.mktemp("series")
    rows = []
    for p, folder in enumerate(summary["patient_folders"]):
        files = sorted((src / folder).glob("*.dcm"))
        out = root / f"p{p}"
        out.mkdir()
        if p == 0:  # names that sort against the slice order, some in a subfolder
            for k, f in enumerate(files):
                sub = out / ("deep" if k % 2 else "")
                sub.mkdir(exist_ok=True)
                shutil.copy(f, sub / f"{'zyxwv'[k]}_{k * 7 % 5}.dcm")
        else:
            for f in files:
                shutil.copy(f, out / f.name)
        if p == 4:
            (out / "IM0003.dcm").unlink()
        if p == 5:
            ds = pydicom.dcmread(out / "IM0002.dcm")
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(
                entropy_srcs=["dup"])
            ds.save_as(out / "IM0002b.dcm")
        if p == 6:
            ds = pydicom.dcmread(out / "IM0004.dcm")
            ds.PixelSpacing = [1.0, 1.0]
            ds.save_as(out / "IM0004.dcm")
        rows.append((f"p{p}", "lesion" if p % 2 else "normal"))
    with open(root / "labels.csv", "w") as fh:
        fh.write("path,label\n" + "".join(f"{a},{b}\n" for a, b in rows))
    return root, src, summary


def test_2d_series_issues_are_warned_and_nothing_is_lost(series_dir, tmp_path, key_file):
    root, _, _ = series_dir
    result = ingest(root, root / "labels.csv", tmp_path / "DS", size=16, folds=2,
                    key_file=key_file, progress=False)
    assert result["inputs"] == 7 * SLICES == result["loaded"] + result["rejected"]
    assert result["rejected"] == 0 and result["records"] == 35 and result["warnings"] == 3
    warnings = {r["path"]: (int(r["row"]), r["reason"]) for r in _csv(tmp_path / "DS" / "warnings.csv")}
    assert warnings["p4"] == (5, "missing slices (gap of 10 mm, more than 1.5 x the median "
                                 "spacing of 5 mm)")
    assert warnings["p5"] == (6, "duplicate slice positions (1 slice at the position of another)")
    assert warnings["p6"] == (7, "inconsistent geometry in series (PixelSpacing differ)")
    # --series-issues reject: the same findings reject those series' files instead
    strict = ingest(root, root / "labels.csv", tmp_path / "DS2", size=16, folds=2,
                    key_file=key_file, progress=False, series_issues="reject")
    rejected = _csv(tmp_path / "DS2" / "rejected.csv")
    assert strict["rejected"] == len(rejected) == 4 + 6 + 5 and strict["records"] == 20
    assert strict["inputs"] == strict["loaded"] + strict["rejected"]
    assert {r["path"].split("/")[0] for r in rejected} == {"p4", "p5", "p6"}


def test_shuffled_nested_names_give_the_slice_order(series_dir, tmp_path, key_file):
    root, src, summary = series_dir
    ingest(root, root / "labels.csv", tmp_path / "DS", size=16, folds=2, key_file=key_file,
           progress=False)
    index = read_index(tmp_path / "DS")
    recs = list(read_records(tmp_path / "DS"))
    p0 = [rec for rec, r in zip(recs, index) if r["row"] == 1]
    assert [r["frame"] for r in index if r["row"] == 1] == [1, 2, 3, 4, 5]
    for k, rec in enumerate(p0):  # IM0001 … IM0005 = increasing z
        hu = pydicom.dcmread(src / summary["patient_folders"][0] / f"IM{k + 1:04d}.dcm")
        from medzoo.datasets.dicom import read_dicom

        expected = read_dicom(src / summary["patient_folders"][0] / f"IM{k + 1:04d}.dcm",
                              size=(16, 16)).frames[0]
        np.testing.assert_array_equal(rec["image"], expected)
        assert hu.InstanceNumber == k + 1


def test_volumes_reject_broken_series_and_feed_a_3d_batch(series_dir, tmp_path, key_file):
    root, _, _ = series_dir
    result = ingest(root, root / "labels.csv", tmp_path / "V", size=16, volumes="4,16,16",
                    folds=2, key_file=key_file, progress=False)
    assert result["records"] == 4 and result["rejected"] == 15
    assert result["inputs"] == result["loaded"] + result["rejected"] == 35
    reasons = {r["path"].split("/")[0]: r["reason"] for r in _csv(tmp_path / "V" / "rejected.csv")}
    assert reasons["p4"].startswith("missing slices") and reasons["p6"].startswith("inconsistent")
    assert reasons["p5"].startswith("duplicate slice positions")
    info = json.loads((tmp_path / "V" / "dataset.json").read_text())
    assert info["kind"] == "volume" and info["image_size"] == [4, 16, 16]
    assert info["channels"] == 1 and info["series_issues"] == "reject"
    assert [r["slices"] for r in read_index(tmp_path / "V")] == [SLICES] * 4

    # the volume is the 2D slices (same chain) resampled linearly along z
    slices = ingest(root, root / "labels.csv", tmp_path / "S", size=16, folds=2,
                    key_file=key_file, progress=False)
    assert slices["records"] == 35
    flat = [r["image"] for r, i in zip(read_records(tmp_path / "S"), read_index(tmp_path / "S"))
            if i["row"] == 1]
    vol = next(read_records(tmp_path / "V"))
    assert vol["image"].shape == (4, 16, 16, 1)
    stack = np.stack(flat).reshape(SLICES, 16 * 16, 1)
    ref = tf.image.resize(stack, (4, 16 * 16), "bilinear").numpy().reshape(4, 16, 16, 1)
    np.testing.assert_allclose(vol["image"], ref, atol=1e-6)
    # spacing along D, H, W: 5 slices 5 mm apart into 4; 350 mm field of view into 16 pixels
    np.testing.assert_allclose(vol["spacing"], (6.25, 350 / 16, 350 / 16), rtol=1e-5)

    data = make_dataset(tmp_path / "V", None, target="label", batch_size=4, shuffle=False,
                        augment=True)
    (x, y), = list(data)
    assert x.shape == (4, 4, 16, 16, 1) and x.dtype == tf.float32 and y.shape == (4,)
    assert sorted(y.numpy().tolist()) == [0, 0, 1, 1]
