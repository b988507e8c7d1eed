import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from medzoo.datasets.synth import write_synthetic


def _slices(root):
    import csv

    with open(root / "labels.csv") as fh:
        return list(csv.DictReader(fh))


def test_ct_files_are_valid_dicom_with_hounsfield_units(synth_ct):
    root, summary = synth_ct
    rows = _slices(root)
    assert summary["files"] == len(rows) == 8 * 3
    assert summary["per_class"] == {"normal": 12, "lesion": 12}
    for row in rows:
        ds = pydicom.dcmread(root / row["path"])  # no force: preamble + file meta present
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        assert (ds.Modality, ds.Rows, ds.Columns, ds.BitsAllocated) == ("CT", 48, 48, 16)
        assert ds.PixelRepresentation == 1 and float(ds.RescaleIntercept) == -1024
        hu = apply_modality_lut(ds.pixel_array, ds)
        mask = np.load(root / row["mask"])
        assert mask.shape == (48, 48) and mask.dtype == np.uint8
        # left lung centre (x = -0.38 of the half width): about −800 HU
        lung = hu[20:28, 7:12]
        lung = lung[mask[20:28, 7:12] == 0]
        assert abs(np.median(lung) + 800) < 30
        assert hu.min() > -1200 and hu.max() < 1000
        if row["label"] == "lesion":
            assert mask.sum() >= 12  # visible in every slice
            assert abs(float(hu[mask == 1].mean()) - 40) < 15
        else:
            assert mask.sum() == 0


def test_planted_phi_is_in_the_files(synth_ct):
    root, summary = synth_ct
    ds = pydicom.dcmread(next(root.glob("*/IM0001.dcm")))
    assert str(ds.PatientName) in summary["phi"]
    assert ds.PatientID in summary["phi"] and ds.AccessionNumber in summary["phi"]
    assert ds.SOPInstanceUID in summary["phi"]
    block = ds.private_block(0x0009, "MEDZOO SYNTH")
    assert block[0x01].value == str(ds.PatientName)
    assert all(folder in summary["phi"] for folder in summary["patient_folders"])


def test_same_seed_gives_identical_bytes(tmp_path):
    a = write_synthetic(tmp_path / "a", patients=2, size=32, slices=2, seed=7)
    b = write_synthetic(tmp_path / "b", patients=2, size=32, slices=2, seed=7)
    c = write_synthetic(tmp_path / "c", patients=2, size=32, slices=2, seed=8)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
                         for f in files)
    assert a["phi"] == b["phi"] and a["phi"] != c["phi"]


@pytest.mark.parametrize("modality,photometric", [("mr", "MONOCHROME2"), ("cr", "MONOCHROME1"),
                                                  ("us", "RGB")])
def test_other_modalities(tmp_path, modality, photometric):
    s = write_synthetic(tmp_path, patients=2, modality=modality, size=32, slices=1)
    ds = pydicom.dcmread(next(tmp_path.glob("*/IM0001.dcm")))
    assert ds.Modality == modality.upper() and ds.PhotometricInterpretation == photometric
    arr = ds.pixel_array
    assert arr.shape == ((32, 32, 3) if modality == "us" else (32, 32))
    assert s["modalities"] == {modality.upper(): 2}


def test_mixed_modality_does_not_predict_the_label(tmp_path):
    s = write_synthetic(tmp_path, patients=8, modality="mixed", size=32, slices=1)
    assert s["modalities"] == {"CT": 2, "MR": 2, "CR": 2, "US": 2}
    assert s["per_class"] == {"normal": 4, "lesion": 4}


def test_rle_compressed_pixels_equal_uncompressed(tmp_path):
    write_synthetic(tmp_path / "raw", patients=2, size=32, slices=1, seed=1)
    write_synthetic(tmp_path / "rle", patients=2, size=32, slices=1, seed=1, compress="rle")
    raw = sorted((tmp_path / "raw").glob("*/*.dcm"))
    for f in raw:
        a = pydicom.dcmread(f)
        b = pydicom.dcmread(tmp_path / "rle" / f.relative_to(tmp_path / "raw"))
        assert b.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"
        np.testing.assert_array_equal(a.pixel_array, b.pixel_array)


def test_bad_arguments_say_what_was_received(tmp_path):
    with pytest.raises(ValueError, match="Received: modality='pet'"):
        write_synthetic(tmp_path, modality="pet")
