"""`medzoo predict --send` against a real Orthanc: a DICOM SEG and a DICOM SR per study, filed
under the source study (STOW-RS and C-STORE), and a refused password before the model runs."""

import collections
import json

import pydicom
import pytest

from medzoo import cli
from medzoo.deploy.send import send_results
from medzoo.pacs import client as pacs
from medzoo.pacs.pull import pull

from .conftest import CALLING_AET, USER, running_orthanc

SEG, SR = "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.88.34"


@pytest.fixture(scope="module")
def send_orthanc(orthanc_binary, pacs_studies, tmp_path_factory):
    """An Orthanc of its own: sending adds objects, which would change other tests' counts."""
    yield from running_orthanc(tmp_path_factory.mktemp("orthanc-send"), orthanc_binary,
                               pacs_studies[2])


def _probability(item) -> float | None:
    """The NUM value named Probability anywhere under an SR content item."""
    for child in item.get("ContentSequence", []):
        name = child.ConceptNameCodeSequence[0].CodeMeaning
        if child.ValueType == "NUM" and name == "Probability":
            return float(child.MeasuredValueSequence[0].NumericValue)
        found = _probability(child)
        if found is not None:
            return found
    return None


def test_predict_send_files_seg_and_sr_under_the_source_study(
        send_orthanc, pacs_studies, unet_export, pacs_env, tmp_path, capsys):
    _, _, originals = pacs_studies
    source = collections.defaultdict(set)  # study UID → SOP UIDs of its images
    for path in originals:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        source[str(ds.StudyInstanceUID)].add(str(ds.SOPInstanceUID))
    pulled, out = tmp_path / "pulled", tmp_path / "predicted"
    pull(pacs.connect(send_orthanc.dicomweb, credentials=pacs.load_credentials()), pulled,
         progress=False)

    assert cli.main(["predict", str(unet_export), str(pulled), "--out", str(out),
                     "--send", send_orthanc.dicomweb]) == 0
    printed = capsys.readouterr().out
    assert "sent 3 DICOM SEG and 3 DICOM SR objects to DICOMweb server http://127.0.0.1" in printed

    studies = {s["study"]: s for s in json.loads((out / "studies.json").read_text())["studies"]}
    probabilities = sorted(round(s["max_score"], 6) for s in studies.values())
    found = []
    for study_uid, images in source.items():
        listed = send_orthanc.study_files(study_uid)
        by_class = collections.Counter(str(d.SOPClassUID) for d in listed)
        assert by_class == {str(pydicom.dcmread(str(originals[0])).SOPClassUID): 2, SEG: 1, SR: 1}
        (seg,) = [d for d in listed if d.SOPClassUID == SEG]
        (sr,) = [d for d in listed if d.SOPClassUID == SR]
        seg_refs = {r.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence
                    for r in s.ReferencedInstanceSequence}
        sr_refs = {r.ReferencedSOPInstanceUID for st in sr.CurrentRequestedProcedureEvidenceSequence
                   for se in st.ReferencedSeriesSequence for r in se.ReferencedSOPSequence}
        assert seg_refs == sr_refs == images  # both point at exactly the study's images
        assert seg.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
        found.append(_probability(sr))
    assert sorted(found) == pytest.approx(probabilities, abs=1e-6)  # the scores predict wrote

    # the same objects again, over DIMSE (C-STORE) this time, after deleting them in Orthanc
    stored = {str(d.SOPInstanceUID) for uid in source for d in send_orthanc.study_files(uid)
              if d.SOPClassUID in (SEG, SR)}
    for sop_uid in stored:
        send_orthanc.delete(sop_uid)
    sent = send_results(pacs.connect(f"dimse://{send_orthanc.dimse}", calling_aet=CALLING_AET),
                        out, pulled)
    assert (sent["seg"], sent["sr"]) == (3, 3)
    again = {str(d.SOPInstanceUID) for uid in source for d in send_orthanc.study_files(uid)
             if d.SOPClassUID in (SEG, SR)}
    assert again == stored  # the same SEG and SR (same UIDs), one of each per study

    # pulling the studies again brings the images only: a SEG read as an image would be scored
    # (predict) or trained on (ingest)
    for target in (send_orthanc.dicomweb, f"dimse://{send_orthanc.dimse}"):
        client = pacs.connect(target, credentials=pacs.load_credentials())
        repulled = pull(client, tmp_path / f"again-{client.kind}", progress=False)
        assert (repulled["found"], repulled["fetched"], repulled["not_images"]) == (6, 6, 6)
        got = {str(pydicom.dcmread(str(p), stop_before_pixels=True).SOPInstanceUID)
               for p in (tmp_path / f"again-{client.kind}").rglob("IM*.dcm")}
        assert got == set().union(*source.values())


def test_predict_send_with_a_refused_password_stops_before_predicting(
        send_orthanc, pacs_studies, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEDZOO_PACS_USER", USER)
    monkeypatch.setenv("MEDZOO_PACS_PASSWORD", "not-the-password")
    monkeypatch.delenv("MEDZOO_PACS_TOKEN", raising=False)
    monkeypatch.delenv("MEDZOO_PACS_AUTH_FILE", raising=False)
    dicom_dir, _, _ = pacs_studies
    out = tmp_path / "predicted"
    # no export is needed: the server is asked first, so the model is never loaded
    assert cli.main(["predict", str(tmp_path / "no-export"), str(dicom_dir), "--out", str(out),
                     "--send", send_orthanc.dicomweb]) == 2
    printed = capsys.readouterr()
    lines = [line for line in printed.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("medzoo predict: error: DICOMweb server")
    assert "credentials refused (HTTP 401)" in lines[0] and "not-the-password" not in printed.err
    assert not out.exists()


def test_predict_send_of_a_classifier_files_one_sr_per_study_over_dimse(
        send_orthanc, pacs_studies, cnn_export, pacs_env, tmp_path, capsys):
    """A classifier has no SEG to send: one SR per study (C-STORE from the command line), whose
    finding is the positive class with the probability predict wrote."""
    _, _, originals = pacs_studies
    source = collections.defaultdict(set)
    for path in originals:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        source[str(ds.StudyInstanceUID)].add(str(ds.SOPInstanceUID))
    before = {uid: {str(d.SOPInstanceUID) for d in send_orthanc.study_files(uid)}
              for uid in source}
    pulled, out = tmp_path / "pulled", tmp_path / "predicted"
    pull(pacs.connect(send_orthanc.dicomweb, credentials=pacs.load_credentials()), pulled,
         progress=False)
    assert cli.main(["predict", str(cnn_export), str(pulled), "--out", str(out),
                     "--send", f"dimse://{send_orthanc.dimse}", "--calling-aet", CALLING_AET]) == 0
    assert "sent 0 DICOM SEG and 3 DICOM SR objects to DICOM node ORTHANC@127.0.0.1" in \
        capsys.readouterr().out
    document = json.loads((out / "studies.json").read_text())
    positive_class = document["model"]["classes"][1]
    found = []
    for study_uid, images in source.items():
        new = [d for d in send_orthanc.study_files(study_uid)
               if str(d.SOPInstanceUID) not in before[study_uid]]
        assert [str(d.SOPClassUID) for d in new] == [SR]  # one SR, no SEG
        (sr,) = new
        refs = {r.ReferencedSOPInstanceUID for st in sr.CurrentRequestedProcedureEvidenceSequence
                for se in st.ReferencedSeriesSequence for r in se.ReferencedSOPSequence}
        assert refs == images
        assert positive_class.lower() in str(sr.ContentSequence).lower()
        found.append(_probability(sr))
    want = sorted(round(s["max_score"], 6) for s in document["studies"])
    assert sorted(found) == pytest.approx(want, abs=1e-6)
