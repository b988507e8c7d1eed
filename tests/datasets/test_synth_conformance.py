"""``medzoo data synth`` writes images that dicom3tools' ``dciodvfy`` finds no error in."""

import pydicom
import pytest

from medzoo.datasets.headers import FRAME_OF_REFERENCE_MODALITIES, modality_attributes
from medzoo.datasets.synth import MODALITIES, write_synthetic

IOD = {"ct": "CTImage", "mr": "MRImage", "cr": "CRImage", "us": "USImage"}


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("compress", [None, "j2k"])
def test_every_modality_passes_dciodvfy(dciodvfy, tmp_path, modality, compress):
    write_synthetic(tmp_path, patients=2, modality=modality, size=32, slices=1, seed=4,
                    compress=compress)
    for path in sorted(tmp_path.glob("*/IM0001.dcm")):  # a normal and a lesion patient
        iod, errors, _ = dciodvfy(path)
        assert (iod, errors) == (IOD[modality], [])


def test_paired_ct_and_mr_pass_dciodvfy(dciodvfy, tmp_path):
    write_synthetic(tmp_path, patients=2, size=32, slices=1, seed=4, paired=True)
    checked = {}
    for path in sorted(tmp_path.glob("*/*/IM0001.dcm")):
        iod, errors, _ = dciodvfy(path)
        assert errors == [], path.relative_to(tmp_path)
        checked[iod] = checked.get(iod, 0) + 1
    assert checked == {"CTImage": 2, "MRImage": 2}


def test_dciodvfy_catches_a_missing_attribute(dciodvfy, tmp_path):
    """The check above can fail: without ImageType a synth CT is an error."""
    write_synthetic(tmp_path, patients=2, modality="ct", size=32, slices=1, seed=4)
    path = next(tmp_path.glob("*/IM0001.dcm"))
    ds = pydicom.dcmread(path)
    del ds.ImageType
    ds.save_as(tmp_path / "broken.dcm")
    iod, errors, _ = dciodvfy(tmp_path / "broken.dcm")
    assert iod == "CTImage" and any("<ImageType>" in line for line in errors)


@pytest.mark.parametrize("modality", MODALITIES)
def test_header_attributes_are_written_and_planted_phi_kept(tmp_path, modality):
    write_synthetic(tmp_path, patients=2, modality=modality, size=32, slices=1, seed=4)
    ds = pydicom.dcmread(next(tmp_path.glob("*/IM0001.dcm")))
    for keyword, value in modality_attributes(modality).items():
        got = ds[keyword].value
        assert (list(got) if isinstance(value, list) else got) == value, keyword
    assert ("FrameOfReferenceUID" in ds) == (modality in FRAME_OF_REFERENCE_MODALITIES)
    assert str(ds.PatientName).startswith(("DOE", "ROE")) and ds.InstitutionName
    assert ds[0x0009, 0x1001].value == str(ds.PatientName)  # the planted private tag


def test_modality_attributes_are_fresh_copies_and_unknown_modalities_refused():
    a = modality_attributes("CT")
    a["ImageType"].append("EXTRA")
    assert modality_attributes("ct")["ImageType"] == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert modality_attributes("mr")["EchoTime"] == 15
    with pytest.raises(ValueError, match="Received: modality='pet'"):
        modality_attributes("pet")
