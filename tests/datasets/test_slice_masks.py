"""2D ingest with a DICOM SEG as a row's mask: the frame of the row's image (matched by SOP
Instance UID, CR included) becomes the row's binary mask — the same mask the synth .npy gives —
and a SEG that does not reference the image rejects the row with its reason."""

import csv

import numpy as np
import pydicom
import pytest

from medzoo.datasets import records
from medzoo.datasets.annotations import AnnotationError
from medzoo.datasets.ingest import ingest
from medzoo.datasets.slice_masks import is_dicom_annotation, read_slice_mask
from medzoo.datasets.synth import write_synthetic

SIZE = 32


def _write_seg(path, datasets, masks):
    """A highdicom BINARY SEG with one segment ('Nodule') over ``datasets`` (one series)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name="test", version="1", family=codes.DCM.ArtificialIntelligence)
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="Nodule", segmented_property_category=codes.SCT.Organ,
        segmented_property_type=codes.SCT.Nodule,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm)
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=np.stack(masks).astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=hd.UID(), series_number=9,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test",
        manufacturer_model_name="test", software_versions="1", device_serial_number="1")
    seg.save_as(str(path))


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _with_segs(root):
    """labels_seg.csv: each lesion patient's rows get one SEG over its whole series."""
    rows = _rows(root / "labels.csv")
    by_patient = {}
    for row in rows:
        by_patient.setdefault(row["path"].split("/")[0], []).append(row)
    for patient, items in by_patient.items():
        if items[0]["label"] != "lesion":
            continue
        datasets = [pydicom.dcmread(root / r["path"]) for r in items]
        masks = [np.load(root / r["mask"]) for r in items]
        _write_seg(root / patient / "seg.dcm", datasets, masks)
        for r in items:
            r["mask"] = f"{patient}/seg.dcm"
    with open(root / "labels_seg.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "mask"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _masks(ds):
    out = {}
    for path in records.shard_paths(ds):
        for data in records.iter_tfrecord(path):
            parsed = records.parse_record(records.decode_example(data))
            out[parsed["record_id"]] = parsed["mask"]
    return out


@pytest.mark.parametrize("modality,slices", [("ct", 2), ("cr", 1)])
def test_seg_masks_match_npy_masks(tmp_path, modality, slices):
    root = tmp_path / "dicom"
    write_synthetic(root, patients=4, modality=modality, size=SIZE, slices=slices, seed=1)
    rows = _with_segs(root)
    assert sum(r["mask"].endswith("seg.dcm") for r in rows) == 2 * slices
    seg_ds, npy_ds = tmp_path / "seg_ds", tmp_path / "npy_ds"
    key = tmp_path / "key"
    via_seg = ingest(root, root / "labels_seg.csv", seg_ds, size=SIZE, folds=2, key_file=key)
    ingest(root, root / "labels.csv", npy_ds, size=SIZE, folds=2, key_file=key)
    assert (via_seg["inputs"], via_seg["loaded"], via_seg["rejected"]) == (4 * slices,) * 2 + (0,)
    seg_masks, npy_masks = _masks(seg_ds), _masks(npy_ds)
    assert seg_masks.keys() == npy_masks.keys() and len(seg_masks) == 4 * slices
    lesion_pixels = 0
    for record_id, mask in seg_masks.items():
        np.testing.assert_array_equal(mask, npy_masks[record_id])
        lesion_pixels += int(mask.sum())
    assert lesion_pixels > 0
    index = {r["record_id"]: r for r in _rows(seg_ds / "index.csv")}
    assert all(r["has_mask"] == "1" for r in index.values())


def test_seg_of_another_image_is_rejected(tmp_path):
    root = tmp_path / "dicom"
    write_synthetic(root, patients=2, modality="ct", size=SIZE, slices=2, seed=2)
    rows = _rows(root / "labels.csv")
    lesion = [r for r in rows if r["label"] == "lesion"]
    # a SEG over slice 1 only, given as the mask of both slices of the series
    _write_seg(root / "seg1.dcm", [pydicom.dcmread(root / lesion[0]["path"])],
               [np.load(root / lesion[0]["mask"])])
    assert is_dicom_annotation(root / "seg1.dcm")
    assert not is_dicom_annotation(root / lesion[0]["mask"])
    got = read_slice_mask(root / "seg1.dcm", root / lesion[0]["path"])
    np.testing.assert_array_equal(got, np.load(root / lesion[0]["mask"]) > 0)
    with pytest.raises(AnnotationError, match="SEG does not reference this image"):
        read_slice_mask(root / "seg1.dcm", root / lesion[1]["path"])
    for r in lesion:
        r["mask"] = "seg1.dcm"
    with open(root / "labels_seg.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "mask"])
        writer.writeheader()
        writer.writerows(rows)
    summary = ingest(root, root / "labels_seg.csv", tmp_path / "ds", size=SIZE, folds=2,
                     key_file=tmp_path / "key")
    assert (summary["inputs"], summary["loaded"], summary["rejected"]) == (4, 3, 1)
    rejected = _rows(tmp_path / "ds" / "rejected.csv")
    assert [(r["path"], r["reason"]) for r in rejected] == [
        (lesion[1]["path"], "mask: SEG does not reference this image (no frame for its SOP "
                            "Instance UID)")]


def test_rtstruct_contour_fills_its_image_only(tmp_path):
    """An RTSTRUCT contour referencing slice 1 fills slice 1's mask at the pixel centres inside
    it; slice 2 (contour not on it) gets an empty mask; a CR image (no plane geometry) cannot
    take an RTSTRUCT."""
    import volume_phantom as vp

    root = tmp_path / "dicom"
    write_synthetic(root, patients=2, modality="ct", size=SIZE, slices=2, seed=4)
    first = sorted(root.glob("*/IM0001.dcm"))[0]
    slices = [pydicom.dcmread(first), pydicom.dcmread(first.with_name("IM0002.dcm"))]
    ds = slices[0]
    origin = np.asarray(ds.ImagePositionPatient, float)
    row_dir, col_dir = (np.asarray(ds.ImageOrientationPatient[:3], float),
                        np.asarray(ds.ImageOrientationPatient[3:], float))
    ps = float(ds.PixelSpacing[0])
    corners = [(7.5, 9.5), (7.5, 19.5), (15.5, 19.5), (15.5, 9.5)]  # (row, column)
    points = np.array([origin + c * ps * row_dir + r * ps * col_dir for r, c in corners])
    path = vp.write_rtstruct(tmp_path / "rt.dcm", slices, {"Nodule": [(points, ds)]})
    assert is_dicom_annotation(path)
    expected = np.zeros((SIZE, SIZE), np.uint8)
    expected[8:16, 10:20] = 1
    np.testing.assert_array_equal(read_slice_mask(path, first), expected)
    assert not read_slice_mask(path, first.with_name("IM0002.dcm")).any()
    assert not read_slice_mask(path, first, segment_map="Nodule=-").any()

    cr = tmp_path / "cr"
    write_synthetic(cr, patients=2, modality="cr", size=SIZE, slices=1, seed=4)
    with pytest.raises(AnnotationError, match="RTSTRUCT contours need the image's plane "
                                              "geometry"):
        read_slice_mask(path, sorted(cr.glob("*/IM0001.dcm"))[0])


def _write_two_segment_seg(path, dataset, nodule, couch):
    """A BINARY SEG of one image with two segments: 'Nodule' (1) and 'Couch' (2)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name="test", version="1", family=codes.DCM.ArtificialIntelligence)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=number, segment_label=label, segmented_property_category=codes.SCT.Organ,
        segmented_property_type=prop, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm)
        for number, label, prop in ((1, "Nodule", codes.SCT.Nodule), (2, "Couch", codes.SCT.Bone))]
    seg = hd.seg.Segmentation(
        source_images=[dataset], pixel_array=np.stack([nodule, couch], axis=-1)[None].astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=9,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="test",
        manufacturer_model_name="test", software_versions="1", device_serial_number="1")
    seg.save_as(str(path))


def test_cli_segment_map_leaves_a_segment_out_of_2d_masks(tmp_path, capsys):
    """`medzoo data ingest --segment-map` reaches 2D rows whose mask is a SEG: the stored mask is
    every segment by default, and without the segments mapped to `-`."""
    from medzoo import cli

    root = tmp_path / "dicom"
    write_synthetic(root, patients=2, modality="ct", size=SIZE, slices=1, seed=3)
    rows = _rows(root / "labels.csv")
    lesion = next(r for r in rows if r["label"] == "lesion")
    nodule = np.load(root / lesion["mask"]) > 0
    couch = np.zeros((SIZE, SIZE), bool)
    couch[-4:, :] = True  # a strip the nodule does not reach
    assert nodule.any() and not (nodule & couch).any()
    _write_two_segment_seg(root / "seg.dcm", pydicom.dcmread(root / lesion["path"]), nodule, couch)
    lesion["mask"] = "seg.dcm"
    with open(root / "labels_seg.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "mask"])
        writer.writeheader()
        writer.writerows(rows)

    def stored_lesion_mask(out, *extra):
        args = ["data", "ingest", str(root), "--labels", str(root / "labels_seg.csv"), "--out",
                str(out), "--size", str(SIZE), "--folds", "2", "--key-file",
                str(tmp_path / "key"), *extra]
        assert cli.main(args) == 0
        assert "ingested 2 of 2 inputs (2 images), rejected 0" in capsys.readouterr().out
        index = _rows(out / "index.csv")
        record = next(r["record_id"] for r in index if r["has_mask"] == "1" and r["label"] == "1")
        return _masks(out)[record]

    every_segment = stored_lesion_mask(tmp_path / "all")
    np.testing.assert_array_equal(every_segment, (nodule | couch).astype(np.uint8))
    without_couch = stored_lesion_mask(tmp_path / "nodule", "--segment-map", "Couch=-,Nodule=lesion")
    np.testing.assert_array_equal(without_couch, nodule.astype(np.uint8))
    assert int(without_couch.sum()) == int(nodule.sum()) > 0
