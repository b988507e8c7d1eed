"""The domain of validity for volume models (docs/domain.md): a CT-trained 3D segmenter given an
MR series and an RT Dose lists each as not analysed with its reason, and segments them only with
--allow-out-of-domain; an in-domain CT series is segmented exactly as without the check."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import onnx
import pydicom
import pytest
from pydicom.uid import MRImageStorage, generate_uid

from medzoo.datasets.domain import DomainAccumulator
from medzoo.datasets.volumes import fingerprint_series
from medzoo.deploy import domain as checks
from medzoo.deploy.predict import predict


def _rtdose() -> Path:
    (path,) = [Path(p) for p in pydicom.data.get_testdata_files() if p.endswith("rtdose.dcm")]
    return path


def _csv(path):
    return list(csv.DictReader(open(path)))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """``ct/``: one phantom CT series (8 slices of 32 px, 1.2 mm); ``mr/``: the same slices made
    an MR series of another study (Modality, SOP class, new UIDs); ``rt/``: an RT Dose."""
    from medzoo.datasets.synth import write_synthetic

    root = tmp_path_factory.mktemp("vol_domain")
    write_synthetic(root / "src", patients=2, size=32, slices=8, seed=5)
    series = sorted(p for p in (root / "src").iterdir() if p.is_dir())[0]
    study, series_uid = generate_uid(), generate_uid()
    for path in sorted(series.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.PixelSpacing = [1.2, 1.2]
        (root / "in" / "ct").mkdir(parents=True, exist_ok=True)
        ds.save_as(root / "in" / "ct" / path.name)
        ds.Modality, ds.SOPClassUID = "MR", MRImageStorage
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        (root / "in" / "mr").mkdir(exist_ok=True)
        ds.save_as(root / "in" / "mr" / path.name)
    (root / "in" / "rt").mkdir()
    shutil.copy(_rtdose(), root / "in" / "rt" / "rtdose.dcm")
    return root / "in"


@pytest.fixture(scope="module")
def ct_export(volume_export, inputs, tmp_path_factory):
    """The session's volume export with the domain native ingest records for the CT series
    (volumes.fingerprint_series + DomainAccumulator, the ingest code path) in its card, as export
    copies a dataset's domain (test_volume_export_carries_the_domain checks that copy)."""
    row = SimpleNamespace(path=inputs / "ct", mask=None, label="normal", row=1)
    accumulator = DomainAccumulator()
    accumulator.add(fingerprint_series(row, None, b"")["domain"])
    out = tmp_path_factory.mktemp("ct_export") / "unet3d" / "1"
    shutil.copytree(volume_export, out)
    card = json.loads((out / "model_card.json").read_text())
    card["domain"] = accumulator.summary()
    (out / "model_card.json").write_text(json.dumps(card))
    return out


@pytest.fixture(scope="module")
def refused(ct_export, inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("refused") / "out"
    proc = subprocess.run([sys.executable, "-m", "medzoo", "predict", str(ct_export),
                           str(inputs), "--out", str(out)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    return out, proc


def test_volume_export_carries_the_domain(volume_export, tmp_path):
    from medzoo.export.volume_export import volume_card_sections, volume_metadata

    card = json.loads((volume_export / "model_card.json").read_text())
    metadata = {p.key: p.value for p in onnx.load(volume_export / "model.onnx").metadata_props}
    # the session's dataset is written straight to records (no DICOM): no domain recorded
    assert card["domain"] == "unknown" and json.loads(metadata["medzoo.domain"]) == "unknown"
    assert any("domain was not recorded" in line for line in card["limitations"])
    domain = {"modalities": {"CT": 8}, "slice_spacing_mm": [5.0, 5.0], "rows": [32, 32],
              "columns": [32, 32], "photometric_interpretations": {"MONOCHROME2": 8}}
    (tmp_path / "dataset.json").write_text(json.dumps({"domain": domain}))
    config = {"model": "unet", "plan": {"patch_size": [8, 16, 16], "target_spacing": [2, 1, 1]},
              "label_classes": ["background", "organ"], "input_shape": [8, 16, 16, 1],
              "test_fold": 0, "folds": 3, "split_seed": 0, "val_fold": 1,
              "data": {"dir": str(tmp_path), "fingerprint": "x", "counts": {"a": 8}}}
    assert volume_metadata(config, "m", 1)["domain"] == domain
    limits = volume_card_sections(config, domain)["limitations"]
    assert "slice spacing 5 mm; 32 × 32 px" in limits[-1]


def test_slice_spacing_rule():
    domain = {"modalities": {"CT": 8}, "slice_spacing_mm": [2.0, 5.0]}
    assert checks.reasons(domain, {"slice_spacing": [10.0, 10.0]}) == []
    (reason,) = checks.reasons(domain, {"slice_spacing": [10.5, 10.5]})
    assert reason == "slice spacing 10.5 mm outside 1–10 mm (training 2–5 mm, ÷/× 2)"


def test_mr_and_rt_dose_are_listed_not_segmented(refused, inputs):
    out, proc = refused
    assert proc.returncode == 0, proc.stderr
    rows = {r["modality"]: r for r in _csv(out / "not_analysed.csv")}
    assert set(rows) == {"MR", "RTDOSE"}
    assert rows["MR"]["reason"] == "modality MR (trained on CT)"
    assert (rows["MR"]["files"], rows["MR"]["images"]) == ("8", "8")
    assert rows["RTDOSE"]["reason"].startswith("not a diagnostic image (RT Dose); modality "
                                               "RTDOSE (trained on CT)")
    assert "medzoo predict: not analysed: mr/" in proc.stderr
    assert "not analysed: 9 files, 2 whole studies" in proc.stdout
    assert {r["series"] for r in _csv(out / "predictions.csv")} == {"1"}  # the CT series only
    assert [p.name for p in (out / "seg").iterdir()] == ["series-001.dcm"]
    assert _csv(out / "rejected.csv") == []
    document = json.loads((out / "studies.json").read_text())
    assert document["domain"]["checked"] is True
    by_analysed = {s["analysed"]: s for s in document["studies"]}
    assert by_analysed[True]["out_of_domain"] is False and len(document["studies"]) == 3
    skipped = [s for s in document["studies"] if not s["analysed"]]
    reports = [(out / s["report"]).read_text() for s in skipped]
    assert any("Not analysed" in r and "modality MR (trained on CT)" in r for r in reports)


def test_allow_out_of_domain_segments_mr_marked_and_ct_as_before(refused, ct_export,
                                                                 volume_export, inputs,
                                                                 tmp_path):
    out = tmp_path / "allowed"
    summary = predict(ct_export, inputs, out, progress=False, allow_out_of_domain=True)
    assert summary["not_analysed"] == 0 and _csv(out / "not_analysed.csv") == []
    # an RT Dose is one multi-frame object: the volume pipeline cannot read it even when allowed
    (rt,) = _csv(out / "rejected.csv")
    assert rt["path"] == "rt/rtdose.dcm" and "multi-frame images" in rt["reason"]
    rows = _csv(out / "predictions.csv")
    marked = {r["series"] for r in rows if r["out_of_domain"]}
    assert len(marked) == 1 and len({r["series"] for r in rows}) == 2
    assert {r["out_of_domain"] for r in rows if r["series"] in marked} == {
        "modality MR (trained on CT)"}
    document = json.loads((out / "studies.json").read_text())
    mr = next(s for s in document["studies"] if s["out_of_domain"])
    assert mr["series"][0]["out_of_domain"] == ["modality MR (trained on CT)"]
    report = (out / f"findings/study-{mr['study']:03d}.md").read_text()
    assert "OUT OF DOMAIN (modality MR (trained on CT); segmented only because of " \
           "--allow-out-of-domain)" in report

    # the in-domain CT series: the same segmentation with the check, without it, and allowed
    baseline = tmp_path / "baseline"
    predict(volume_export, inputs / "ct", baseline, progress=False)
    ct = [{k: v for k, v in r.items() if k != "seconds"} for r in rows if not r["out_of_domain"]]
    for other in (baseline, refused[0]):
        again = [{k: v for k, v in r.items() if k != "seconds"}
                 for r in _csv(other / "predictions.csv")]
        assert again == ct
    segs = [pydicom.dcmread(p / "seg" / "series-001.dcm").pixel_array
            for p in (baseline, refused[0])]
    assert (segs[0] == segs[1]).all()
