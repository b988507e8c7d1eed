"""`medzoo data pull --annotations` against a real Orthanc: the SEG and RTSTRUCT that reference a
pulled series are stored beside it, named in series.csv's `mask` column, and read back onto the
pulled series as the phantom's label map."""

import csv

import numpy as np
import pydicom
import pytest
import volume_phantom as vp

from medzoo import cli
from medzoo.datasets.annotations import parse_segment_map, read_label_map
from medzoo.datasets.geometry import series_geometry

from .conftest import CALLING_AET, running_orthanc

SEGMENT_MAP = parse_segment_map("Left Lung=lung,Right Lung=lung,Nodule=lesion,Heart=heart")


@pytest.fixture(scope="module")
def annotated_orthanc(orthanc_binary, tmp_path_factory):
    """Orthanc holding two phantom series: the first with a SEG and an RTSTRUCT, the second with
    an RTSTRUCT only; plus a SEG of a series that is not on the server."""
    src = tmp_path_factory.mktemp("annotated")
    files = []
    first = vp.write_series(src / "a", seed=1)
    ds_a = [pydicom.dcmread(p) for p in first]
    second = vp.write_series(src / "b", seed=2)
    ds_b = [pydicom.dcmread(p) for p in second]
    for d in ds_b:  # same patient and study as the first series, another series
        d.StudyInstanceUID = ds_a[0].StudyInstanceUID
        d.SeriesNumber = 2
        d.save_as(str(src / "b" / f"{d.SOPInstanceUID}.dcm"), enforce_file_format=True)
    second = sorted((src / "b").glob("1.*.dcm"))
    ds_b = [pydicom.dcmread(p) for p in second]
    files += first + second
    files.append(vp.write_seg(src / "seg_a.dcm", ds_a))
    files.append(vp.write_rtstruct(src / "rt_a.dcm", ds_a, vp.phantom_contours(ds_a)))
    files.append(vp.write_rtstruct(src / "rt_b.dcm", ds_b, vp.phantom_contours(ds_b)))
    elsewhere = [pydicom.dcmread(p) for p in vp.write_series(src / "c", seed=3)]
    for d in elsewhere:
        d.StudyInstanceUID = ds_a[0].StudyInstanceUID
    files.append(vp.write_seg(src / "seg_c.dcm", elsewhere))
    yield from running_orthanc(tmp_path_factory.mktemp("orthanc-annotated"), orthanc_binary,
                               files)


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_pull_annotations_beside_their_series(annotated_orthanc, pacs_env, tmp_path, capsys,
                                              protocol):
    out = tmp_path / "pulled"
    where = (["--dicomweb", annotated_orthanc.dicomweb] if protocol == "dicomweb" else
             ["--dimse", annotated_orthanc.dimse, "--calling-aet", CALLING_AET])
    assert cli.main(["data", "pull", *where, "--out", str(out), "--annotations"]) == 0
    printed = capsys.readouterr().out
    assert "found 16 instances, fetched 16" in printed
    assert "3 annotations (SEG/RTSTRUCT) stored beside their series, 1 referencing no pulled " \
           "series left" in printed
    rows = list(csv.DictReader(open(out / "series.csv")))
    assert sorted(r["instances"] for r in rows) == ["8", "8"]
    # which folder holds which series depends on the server's listing order: tell by content
    number = {r["path"]: int(pydicom.dcmread(next((out / r["path"]).glob("IM*.dcm")),
                                             stop_before_pixels=True).SeriesNumber) for r in rows}
    a, b = (next(p for p, n in number.items() if n == k).split("/")[1] for k in (1, 2))
    masks = {r["path"].split("/")[1]: r["mask"] for r in rows}
    stored = sorted(p.name for p in (out / "study-0001").iterdir() if p.is_file())
    assert stored == sorted([f"{a}.rtstruct-1.dcm", f"{a}.seg-1.dcm", f"{b}.rtstruct-1.dcm"])
    # the SEG is preferred where a series has both
    assert masks == {a: f"study-0001/{a}.seg-1.dcm", b: f"study-0001/{b}.rtstruct-1.dcm"}
    for series in (a, b):
        headers = [pydicom.dcmread(p, stop_before_pixels=True)
                   for p in sorted((out / "study-0001" / series).glob("IM*.dcm"))]
        geometry = series_geometry(headers)
        for mask in ([masks[series]] + ([f"study-0001/{a}.rtstruct-1.dcm"] if series == a
                                         else [])):
            lm = read_label_map(out / mask, geometry, class_names=vp.CLASSES,
                                segment_map=SEGMENT_MAP)
            np.testing.assert_array_equal(lm.array, vp.label_map())

    # a second run skips everything already there and keeps the same files
    assert cli.main(["data", "pull", *where, "--out", str(out), "--annotations"]) == 0
    assert "fetched 0, skipped 16" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "study-0001").iterdir() if p.is_file()) == stored

    # pull → ingest with no hand conversion: series.csv's mask column feeds labels.csv as is
    # (plus one local series of a second patient: folds need two patients)
    other = [pydicom.dcmread(p) for p in vp.write_series(tmp_path / "other", seed=9)]
    for d in other:
        d.PatientID = "PV2"
        d.save_as(d.filename, enforce_file_format=True)
    other_seg = vp.write_seg(tmp_path / "other.seg.dcm", other)
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "mask"])
        for r in rows:
            writer.writerow([str(out / r["path"]), "lesion", str(out / r["mask"])])
        writer.writerow([str(tmp_path / "other"), "normal", str(other_seg)])
    ds = tmp_path / "ds"
    assert cli.main(["data", "ingest", str(out), "--labels", str(labels), "--out", str(ds),
                     "--spacing", f"{vp.SLICE_SPACING},{vp.PIXEL_SPACING[0]},{vp.PIXEL_SPACING[1]}",
                     "--patch-size", "8,32,32", "--folds", "2",
                     "--label-classes", ",".join(vp.CLASSES),
                     "--segment-map", "Left Lung=lung,Right Lung=lung,Nodule=lesion,Heart=heart",
                     "--key-file", str(tmp_path / "key")]) == 0
    assert "ingested 24 of 24 inputs (3 volumes), rejected 0" in capsys.readouterr().out
    from medzoo.datasets import records

    stored_masks = [rec["mask"] for rec in records.read_records(ds)]
    assert len(stored_masks) == 3
    for mask in stored_masks:  # at the series' own spacing: the phantom's label map, voxel for voxel
        np.testing.assert_array_equal(mask, vp.label_map())


def test_pull_without_annotations_leaves_them(annotated_orthanc, pacs_env, tmp_path, capsys):
    out = tmp_path / "pulled"
    assert cli.main(["data", "pull", "--dicomweb", annotated_orthanc.dicomweb, "--out",
                     str(out)]) == 0
    assert "left 4 non-image objects" in capsys.readouterr().out
    assert not [p for p in (out / "study-0001").iterdir() if p.is_file()]
    assert list(csv.DictReader(open(out / "series.csv")))[0].keys() == {
        "path", "label", "modality", "instances"}
