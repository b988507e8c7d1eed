"""The SEG and SR objects ``medzoo predict`` writes: valid for dciodvfy, also for sources that
lack a frame of reference, orientation or pixel spacing (legacy and secondary-capture exports),
read back with highdicom; a clear reason where no SEG can be made."""

import contextlib
import copy
import inspect
import io
import json
import shutil

import numpy as np
import pydicom
import pytest

from medzoo import fsio
from medzoo.datasets import deid
from medzoo.deploy import dicom_seg
from medzoo.deploy.predict import predict
from medzoo.deploy.send import write_reports

hd = pytest.importorskip("highdicom")

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
LEGACY_DROPS = ("FrameOfReferenceUID", "PositionReferenceIndicator", "ImageOrientationPatient",
                "ImagePositionPatient", "SliceLocation")


def _pseudonym(key_file, path) -> str:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return deid.pseudonym(deid.load_or_create_key(key_file), "series", ds.SeriesInstanceUID)


@pytest.fixture(scope="module")
def mixed_predictions(unet_export, phantom_dicom, key_file, tmp_path_factory):
    """predict + SRs on two phantom patients: one as synth wrote it, one stripped to a legacy
    export (no frame of reference, orientation or position)."""
    src, synth = phantom_dicom
    dicom_dir = tmp_path_factory.mktemp("conformance") / "dicom"
    full, legacy = synth["patient_folders"][:2]
    shutil.copytree(src / full, dicom_dir / full, ignore=shutil.ignore_patterns("*.npy"))
    (dicom_dir / legacy).mkdir()
    for path in sorted((src / legacy).glob("*.dcm")):
        ds = pydicom.dcmread(path)
        for keyword in LEGACY_DROPS:
            delattr(ds, keyword)
        ds.save_as(dicom_dir / legacy / path.name)
    out = dicom_dir.parent / "out"
    # scoring legacy sources at all is not what is tested here: where predict checks a domain,
    # let it score them
    extra = ({"allow_out_of_domain": True}
             if "allow_out_of_domain" in inspect.signature(predict).parameters else {})
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        predict(unet_export, dicom_dir, out, key_file=key_file, progress=False, **extra)
    sr_files = write_reports(out, dicom_dir)
    return {"dicom": dicom_dir, "out": out, "full": full, "legacy": legacy,
            "stderr": stderr.getvalue(), "sr": sr_files}


def test_predict_seg_and_sr_pass_dciodvfy(mixed_predictions, dciodvfy):
    out = mixed_predictions["out"]
    found = {}
    for path in sorted((out / "seg").glob("*.dcm")) + mixed_predictions["sr"]:
        iod, errors, warnings = dciodvfy(path)
        assert (errors, warnings) == ([], []), path.relative_to(out)
        found[iod] = found.get(iod, 0) + 1
    # one SEG for the complete series, one per image for the legacy one; an SR per study
    assert found == {"Segmentation": 3, "Comprehensive3DSR": 2}


def test_sr_carries_the_disclaimer_in_its_content_tree(mixed_predictions):
    from medzoo.deploy.findings import DISCLAIMER

    threshold = json.loads((mixed_predictions["out"] / "studies.json").read_text())["threshold"]
    for path in mixed_predictions["sr"]:
        sr = hd.sr.srread(path)
        assert "ImageComments" not in sr  # not an attribute of the SR IOD
        comments = [item.TextValue for item in sr.ContentSequence
                    if item.ValueType == "TEXT" and item.RelationshipType == "CONTAINS"
                    and item.ConceptNameCodeSequence[0].CodeValue == "121106"]
        assert comments == [f"p >= {threshold:g}: {DISCLAIMER}"]


def test_legacy_series_gets_a_seg_per_image_that_reads_back(mixed_predictions, key_file):
    out, dicom_dir = mixed_predictions["out"], mixed_predictions["dicom"]
    assert ("series 2: the source images lack FrameOfReferenceUID, ImageOrientationPatient, "
            "ImagePositionPatient; one DICOM SEG per image") in mixed_predictions["stderr"]
    rows = fsio.read_csv(out / "predictions.csv")
    document = json.loads((out / "studies.json").read_text())
    series = {s["series_pseudonym"]: s for study in document["studies"] for s in study["series"]}
    for folder, n_files in ((mixed_predictions["full"], 1), (mixed_predictions["legacy"], 2)):
        sources = sorted((dicom_dir / folder).glob("*.dcm"))
        name = _pseudonym(key_file, sources[0])
        entry = series[name]
        seg_files = [entry["seg"]] if isinstance(entry["seg"], str) else entry["seg"]
        assert len(seg_files) == n_files
        expected = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in sources}
        pixels, referenced = [], set()
        for rel in seg_files:
            seg = hd.seg.segread(out / rel)
            uids = {uid for _, _, uid in seg.get_source_image_uids()}
            referenced |= uids
            masks = seg.get_pixels_by_source_instance(source_sop_instance_uids=sorted(uids))
            pixels.extend(int(m.sum()) for m in masks)
            ds = pydicom.dcmread(out / rel)
            assert ds.Modality == "SEG" and ds.SegmentSequence[0].SegmentLabel == "Lesion"
            classes = {e.value for e in ds.iterall() if e.keyword == "ReferencedSOPClassUID"}
            assert classes == {CT_IMAGE}  # the sources as what they are
            assert ("FrameOfReferenceUID" in ds) == (n_files == 1)
        assert referenced == expected
        assert sorted(pixels) == sorted(int(r["lesion_pixels"]) for r in rows
                                        if r["series_pseudonym"] == name)
    legacy = [pydicom.dcmread(out / rel) for rel in series[_pseudonym(
        key_file, next((dicom_dir / mixed_predictions["legacy"]).glob("*.dcm")))]["seg"]]
    assert len({ds.SeriesInstanceUID for ds in legacy}) == 1  # one SEG series
    assert sorted(int(ds.InstanceNumber) for ds in legacy) == [1, 2]


def _secondary_capture(path, *, spacing: bool):
    """A phantom slice's header as a secondary-capture export writes it: no frame of
    reference, orientation or position; pixel spacing only where ``spacing``."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    for keyword in (*LEGACY_DROPS, "SliceThickness", "KVP", "ImageType", "PatientPosition"):
        delattr(ds, keyword)
    if not spacing:
        del ds.PixelSpacing
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    ds.ConversionType = "WSD"
    return ds


@pytest.mark.parametrize("spacing", [True, False])
def test_secondary_capture_sources_get_valid_segs(phantom_dicom, dciodvfy, tmp_path, spacing):
    src, synth = phantom_dicom
    paths = sorted((src / synth["patient_folders"][0]).glob("*.dcm"))
    headers = [_secondary_capture(p, spacing=spacing) for p in paths]
    masks = np.zeros((len(headers), headers[0].Rows, headers[0].Columns), bool)
    masks[0, 4:9, 6:10] = True  # 20 pixels on the first image, none on the second
    segs, missing = dicom_seg.build_segmentations(headers, masks, model_name="unet",
                                                  model_version=1)
    assert "FrameOfReferenceUID" in missing and ("PixelSpacing" in missing) == (not spacing)
    assert len(segs) == len(headers)
    for n, (seg, header) in enumerate(zip(segs, headers)):
        seg.save_as(tmp_path / f"seg-{n}.dcm", enforce_file_format=True)
        assert dciodvfy(tmp_path / f"seg-{n}.dcm") == ("Segmentation", [], [])
        back = hd.seg.segread(tmp_path / f"seg-{n}.dcm")
        (uid,) = [u for _, _, u in back.get_source_image_uids()]
        assert uid == header.SOPInstanceUID
        pixels = back.get_pixels_by_source_instance(source_sop_instance_uids=[uid])
        assert int(pixels.sum()) == (20 if n == 0 else 0)


def test_sources_without_uids_or_multi_frame_geometry_say_what_is_missing(phantom_dicom):
    src, synth = phantom_dicom
    path = next((src / synth["patient_folders"][0]).glob("*.dcm"))
    header = pydicom.dcmread(path, stop_before_pixels=True)
    no_uid = copy.deepcopy(header)
    del no_uid.SOPInstanceUID
    masks = np.zeros((1, header.Rows, header.Columns), bool)
    with pytest.raises(dicom_seg.SegmentationNotWritable,
                       match=r"^the source images lack SOPInstanceUID \(a SEG references"):
        dicom_seg.build_segmentations([no_uid], masks, model_name="unet", model_version=1)
    multi = copy.deepcopy(header)
    del multi.FrameOfReferenceUID
    multi.NumberOfFrames = 3
    with pytest.raises(dicom_seg.SegmentationNotWritable,
                       match=r"multi-frame source image lacks FrameOfReferenceUID, "
                             r"SharedFunctionalGroupsSequence \(required to place its 3 frames"):
        dicom_seg.build_segmentations([multi], np.zeros((3, header.Rows, header.Columns), bool),
                                      model_name="unet", model_version=1)
