"""`medzoo predict` with a volume export: DICOM series in → one multi-class SEG per series on the
source grid, findings in mL and mm; bad series rejected with a reason."""

import csv
import json
import shutil

import numpy as np
import pydicom
import pytest

from medzoo.deploy.predict_volume import (normalize, resample_to_shape, structure_findings,
                                          target_shape)


def test_structure_findings_volumes_components_and_diameters():
    labels = np.zeros((4, 10, 20), np.uint8)
    labels[1:3, 2:6, 2:6] = 1  # "lung": 32 voxels
    labels[1, 8, 3:8] = 2  # lesion A: a line of 5 voxels along x
    labels[3, 1:3, 15:17] = 2  # lesion B: 4 voxels, not touching A
    spacing = (2.0, 0.5, 0.5)
    found = structure_findings(labels, spacing, ["background", "lung", "lesion"])
    voxel_ml = 2.0 * 0.5 * 0.5 / 1000
    assert found["lung"]["volume_ml"] == pytest.approx(32 * voxel_ml)
    assert found["lung"]["lesions"] is None  # not a lesion-like class
    lesions = found["lesion"]["lesions"]
    assert [item["volume_ml"] for item in lesions] == pytest.approx([5 * voxel_ml, 4 * voxel_ml])
    assert lesions[0]["diameter_mm"] == pytest.approx(4 * 0.5)  # centres 4 voxels apart
    assert lesions[1]["diameter_mm"] == pytest.approx(np.hypot(0.5, 0.5))
    assert (lesions[0]["first_slice"], lesions[0]["last_slice"]) == (2, 2)


def test_resampling_round_trip_and_normalisation():
    z, y, x = np.meshgrid(*(np.linspace(0, 1, n) for n in (10, 40, 40)), indexing="ij")
    smooth = np.sin(2 * z) + np.cos(3 * y) * x
    shape = target_shape(smooth.shape, (5.0, 0.7, 0.7), (2.0, 1.0, 1.0))
    assert shape == (25, 28, 28)
    there = resample_to_shape(smooth, shape, order=3)
    back = resample_to_shape(there, smooth.shape, order=3)
    assert there.shape == shape and back.shape == smooth.shape
    assert np.abs(back - smooth)[1:-1, 2:-2, 2:-2].max() < 0.05
    labels = (smooth > 0.5).astype(np.uint8)
    assert set(np.unique(resample_to_shape(labels, shape, order=0))) == {0, 1}
    ct = normalize(np.array([-2000.0, 0.0, 40.0, 3000.0]),
                   {"scheme": "ct", "clip": [-1000, 1000], "mean": 0.0, "std": 500.0})
    np.testing.assert_allclose(ct, [-2.0, 0.0, 0.08, 2.0])
    mr = normalize(np.array([1.0, 2.0, 3.0]), {"scheme": "zscore"})
    assert mr.mean() == pytest.approx(0.0, abs=1e-6) and mr.std() == pytest.approx(1.0)


@pytest.fixture(scope="module")
def series_dir(tmp_path_factory):
    """Two phantom CT series (8 slices of 32 px, 1.2 mm pixels, 5 mm slices); the second
    loses a middle slice, so its slices are uneven."""
    from medzoo.datasets.synth import write_synthetic

    out = tmp_path_factory.mktemp("vol_dicom") / "dicom"
    write_synthetic(out, patients=2, size=32, slices=8, seed=5)
    for path in out.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.PixelSpacing = [1.2, 1.2]
        ds.save_as(path)
    patients = sorted(p for p in out.iterdir() if p.is_dir())
    (sorted(patients[1].glob("*.dcm"))[4]).unlink()
    return out


def test_predict_writes_one_multiclass_seg_per_series_on_the_source_grid(volume_export, series_dir,
                                                                          tmp_path, dciodvfy):
    from medzoo.deploy.predict import predict

    out = tmp_path / "pred"
    summary = predict(volume_export, series_dir, out)
    assert summary["inputs"] == 15 and summary["predicted"] == 8 and summary["rejected"] == 7
    assert summary["inputs"] == summary["predicted"] + summary["rejected"]
    rejected = list(csv.DictReader(open(out / "rejected.csv")))
    assert len(rejected) == 7 and all("uneven slices" in r["reason"] for r in rejected)
    assert len(summary["seg_files"]) == 1 and summary["seconds_per_series"] > 0

    seg = pydicom.dcmread(summary["seg_files"][0])
    first = sorted(p for p in series_dir.iterdir() if p.is_dir())[0]
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(first.glob("*.dcm"))]
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["organ", "lesion"]
    assert int(seg.NumberOfFrames) == 8 * 2  # every source slice, for each segment
    assert (seg.Rows, seg.Columns) == (32, 32)
    referenced = {item.ReferencedSOPInstanceUID
                  for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {str(ds.SOPInstanceUID) for ds in sources}
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert dciodvfy(summary["seg_files"][0]) == ("Segmentation", [], [])

    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), 32, 32)
    segment_of = [int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
                  for f in seg.PerFrameFunctionalGroupsSequence]
    voxel_ml = 5.0 * 1.2 * 1.2 / 1000
    rows = {r["class"]: r for r in csv.DictReader(open(out / "predictions.csv"))}
    for number, name in ((1, "organ"), (2, "lesion")):
        voxels = sum(int(frame.sum()) for frame, s in zip(frames, segment_of) if s == number)
        assert int(rows[name]["voxels"]) == voxels
        assert float(rows[name]["volume_ml"]) == pytest.approx(voxels * voxel_ml, abs=1e-4)
    assert rows["lesion"]["lesions"] != "" and rows["organ"]["lesions"] == ""

    studies = json.loads((out / "studies.json").read_text())
    assert [s["images"] for s in studies["studies"]] == [8]
    report = (out / "findings" / "study-001.md").read_text()
    assert "| organ |" in report and "DICOM SEG: `seg/series-001.dcm`" in report
    text = " ".join(p.read_text() for p in (out / "predictions.csv", out / "studies.json",
                                              out / "findings" / "study-001.md"))
    assert str(sources[0].PatientName) not in text and sources[0].StudyInstanceUID not in text


def test_predict_refuses_options_that_do_not_apply(volume_export, series_dir, tmp_path):
    from medzoo.deploy.predict import predict
    from medzoo.errors import InputError

    with pytest.raises(InputError, match="do not apply to volume models"):
        predict(volume_export, series_dir, tmp_path / "p", runtime="savedmodel")
    broken = tmp_path / "broken"
    shutil.copytree(sorted(p for p in series_dir.iterdir() if p.is_dir())[1], broken)
    with pytest.raises(InputError, match="all 7 input files were rejected"):
        predict(volume_export, broken, tmp_path / "p2")
