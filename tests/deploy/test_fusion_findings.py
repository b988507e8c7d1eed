"""``medzoo predict`` with fusion (CT + MR) and multi-label exports: real synth DICOM, real
training, export, onnxruntime and TensorFlow; scores checked against ``medzoo evaluate``."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medzoo import fsio
from medzoo.datasets import manifest
from medzoo.datasets.ingest import ingest
from medzoo.datasets.synth import write_synthetic
from medzoo.deploy.exported import load_export
from medzoo.deploy.predict import predict
from medzoo.evaluation.evaluate import evaluate
from medzoo.export.exporter import export_run
from medzoo.training.fit import train

SIZE = 32
pytestmark = pytest.mark.slow  # trains and exports two small models (~1 min together)


def _export(root, model, threshold=None, **synth):
    write_synthetic(root / "dicom", patients=12, size=SIZE, slices=2, seed=5, **synth)
    ingest(root / "dicom", root / "dicom" / "labels.csv", root / "ds", size=SIZE, folds=3,
           seed=0, key_file=root / "k.key")
    train(model, root / "ds", root / "run", epochs=1, batch_size=8, seed=0, verbose=0,
          threshold=threshold)
    return export_run(root / "run", root / "models")


def _evaluated(export_dir, ds, out):
    """``evaluate``'s predictions.csv on every record of ``ds``, keyed (series pseudonym,
    slice in series) as predict's rows are with a key file."""
    evaluate(export_dir / "model.onnx", ds, out, split="all", n_boot=0, charts=False)
    index = {r["record_id"]: r for r in manifest.read_index(ds)}
    return {(index[r["record_id"]]["series"], int(index[r["record_id"]]["frame"])): r
            for r in fsio.read_csv(out / "predictions.csv")}


@pytest.fixture(scope="module")
def fusion(tmp_path_factory):
    root = tmp_path_factory.mktemp("fusion")
    return root, _export(root, "fusion_late", paired=True)


@pytest.fixture(scope="module")
def multi_label(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi-label")
    return root, _export(root, "cnn", threshold="youden", multi_label=True)


def test_fusion_export_declares_one_input_per_modality(fusion):
    _, export_dir = fusion
    card = fsio.read_json(export_dir / "model_card.json")
    assert [(d["name"], d["modality"], d["channels"]) for d in card["input"]["inputs"]] == [
        ("ct", "CT", [0]), ("mr", "MR", [1])]
    import onnxruntime as ort

    session = ort.InferenceSession(str(export_dir / "model_raw.onnx"),
                                   providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names[:2] == ["ct_pixels", "ct_rescale_slope"] and "mr_pixels" in names
    assert len(names) == 12
    assert '"modality": "MR"' in session.get_modelmeta().custom_metadata_map["medzoo.inputs"]
    assert len(load_export(export_dir).inputs) == 2
    assert "- `mr`: modality MR, channels [1]" in (export_dir / "model_card.md").read_text()


def test_fusion_predicts_paired_studies_as_evaluate_and_ct_only_as_not_analysed(fusion,
                                                                                tmp_path):
    root, export_dir = fusion
    dicom_dir = tmp_path / "in"
    shutil.copytree(root / "dicom", dicom_dir)
    other = tmp_path / "other"
    write_synthetic(other, patients=2, size=SIZE, slices=2, seed=11, paired=True)
    (dicom_dir / "ct-only").mkdir()
    for path in sorted((other / next(p for p in other.iterdir() if p.is_dir()).name / "CT")
                       .glob("*.dcm")):
        shutil.copy(path, dicom_dir / "ct-only" / path.name)

    summary = predict(export_dir, dicom_dir, tmp_path / "out", key_file=root / "k.key",
                      progress=False)
    expected = _evaluated(export_dir, root / "ds", tmp_path / "eval")
    rows = fsio.read_csv(tmp_path / "out" / "predictions.csv")
    assert summary["images"] == len(rows) == len(expected) == 24  # one row per CT + MR pair
    assert (summary["inputs"], summary["predicted"], summary["rejected"],
            summary["not_analysed"]) == (50, 48, 0, 2)
    for row in rows:
        want = expected[(row["series_pseudonym"], int(row["slice"]))]
        assert float(row["score"]) == pytest.approx(float(want["score"]), abs=1e-5)

    document = fsio.read_json(tmp_path / "out" / "studies.json")
    assert document["counts"]["studies"] == 13 and document["counts"]["not_analysed_studies"] == 1
    ct_only = [s for s in document["studies"] if s.get("analysed") is False]
    assert len(ct_only) == 1 and ct_only[0]["images"] == 0 and not ct_only[0]["positive"]
    row = {"study": ct_only[0]["study"], "series": 1, "files": 2, "images": 2,
           "modality": "CT", "reason": "no MR series to pair with CT series 1"}
    assert ct_only[0]["not_analysed"] == [row]
    assert fsio.read_csv(tmp_path / "out" / "not_analysed.csv") == [
        {k: str(v) for k, v in row.items()}]
    assert fsio.read_csv(tmp_path / "out" / "rejected.csv") == []
    report = (tmp_path / "out" / ct_only[0]["report"]).read_text()
    assert "Not analysed" in report and "no MR series to pair with CT series 1" in report

    pytest.importorskip("highdicom")
    from medzoo.deploy.send import write_reports

    srs = write_reports(tmp_path / "out", dicom_dir)  # one per analysed study, CT + MR as evidence
    assert len(srs) == 12
    evidence = pydicom.dcmread(srs[0]).CurrentRequestedProcedureEvidenceSequence[0]
    assert len(evidence.ReferencedSeriesSequence) == 2


def test_fusion_savedmodel_runtime_gives_the_onnx_scores(fusion, tmp_path):
    root, export_dir = fusion
    dicom_dir = tmp_path / "in"
    for folder in sorted(p for p in (root / "dicom").iterdir() if p.is_dir())[:2]:
        shutil.copytree(folder, dicom_dir / folder.name)
    code = ("import sys; from medzoo.deploy.predict import predict; "
            f"s = predict({str(export_dir)!r}, {str(dicom_dir)!r}, {str(tmp_path / 'onnx')!r}, "
            "progress=False); print(s['images'], 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.split()[-2:] == ["4", "False"]  # the onnx runtime stays TF-free
    predict(export_dir, dicom_dir, tmp_path / "tf", runtime="savedmodel", progress=False)
    a = fsio.read_csv(tmp_path / "onnx" / "predictions.csv")
    b = fsio.read_csv(tmp_path / "tf" / "predictions.csv")
    assert len(a) == len(b) == 4
    assert np.allclose([float(r["score"]) for r in a], [float(r["score"]) for r in b], atol=1e-5)


def test_fusion_mr_slice_moved_off_the_ct_grid_is_not_analysed(fusion, tmp_path):
    root, export_dir = fusion
    folder = sorted(p for p in (root / "dicom").iterdir() if p.is_dir())[0]
    dicom_dir = tmp_path / "in"
    shutil.copytree(folder, dicom_dir / folder.name)
    moved = dicom_dir / folder.name / "MR" / "IM0002.dcm"
    ds = pydicom.dcmread(moved)
    ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], 40.0]  # far from every CT slice
    ds.SliceLocation = 40.0
    ds.save_as(moved)
    summary = predict(export_dir, dicom_dir, tmp_path / "out", progress=False)
    assert (summary["images"], summary["predicted"], summary["not_analysed"]) == (1, 2, 2)
    assert fsio.read_csv(tmp_path / "out" / "not_analysed.csv") == [
        {"study": "1", "series": "1", "files": "1", "images": "1", "modality": "CT",
         "reason": "no MR slice at the position of CT series 1 slice 2"},
        {"study": "1", "series": "2", "files": "1", "images": "1", "modality": "MR",
         "reason": "no CT slice at the position of MR series 2 slice 2"}]
    study = fsio.read_json(tmp_path / "out" / "studies.json")["studies"][0]
    assert study["images"] == 1 and len(study["not_analysed"]) == 2
    report = (tmp_path / "out" / study["report"]).read_text()
    assert "no MR slice at the position of CT series 1 slice 2" in report


def test_multi_label_predictions_hold_one_score_per_finding_equal_to_evaluate(multi_label,
                                                                               tmp_path):
    root, export_dir = multi_label
    card = fsio.read_json(export_dir / "model_card.json")
    chosen = fsio.read_json(root / "run" / "config.json")["threshold"]["per_class"]
    assert chosen  # youden on the validation fold, one cut-off per finding
    thresholds = {f["name"]: f["threshold"] for f in card["findings"]}
    assert thresholds == {name: chosen.get(name, 0.5) for name in ("ground_glass", "nodule")}
    assert {f["threshold_source"] for f in card["findings"] if f["name"] in chosen} == {
        "validation (youden)"}
    summary = predict(export_dir, root / "dicom", tmp_path / "out", key_file=root / "k.key",
                      progress=False)
    expected = _evaluated(export_dir, root / "ds", tmp_path / "eval")
    rows = fsio.read_csv(tmp_path / "out" / "predictions.csv")
    assert summary["images"] == len(rows) == len(expected) == 24
    classes = ["normal", "ground_glass", "nodule"]
    for row in rows:
        want = expected[(row["series_pseudonym"], int(row["slice"]))]
        for k, name in enumerate(classes):
            assert float(row[f"score_{name}"]) == pytest.approx(float(want[f"score_{k}"]),
                                                                abs=1e-5)
        called = row["findings"].split("|") if row["findings"] else []
        assert row["predicted"] == (row["findings"] or "normal")
        for n in ("ground_glass", "nodule"):
            score = float(row[f"score_{n}"])
            # a Youden cut-off is itself a validation image's score: at the cut-off, the CSV's
            # rounded score cannot tell which side the exact one fell on
            if abs(score - thresholds[n]) > 1e-5:
                assert (n in called) == (score >= thresholds[n]), (n, score, thresholds[n])


def test_multi_label_report_and_sr_list_every_finding(multi_label, tmp_path):
    root, export_dir = multi_label
    out = tmp_path / "out"
    # a threshold above every score: each finding absent, each still reported with its p
    predict(export_dir, root / "dicom", out, threshold=0.99, progress=False)
    document = fsio.read_json(out / "studies.json")
    study = document["studies"][0]
    assert [(f["finding"], f["present"], f["threshold"]) for f in study["findings"]] == [
        ("ground_glass", False, 0.99), ("nodule", False, 0.99)]
    rows = [r for r in fsio.read_csv(out / "predictions.csv") if r["study"] == "1"]
    assert study["findings"][1]["probability"] == pytest.approx(
        max(float(r["score_nodule"]) for r in rows), abs=1e-6)
    report = (out / study["report"]).read_text()
    assert "| ground glass | absent |" in report and "| nodule | absent |" in report
    assert study["finding"].startswith("Ground glass absent (max p = ")

    pytest.importorskip("highdicom")
    from medzoo.deploy.send import write_reports

    sr = pydicom.dcmread(write_reports(out, root / "dicom")[0])
    found = []

    def walk(items):
        for item in items:
            if "ContentSequence" in item:
                walk(item.ContentSequence)
            name = item.ConceptNameCodeSequence[0].CodeMeaning
            if name == "Finding" and "ConceptCodeSequence" in item:
                found.append(item.ConceptCodeSequence[0].CodeMeaning)

    walk(sr.ContentSequence)
    assert found.count("Absent") == 2 and {"ground_glass", "nodule"} <= set(found)
