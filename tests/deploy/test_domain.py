"""The domain of validity: recorded at ingest and export, enforced by ``medzoo predict``, and the
model-based OOD score (real DICOM from synth and pydicom, the real CT export of conftest)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pydicom
import pydicom.data
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from medzoo import fsio
from medzoo.datasets import domain as data_domain
from medzoo.datasets.synth import write_synthetic
from medzoo.deploy import domain
from medzoo.deploy.predict import predict
from medzoo.export import card, ood

OTHER = {"mr": "MR", "cr": "CR", "us": "US"}


def roc_auc(positive, scores) -> float:
    """AUROC as the Mann–Whitney U of the positives' scores against the negatives'."""
    from scipy.stats import mannwhitneyu

    positive, scores = np.asarray(positive, bool), np.asarray(scores, np.float64)
    u = mannwhitneyu(scores[positive], scores[~positive]).statistic
    return float(u) / (positive.sum() * (~positive).sum())


def _colour_secondary_capture(path: Path, size: int = 32) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.ConversionType = "OT", "WSD"
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    rgb = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    ds.PixelData = rgb.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _rtdose() -> Path:
    (path,) = [Path(p) for p in pydicom.data.get_testdata_files() if p.endswith("rtdose.dcm")]
    return path


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory):
    """New CT patients (in domain, never trained on) beside MR, CR, US, an RT Dose and a colour
    secondary capture."""
    root = tmp_path_factory.mktemp("domain") / "in"
    write_synthetic(root / "ct", patients=4, modality="ct", size=32, slices=2, seed=41)
    for seed, name in enumerate(OTHER, start=42):
        write_synthetic(root / name, patients=2, modality=name, size=32, slices=2, seed=seed)
    (root / "rt").mkdir()
    shutil.copy(_rtdose(), root / "rt" / "rtdose.dcm")
    _colour_secondary_capture(root / "sc" / "colour.dcm")
    return root


@pytest.fixture(scope="module")
def refused(cnn_export, mixed_dir, tmp_path_factory):
    """``medzoo predict`` (the command) without --allow-out-of-domain."""
    out = tmp_path_factory.mktemp("refused") / "out"
    proc = subprocess.run([sys.executable, "-m", "medzoo", "predict", str(cnn_export),
                           str(mixed_dir), "--out", str(out)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    return out, proc


@pytest.fixture(scope="module")
def allowed(cnn_export, mixed_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("allowed") / "out"
    return out, predict(cnn_export, mixed_dir, out, progress=False, allow_out_of_domain=True)


def test_export_records_the_training_domain_in_card_and_onnx(cnn_export, phantom_ds):
    info = json.loads((phantom_ds / "dataset.json").read_text())
    recorded = info["domain"]
    assert recorded["modalities"] == {"CT": info["counts"]["records"]}
    assert recorded["photometric_interpretations"] == {"MONOCHROME2": info["counts"]["records"]}
    assert list(recorded["sop_classes"]) == ["1.2.840.10008.5.1.4.1.1.2"]
    assert recorded["rows"] == recorded["columns"] == [32, 32]
    assert recorded["bits_stored"] and recorded["pixel_spacing_mm"][0] > 0
    intensity = recorded["intensity"]
    assert intensity["p1"] < intensity["p50"] < intensity["p99"]
    assert -1100 < intensity["p1"] < -900  # air in HU: the modality LUT was applied
    model_card = json.loads((cnn_export / "model_card.json").read_text())
    assert model_card["domain"] == recorded
    meta = {p.key: p.value for p in onnx.load(cnn_export / "model_raw.onnx").metadata_props}
    assert json.loads(meta["medzoo.domain"]) == recorded
    assert "CT" in model_card["limitations"][-1]
    text = json.dumps(recorded)
    assert "MZ-" not in text and "1.2.826" not in text  # no patient IDs, no instance UIDs


def test_an_old_dataset_gives_an_unknown_domain(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"schema_version": 1}))
    assert card.training_domain({"data": {"dir": str(tmp_path)}}) == "unknown"
    assert card.training_domain({"data": {"dir": str(tmp_path / "gone")}}) == "unknown"
    assert domain.reasons("unknown", {"modalities": ["MR"]}) == []


def test_domain_accumulator_round_trips_and_measures_percentiles():
    acc = data_domain.DomainAccumulator()
    values = np.linspace(-1000.0, 1000.0, 2001)
    acc.add({"modality": "CT", "photometric": "MONOCHROME2", "samples": 1, "rows": 32,
             "columns": 32, "pixel_spacing": [0.7, 0.7], "median": 0.0,
             "histogram": data_domain.intensity_bins(values)})
    again = data_domain.DomainAccumulator(json.loads(json.dumps(acc.state())))
    assert again.summary() == acc.summary()
    summary = acc.summary()
    assert summary["intensity"]["p50"] == pytest.approx(0.0, abs=1.0)
    assert summary["intensity"]["p1"] == pytest.approx(-980.0, rel=0.02)
    assert summary["intensity"]["p99"] == pytest.approx(980.0, rel=0.02)


def test_rules_and_their_tolerances():
    trained = {"modalities": {"CT": 10}, "photometric_interpretations": {"MONOCHROME2": 10},
               "samples_per_pixel": [1], "pixel_spacing_mm": [0.6, 0.8], "rows": [512, 512],
               "columns": [512, 512], "intensity": {"p1": -1000.0, "p99": 1000.0}}
    inside = {"modalities": ["CT"], "photometric": ["MONOCHROME2"], "samples": [1],
              "sop_classes": ["1.2.840.10008.5.1.4.1.1.2"], "pixel_spacing": [0.35, 1.5],
              "rows": [256, 256], "columns": [2048, 2048], "median": 1090.0}
    assert domain.reasons(trained, inside) == []
    far = dict(inside, pixel_spacing=[0.25, 0.25], rows=[100, 100], median=1200.0)
    found = domain.reasons(trained, far)
    assert [r.split(" ")[0] for r in found] == ["pixel", "rows", "median"]
    assert "0.3–1.6 mm" in found[0]


def test_a_domain_without_modality_still_checks_spacing_size_and_intensity():
    """A NIfTI dataset whose channel names map to no modality (nnU-Net's ``noNorm``) records
    its images' grid and intensities: predict checks those and skips only the modality rule."""
    trained = {"images": 12, "modalities": {}, "pixel_spacing_mm": [0.7, 0.8], "rows": [16, 16],
               "columns": [16, 16], "intensity": {"p1": 0.0, "p99": 500.0}}
    assert domain.is_known(trained)
    inside = {"modalities": ["MR"], "pixel_spacing": [0.75, 0.75], "rows": [16, 16],
              "columns": [16, 16], "median": 200.0}
    assert domain.reasons(trained, inside) == []
    far = dict(inside, modalities=["CT"], pixel_spacing=[3.0, 3.0])
    assert [r.split(" ")[0] for r in domain.reasons(trained, far)] == ["pixel"]
    assert not domain.is_known({"images": 0, "modalities": {}})


def test_out_of_domain_series_are_listed_not_scored(refused, mixed_dir):
    out, proc = refused
    assert proc.returncode == 0, proc.stderr
    assert "not analysed: 14 files, 8 whole studies" in proc.stdout
    assert "medzoo predict: not analysed: rt/rtdose.dcm: not a diagnostic image" in proc.stderr
    rows = fsio.read_csv(out / "not_analysed.csv")
    reasons = {r["modality"]: r["reason"] for r in rows}
    assert sorted(reasons) == ["CR", "MR", "OT", "RTDOSE", "US"]
    assert len(rows) == 2 * 3 + 2  # 2 patients × MR/CR/US, the RT Dose and the colour SC
    assert reasons["MR"] == "modality MR (trained on CT)"
    assert reasons["CR"].startswith("modality CR (trained on CT)")
    assert reasons["US"] == ("modality US (trained on CT); colour image (RGB; trained on "
                             "greyscale MONOCHROME2)")
    assert reasons["RTDOSE"].startswith("not a diagnostic image (RT Dose)")
    assert reasons["OT"] == ("modality OT (trained on CT); colour image (RGB; trained on "
                             "greyscale MONOCHROME2)")
    assert fsio.read_csv(out / "rejected.csv") == []
    predicted = fsio.read_csv(out / "predictions.csv")
    assert len(predicted) == 4 * 2 and not any(r["out_of_domain"] for r in predicted)
    document = json.loads((out / "studies.json").read_text())
    counts = document["counts"]
    assert counts["inputs"] == counts["predicted"] + counts["rejected"] + counts["not_analysed"]
    assert (counts["predicted"], counts["not_analysed"]) == (8, 2 * 3 * 2 + 2)
    listed = [s for s in document["studies"] if s["analysed"] is False]
    assert len(listed) == 8 and all(s["not_analysed"] and not s["positive"] for s in listed)
    report = (out / listed[0]["report"]).read_text()
    assert "## Not analysed" in report and listed[0]["not_analysed"][0]["reason"] in report
    assert listed[0]["finding"].startswith("Not analysed: modality ")
    assert counts["not_analysed_studies"] == 8 and counts["not_analysed_series"] == 8


def test_allow_out_of_domain_scores_them_marked(refused, allowed):
    out, summary = allowed
    assert summary["not_analysed"] == 0 and summary["rejected"] == 0
    rows = fsio.read_csv(out / "predictions.csv")
    marked = [r for r in rows if r["out_of_domain"]]
    assert len(marked) == 2 * 3 * 2 + 15 + 1  # MR/CR/US slices, 15 RT Dose frames, the SC
    document = json.loads((out / "studies.json").read_text())
    for study in document["studies"]:
        report = (out / study["report"]).read_text()
        if study["out_of_domain"]:
            assert study["finding"].startswith("OUT OF DOMAIN")
            assert "scored only because `--allow-out-of-domain` was given" in report
        else:
            assert "OUT OF DOMAIN" not in report
    # the in-domain CT images are scored exactly as without the flag
    before = {(r["study"], r["slice"]): r["score"]
              for r in fsio.read_csv(refused[0] / "predictions.csv")}
    after = [r["score"] for r in rows if not r["out_of_domain"]]
    assert sorted(before.values()) == sorted(after) and len(after) == 8


def test_ood_score_separates_other_modalities_from_held_out_ct(allowed, cnn_export):
    out, _ = allowed
    stats = ood.read_stats(cnn_export)
    assert stats is not None and stats["threshold"] > 0
    rows = fsio.read_csv(out / "predictions.csv")
    scores = np.array([float(r["ood_score"]) for r in rows])
    other = np.array([int(bool(r["out_of_domain"])) for r in rows])
    auroc = roc_auc(other, scores)
    print(f"OOD AUROC (other modalities vs held-out CT, n={len(rows)}): {auroc:.3f}")
    assert auroc >= 0.9
    flags = np.array([int(r["ood_flag"]) for r in rows])
    assert flags[other == 1].mean() > flags[other == 0].mean()


def test_an_export_without_a_domain_warns_once_and_scores(cnn_export, mixed_dir, tmp_path,
                                                          capfd):
    old = tmp_path / "models" / "cnn" / "1"
    shutil.copytree(cnn_export, old)
    model_card = json.loads((old / "model_card.json").read_text())
    model_card["domain"] = "unknown"
    (old / "model_card.json").write_text(json.dumps(model_card))
    summary = predict(old, mixed_dir / "mr", tmp_path / "out", progress=False)
    assert summary["not_analysed"] == 0 and summary["images"] == 2 * 2
    assert capfd.readouterr().err.count("records no training domain") == 1


def test_ct_with_far_off_intensities_or_spacing_is_not_analysed(cnn_export, tmp_path):
    """Same modality, but values or geometry far from the training data: a wrong rescale
    intercept (+3000 instead of -1024) and a pixel spacing ten times finer."""
    src = tmp_path / "in"
    write_synthetic(src, patients=3, modality="ct", size=32, slices=2, seed=61)
    folders = sorted(p for p in src.iterdir() if p.is_dir())
    for path in folders[0].glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.RescaleIntercept = 3000
        ds.save_as(path)
    for path in folders[1].glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.PixelSpacing = [float(v) / 10 for v in ds.PixelSpacing]
        ds.save_as(path)
    out = tmp_path / "out"
    summary = predict(cnn_export, src, out, progress=False)
    rows = fsio.read_csv(out / "not_analysed.csv")
    assert summary["not_analysed_series"] == 2 and summary["images"] == 2
    assert [r["reason"].split(" ")[:2] for r in rows] == [["median", "intensity"],
                                                          ["pixel", "spacing"]]
    assert "outside the training images' 1st–99th percentile" in rows[0]["reason"]
    marked = predict(cnn_export, src, tmp_path / "allowed", progress=False,
                     allow_out_of_domain=True)
    assert marked["images"] == 6 and marked["not_analysed"] == 0
    flagged = [r for r in fsio.read_csv(tmp_path / "allowed" / "predictions.csv")
               if r["out_of_domain"]]
    assert len(flagged) == 4


def test_sr_only_for_studies_with_analysed_series(refused, mixed_dir):
    """``--send`` writes one SR per study that has a finding; studies not analysed get none."""
    pytest.importorskip("highdicom")
    from medzoo.deploy.send import write_reports

    out, _ = refused
    written = write_reports(out, mixed_dir)
    document = json.loads((out / "studies.json").read_text())
    analysed = [s["study"] for s in document["studies"] if s["analysed"]]
    assert sorted(int(p.stem.split("-")[1]) for p in written) == analysed and len(analysed) == 4


def test_mahalanobis_under_the_fitted_ppca():
    rng = np.random.default_rng(0)
    scale = np.array([5.0, 2.0, 1.0, 0.5] + [0.1] * 12)
    train = rng.standard_normal((400, 16)) * scale + 3.0
    stats = ood.fit_stats(train, max_components=4)
    assert len(stats["components"]) == 4 and stats["n_fit"] == 400
    held = rng.standard_normal((200, 16)) * scale + 3.0
    inside = ood.mahalanobis(stats, held)
    assert np.median(inside) == pytest.approx(np.sqrt(16), rel=0.15)  # chi with 16 d.o.f.
    assert ood.mahalanobis(stats, np.full((1, 16), 3.0))[0] < 1.0  # the mean itself
    shifted = held.copy()
    shifted[:, 10] += 1.0  # ten standard deviations along a minor direction
    assert np.min(ood.mahalanobis(stats, shifted)) > np.max(inside)
    with pytest.raises(ValueError, match="at least 3 images"):
        ood.fit_stats(train[:2])


def test_segmenter_export_has_bottleneck_features(unet_export):
    import onnxruntime as ort

    model_card = json.loads((unet_export / "model_card.json").read_text())
    assert model_card["ood"]["available"] and model_card["ood"]["features"].startswith("deepest")
    session = ort.InferenceSession(str(unet_export / ood.FEATURES_FILE),
                                   providers=["CPUExecutionProvider"])
    feeds = {"pixels": np.full((2, 40, 40), 1000, np.int32),
             **{k: np.full(2, v, np.float32) for k, v in (
                 ("rescale_slope", 1.0), ("rescale_intercept", -1024.0),
                 ("window_center", 40.0), ("window_width", 400.0), ("invert", 0.0))}}
    (features,) = session.run(["features"], feeds)
    assert features.shape == (2, model_card["ood"]["dim"])
    assert ood.mahalanobis(ood.read_stats(unet_export), features).shape == (2,)
