"""pydicom's own test files: every one ingested or rejected with a reason."""

import csv
import os

import numpy as np
import pydicom
from pydicom.data import get_testdata_files

import pytest
from pydicom.pixels import apply_modality_lut

from medzoo.datasets.dicom import (choose_window, invert, read_dicom, read_modality_values,
                                   resize_bilinear, window_linear, window_min_max)
from medzoo.datasets.ingest import ingest
from medzoo.datasets.manifest import expand_path, read_index
from medzoo.datasets.records import read_records


def test_pydicom_corpus_is_fully_accounted_for(tmp_path, key_file):
    root = tmp_path / "corpus"
    root.mkdir()
    rows = []
    for i, f in enumerate(get_testdata_files()):  # no pattern: never the network
        name = f"{i:03d}_{os.path.basename(f)}"
        os.symlink(f, root / name)
        rows.append((name, "b" if i % 2 else "a"))
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows(rows)
    n_files = sum(len(expand_path(root / name)) for name, _ in rows)
    result = ingest(root, root / "labels.csv", tmp_path / "DS", size=32, folds=2,
                    key_file=key_file, progress=False)
    assert result["inputs"] == n_files
    assert result["loaded"] + result["rejected"] == result["inputs"]
    assert result["loaded"] > 30
    with open(tmp_path / "DS" / "rejected.csv") as fh:
        rejected = list(csv.DictReader(fh))
    assert len(rejected) == result["rejected"] and all(r["reason"] for r in rejected)
    index = read_index(tmp_path / "DS")
    loaded_rows = {r["row"] for r in index}
    assert len(index) == result["records"] >= result["loaded"]
    reasons = {r["reason"].split(" 1.2")[0] for r in rejected}
    assert "not DICOM" in reasons and "no pixel data" in reasons
    # a DICOM SEG holds a mask in its pixel data: not an image of the patient
    segs = [r for r in rejected if r["path"].endswith(("_liver_1frame.dcm",
                                                       "_liver_expb_1frame.dcm"))]
    assert len(segs) == 2
    assert {r["reason"] for r in segs} == {"not an image (segmentation, registration or fiducials)"}

    # before windowing/resizing the values are pydicom's modality LUT output
    checked = 0
    for row, (name, _) in enumerate(rows, start=1):
        path = root / name
        if path.is_dir() or row not in loaded_rows:
            continue
        ds = pydicom.dcmread(path, force=True)
        if ds.get("SamplesPerPixel", 1) != 1 or int(ds.get("NumberOfFrames", 1) or 1) != 1 \
                or ds.get("PhotometricInterpretation") == "PALETTE COLOR":
            continue
        ref = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
        ours = read_modality_values(path)[0]
        np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-4, err_msg=name)
        c, w = choose_window(ds, ours)
        y = window_linear(ref, c, w)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            y = invert(y)
        np.testing.assert_allclose(read_dicom(path).frames[0], y, atol=1e-6, err_msg=name)
        checked += 1
    assert checked >= 10


def _corpus(name):
    return next(f for f in get_testdata_files() if os.path.basename(f) == name)


def test_multi_frame_objects_become_one_record_per_frame(tmp_path, key_file):
    root = tmp_path / "mf"
    root.mkdir()
    for name in ("rtdose.dcm", "examples_ybr_color.dcm", "CT_small.dcm"):
        os.symlink(_corpus(name), root / name)
    (root / "labels.csv").write_text("path,label\nrtdose.dcm,a\nexamples_ybr_color.dcm,b\n"
                                     "CT_small.dcm,a\n")
    result = ingest(root, root / "labels.csv", tmp_path / "DS", size=16, folds=2,
                    key_file=key_file, progress=False, color="rgb")
    assert result["inputs"] == 3 == result["loaded"] and result["records"] == 15 + 30 + 1
    index = read_index(tmp_path / "DS")
    assert [r["frame"] for r in index if r["row"] == 1] == list(range(1, 16))
    assert [r["frame"] for r in index if r["row"] == 2] == list(range(1, 31))
    recs = list(read_records(tmp_path / "DS"))
    assert all(r["image"].shape == (16, 16, 3) for r in recs)
    # RT dose (15 frames of 32-bit dose): each frame = pydicom's frame through the chain
    ds = pydicom.dcmread(root / "rtdose.dcm")
    dose = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    c, w = window_min_max(dose)
    for k in (0, 7, 14):
        expected = resize_bilinear(window_linear(dose[k], c, w), (16, 16))
        for ch in range(3):  # monochrome repeated into three channels
            np.testing.assert_allclose(recs[k]["image"][..., ch], expected, atol=1e-6)
    # YBR_FULL_422 JPEG, 30 frames: pydicom's RGB, scaled to [0, 1]
    rgb = pydicom.dcmread(root / "examples_ybr_color.dcm").pixel_array.astype(np.float32)
    for k in (0, 29):
        np.testing.assert_allclose(recs[15 + k]["image"],
                                   resize_bilinear(rgb[k] / 255.0, (16, 16)), atol=1e-5)


@pytest.mark.parametrize("name", ["examples_rgb_color.dcm", "SC_ybr_full_422_uncompressed.dcm",
                                  "examples_palette.dcm"])
def test_colour_to_rgb_or_grey(name):
    from pydicom.pixels import apply_color_lut

    path = _corpus(name)
    ds = pydicom.dcmread(path)
    rgb = ds.pixel_array  # pydicom converts YBR to RGB
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        rgb = apply_color_lut(rgb, ds)
    full = 2.0 ** (8 * rgb.dtype.itemsize)
    expected = rgb.astype(np.float32) / np.float32(full - 1)
    colour = read_dicom(path, color="rgb").frames[0]
    np.testing.assert_allclose(colour, expected, atol=1e-6)
    grey = read_dicom(path).frames[0]
    luma = 0.299 * expected[..., 0] + 0.587 * expected[..., 1] + 0.114 * expected[..., 2]
    np.testing.assert_allclose(grey, luma, atol=1e-5)


def _ct_with(tmp_path, **changes):
    ds = pydicom.dcmread(_corpus("CT_small.dcm"))
    for key, value in changes.items():
        setattr(ds, key, value)
    path = tmp_path / "lut.dcm"
    ds.save_as(path)
    return path


def test_voi_lut_and_modality_lut_sequences_match_pydicom(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.pixels import apply_voi_lut

    voi = Dataset()
    voi.LUTDescriptor = [256, 0, 12]  # 256 entries from stored value 0, 12-bit output
    voi.add_new(0x00283006, "US", [int(4095 * (i / 255) ** 0.5) for i in range(256)])
    mod = Dataset()
    mod.LUTDescriptor = [4096, 0, 16]
    mod.add_new(0x00283006, "US", [min(255, i // 8) for i in range(4096)])
    mod.ModalityLUTType = "HU"
    path = _ct_with(tmp_path, VOILUTSequence=[voi], ModalityLUTSequence=[mod])
    ds = pydicom.dcmread(path)
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.save_as(path)
    ds = pydicom.dcmread(path)
    expected = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(np.float32) / 4095
    assert 0 < expected.mean() < 1 and len(np.unique(expected)) > 20
    img = read_dicom(path)
    assert img.voi == "lut"
    np.testing.assert_allclose(img.frames[0], expected, atol=1e-7)
    np.testing.assert_array_equal(read_dicom(path, size=(32, 32)).frames[0, ..., 0],
                                  resize_bilinear(expected, (32, 32)))
    # a user window replaces the file's VOI LUT (a linear window on the Modality LUT output)
    lut_values = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    np.testing.assert_allclose(read_dicom(path, (100, 200)).frames[0],
                               window_linear(lut_values, 100, 200), atol=1e-6)


@pytest.mark.parametrize("preset,cw", [("lung", (-600, 1500)), ("mediastinum", (50, 350)),
                                       ("brain", (40, 80)), ("bone", (400, 1800)),
                                       ("abdomen", (50, 400))])
def test_ct_window_presets(preset, cw):
    from medzoo.datasets.ingest import parse_window

    assert parse_window(preset) == cw and parse_window(preset.upper()) == cw
    path = _corpus("CT_small.dcm")
    hu = read_modality_values(path)[0]
    np.testing.assert_allclose(read_dicom(path, parse_window(preset)).frames[0],
                               window_linear(hu, *cw), atol=1e-6)
