"""``medzoo predict``: exported models on new, unlabelled DICOM studies (real files, runtimes)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medzoo import fsio
from medzoo.datasets import deid, dicom, manifest, records
from medzoo.datasets.synth import write_synthetic
from medzoo.errors import InputError
from medzoo.export.parity import run_onnx
from medzoo.deploy.predict import predict

N_PATIENTS, N_SLICES = 15, 2  # the phantom_dicom fixture (tests/conftest.py)


def _onnx_scores(export_dir: Path, images: np.ndarray) -> np.ndarray:
    return run_onnx(export_dir / "model.onnx", {"image": images.astype(np.float32)})[
        "probabilities"][:, 1]


def _by_series_slice(out: Path) -> dict:
    rows = fsio.read_csv(out / "predictions.csv")
    return {(r["series_pseudonym"], int(r["slice"])): r for r in rows}


def _series_pseudonym(key_file, path) -> str:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return deid.pseudonym(deid.load_or_create_key(key_file), "series", ds.SeriesInstanceUID)


def _all_output_files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def cnn_predictions(cnn_export, phantom_dicom, key_file, tmp_path_factory):
    dicom_dir, _ = phantom_dicom
    out = tmp_path_factory.mktemp("predict") / "cnn"
    summary = predict(cnn_export, dicom_dir, out, key_file=key_file, progress=False, explain=True)
    return out, summary


@pytest.fixture(scope="module")
def corrupt_copy(phantom_dicom, tmp_path_factory):
    """The phantom folder with a garbage file and a truncated file planted in patient folders."""
    src, synth = phantom_dicom
    dicom_dir = tmp_path_factory.mktemp("corrupt") / "dicom"
    shutil.copytree(src, dicom_dir)
    first, second = synth["patient_folders"][:2]
    (dicom_dir / first / "IM0099.dcm").write_bytes(b"this is not a DICOM file\n" * 40)
    victim = dicom_dir / second / "IM0002.dcm"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    return dicom_dir, {f"{first}/IM0099.dcm", f"{second}/IM0002.dcm"}


@pytest.fixture(scope="module")
def unet_predictions(unet_export, corrupt_copy, key_file, tmp_path_factory):
    dicom_dir, _ = corrupt_copy
    out = tmp_path_factory.mktemp("predict") / "unet"
    summary = predict(unet_export, dicom_dir, out, key_file=key_file, batch_size=5,
                      progress=False)
    return out, summary


def test_scores_equal_model_onnx_on_the_ingested_images(cnn_predictions, cnn_export, phantom_ds,
                                                        phantom_dicom):
    out, summary = cnn_predictions
    dicom_dir, synth = phantom_dicom
    labels = fsio.read_csv(dicom_dir / "labels.csv")
    index = manifest.read_index(phantom_ds)
    images = {r["record_id"]: r["image"] for r in records.read_records(phantom_ds)}
    predicted = _by_series_slice(out)

    assert summary["inputs"] == summary["predicted"] == summary["images"] == synth["files"]
    assert summary["rejected"] == 0 and summary["ignored"] == synth["files"] + 1  # masks + csv
    assert len(predicted) == len(fsio.read_csv(out / "predictions.csv")) == synth["files"]
    expected = _onnx_scores(cnn_export, np.stack([images[r["record_id"]] for r in index]))
    matched_rows = set()
    for record, score in zip(index, expected):
        row = predicted[(record["series"], int(record["frame"]))]
        assert float(row["score"]) == pytest.approx(float(score), abs=1e-4)
        assert row["predicted"] == ("lesion" if float(row["score"]) >= 0.5 else "normal")
        matched_rows.add(int(record["row"]))
    assert matched_rows == set(range(1, len(labels) + 1))  # every input file, exactly once


def test_studies_json_has_one_entry_per_patient_study(cnn_predictions):
    out, summary = cnn_predictions
    document = json.loads((out / "studies.json").read_text())
    rows = fsio.read_csv(out / "predictions.csv")
    assert summary["studies"] == len(document["studies"]) == N_PATIENTS
    assert document["model"]["name"] == "cnn" and document["model"]["version"] == 1
    assert document["threshold"] == 0.5 and "model card" in document["threshold_source"]
    for study in document["studies"]:
        scores = [float(r["score"]) for r in rows if int(r["study"]) == study["study"]]
        assert study["images"] == len(scores) == N_SLICES and len(study["series"]) == 1
        assert study["max_score"] == pytest.approx(max(scores), abs=1e-6)
        assert study["mean_score"] == pytest.approx(np.mean(scores), abs=1e-6)
        assert study["predicted"] == ("lesion" if max(scores) >= 0.5 else "normal")
        assert (study["model"], study["version"]) == ("cnn", 1)
        assert (out / study["report"]).is_file()
    assert len(list((out / "findings").glob("study-*.md"))) == N_PATIENTS


def test_explain_attaches_an_occlusion_map_of_each_studys_top_image(cnn_predictions):
    from PIL import Image

    out, _ = cnn_predictions
    document = json.loads((out / "studies.json").read_text())
    for study in document["studies"]:
        png = out / study["explanation"]
        assert png.name == f"study-{study['study']:03d}.png" and png.parent.name == "explain"
        with Image.open(png) as image:
            assert image.format == "PNG" and image.size[0] > image.size[1] > 100
        report = (out / study["report"]).read_text()
        assert f"](../explain/{png.name})" in report and "## Where the model looked" in report
        assert f"image {study['max_image']} (the highest p)" in report


def test_occlusion_on_raw_pixels_finds_what_the_score_depends_on():
    """A toy 'model' that scores the mean of one patch: the map's maximum is that patch."""
    from medzoo.evaluation.explain import occlusion

    pixels = np.full((1, 32, 32), 100, np.int32)
    pixels[0, 8:12, 20:24] = 1000

    def scores(x):
        s = x[:, 8:12, 20:24].mean(axis=(1, 2)) / 1000.0
        return np.stack([1 - s, s], axis=1)

    heat = occlusion(scores, pixels, 1, patch=4, fill=100.0)[0]
    row, col = np.unravel_index(heat.argmax(), heat.shape)
    assert 8 <= row < 12 and 20 <= col < 24 and heat[0, 0] == 0.0


def test_findings_report_says_what_was_found_by_which_model(cnn_export, phantom_dicom, tmp_path):
    dicom_dir, _ = phantom_dicom
    first = tmp_path / "first"
    predict(cnn_export, dicom_dir, first, progress=False)
    studies = json.loads((first / "studies.json").read_text())["studies"]
    maxima = sorted(s["max_score"] for s in studies)
    threshold = (maxima[len(maxima) // 2 - 1] + maxima[len(maxima) // 2]) / 2  # some each way
    out = tmp_path / "split"
    predict(cnn_export, dicom_dir, out, threshold=threshold, progress=False)
    document = json.loads((out / "studies.json").read_text())
    assert document["threshold"] == threshold and document["threshold_source"] == "override"
    positives = [s for s in document["studies"] if s["positive"]]
    negatives = [s for s in document["studies"] if not s["positive"]]
    assert positives and negatives
    for study in positives:
        text = (out / study["report"]).read_text()
        head = (f"Lesion suspected (p = {study['max_score']:.2f}) on {study['positive_images']} "
                f"of {N_SLICES} images, max on image {study['max_image']} — model cnn v1")
        assert head in text and head == study["finding"]
        assert "not a diagnosis" in text
    for study in negatives:
        text = (out / study["report"]).read_text()
        assert f"No lesion found (max p = {study['max_score']:.2f}) — model cnn v1" in text
        assert "Research software" in text


def test_corrupt_files_are_rejected_and_the_rest_predicted(unet_predictions, corrupt_copy):
    out, summary = unet_predictions
    _, planted = corrupt_copy
    rejected = fsio.read_csv(out / "rejected.csv")
    assert {r["path"] for r in rejected} == planted
    reasons = {r["path"]: r["reason"] for r in rejected}
    assert reasons[next(p for p in planted if p.endswith("IM0099.dcm"))] == "not DICOM"
    truncated = next(p for p in planted if p.endswith("IM0002.dcm"))
    assert reasons[truncated].startswith("truncated")
    total = N_PATIENTS * N_SLICES + 1
    assert summary["inputs"] == total and summary["rejected"] == 2
    assert summary["predicted"] == total - 2 == len(fsio.read_csv(out / "predictions.csv"))
    assert summary["studies"] == N_PATIENTS  # the truncated patient keeps its other slice


def test_no_phi_in_any_output(unet_predictions, cnn_predictions, phantom_dicom, corrupt_copy):
    _, synth = phantom_dicom
    forbidden = [s.encode() for s in synth["phi"] + synth["patient_folders"]]
    assert len(forbidden) > 100
    for out, _ in (cnn_predictions, unet_predictions):
        files = _all_output_files(out)
        assert {"predictions.csv", "studies.json", "rejected.csv"} <= {p.name for p in files}
        for path in files:
            rel = str(path.relative_to(out))
            if rel.startswith("seg/"):
                continue  # the one exception, checked below
            data = path.read_bytes()
            if rel == "rejected.csv":  # the user's own relative paths may appear there (DESIGN)
                rows = fsio.read_csv(path)
                assert {r["path"] for r in rows} <= corrupt_copy[1]
                data = "\n".join(r["reason"] for r in rows).encode()
            leaks = [s for s in forbidden if s in data or s in rel.encode()]
            assert not leaks, f"{rel} holds PHI: {leaks[:3]}"
    # A DICOM SEG must carry the source study's patient module and UIDs to attach to the study.
    pytest.importorskip("highdicom")
    seg = pydicom.dcmread(next((unet_predictions[0] / "seg").glob("*.dcm")))
    assert seg.PatientID.encode() in forbidden and seg.StudyInstanceUID.encode() in forbidden


def test_seg_reads_back_with_frames_and_references(unet_predictions, corrupt_copy, key_file):
    hd = pytest.importorskip("highdicom")

    out, summary = unet_predictions
    dicom_dir, planted = corrupt_copy
    document = json.loads((out / "studies.json").read_text())
    rows = fsio.read_csv(out / "predictions.csv")
    sources = {}  # series pseudonym → {SOPInstanceUID: SeriesInstanceUID}
    for path in sorted(dicom_dir.glob("*/*.dcm")):
        if str(path.relative_to(dicom_dir)) in planted:
            continue
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        sources.setdefault(_series_pseudonym(key_file, path), {})[ds.SOPInstanceUID] = \
            ds.SeriesInstanceUID
    series = [s for study in document["studies"] for s in study["series"]]
    assert len(series) == len(summary["seg_files"]) == N_PATIENTS
    for entry in series:
        path = out / entry["seg"]
        expected_sops = sources[entry["series_pseudonym"]]
        ds = pydicom.dcmread(path)
        assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
        assert int(ds.NumberOfFrames) == len(expected_sops) == entry["images"]  # every frame kept
        (referenced,) = ds.ReferencedSeriesSequence
        assert referenced.SeriesInstanceUID == next(iter(expected_sops.values()))
        assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} == \
            set(expected_sops)
        (segment,) = ds.SegmentSequence
        assert segment.SegmentLabel == "Lesion" and segment.SegmentAlgorithmType == "AUTOMATIC"
        (algorithm,) = segment.SegmentationAlgorithmIdentificationSequence
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("medzoo unet", "1")

        seg = hd.seg.segread(path)
        assert seg.number_of_segments == 1
        assert seg.get_segment_description(1).segment_label == "Lesion"
        assert {uid for _, _, uid in seg.get_source_image_uids()} == set(expected_sops)
        masks = seg.get_pixels_by_source_instance(source_sop_instance_uids=sorted(expected_sops))
        assert masks.shape == (len(expected_sops), 32, 32, 1)
        per_image = sorted(int(r["lesion_pixels"]) for r in rows
                           if r["series_pseudonym"] == entry["series_pseudonym"])
        assert sorted(int(m.sum()) for m in masks) == per_image
        assert int(masks.sum()) == entry["lesion_pixels"]


def test_modalities_sizes_and_colour(cnn_export, key_file, tmp_path):
    """CT, MR (slope), CR (MONOCHROME1), RGB ultrasound (its luma) and a bigger CT through the raw
    graph score like the float path on the ingest chain (the CT model scores the other
    modalities only with allow_out_of_domain, marked: tests/deploy/test_domain.py)."""
    dicom_dir = tmp_path / "in"
    write_synthetic(dicom_dir / "mixed", patients=8, modality="mixed", size=32, slices=1, seed=5)
    write_synthetic(dicom_dir / "big", patients=2, modality="ct", size=48, slices=2, seed=6)
    out = tmp_path / "out"
    summary = predict(cnn_export, dicom_dir, out, key_file=key_file, batch_size=3, progress=False,
                      allow_out_of_domain=True)
    assert fsio.read_csv(out / "rejected.csv") == []
    assert summary["predicted"] == 12 and summary["inputs"] == 12
    predicted = _by_series_slice(out)
    checked = set()
    for path in sorted(dicom_dir.rglob("*.dcm")):
        image = dicom.read_dicom(path)  # the ingest chain up to the resize
        slice_no = int(pydicom.dcmread(path, stop_before_pixels=True).InstanceNumber)
        row = predicted[(_series_pseudonym(key_file, path), slice_no)]
        assert (int(row["rows"]), int(row["columns"])) == (image.rows, image.columns)
        small = dicom.resize_bilinear(image.frames[0], (32, 32))[None, :, :, None]
        expected = float(_onnx_scores(cnn_export, small)[0])
        # colour: luma in 1/256 grey levels through the raw graph, float luma on the ingest chain
        tolerance = 1e-3 if image.modality == "US" else 1e-4
        assert float(row["score"]) == pytest.approx(expected, abs=tolerance), image.modality
        assert bool(row["out_of_domain"]) == (image.modality != "CT"), image.modality
        checked.add((image.modality, image.photometric, image.rows))
    assert {("CT", "MONOCHROME2", 32), ("MR", "MONOCHROME2", 32), ("CR", "MONOCHROME1", 32),
            ("US", "RGB", 32), ("CT", "MONOCHROME2", 48)} <= checked


def test_savedmodel_runtime_gives_the_onnx_scores(cnn_export, phantom_dicom, tmp_path):
    src, synth = phantom_dicom
    dicom_dir = tmp_path / "in"
    for folder in synth["patient_folders"][:2]:
        shutil.copytree(src / folder, dicom_dir / folder)
    predict(cnn_export, dicom_dir, tmp_path / "onnx", progress=False)
    predict(cnn_export, dicom_dir, tmp_path / "tf", runtime="savedmodel", progress=False)
    onnx_rows = fsio.read_csv(tmp_path / "onnx" / "predictions.csv")
    tf_rows = fsio.read_csv(tmp_path / "tf" / "predictions.csv")
    assert len(onnx_rows) == len(tf_rows) == 2 * N_SLICES
    for a, b in zip(onnx_rows, tf_rows):
        assert (a["study"], a["slice"]) == (b["study"], b["slice"])
        assert float(a["score"]) == pytest.approx(float(b["score"]), abs=1e-4)


def test_onnx_runtime_does_not_import_tensorflow(cnn_export, phantom_dicom, tmp_path):
    src, synth = phantom_dicom
    dicom_dir = tmp_path / "in"
    shutil.copytree(src / synth["patient_folders"][0], dicom_dir / "p")
    code = ("import sys; from medzoo.deploy.predict import predict; "
            f"s = predict({str(cnn_export)!r}, {str(dicom_dir)!r}, {str(tmp_path / 'out')!r}, "
            "progress=False); print(s['images'], 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.split()[-2:] == [str(N_SLICES), "False"]


def test_bad_input_is_refused_with_a_clear_error(cnn_export, phantom_dicom, tmp_path):
    dicom_dir, _ = phantom_dicom
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("keep me")
    with pytest.raises(InputError, match="expected a new or empty folder"):
        predict(cnn_export, dicom_dir, tmp_path / "full")
    assert (tmp_path / "full" / "x.txt").read_text() == "keep me"
    with pytest.raises(InputError, match="--runtime must be one of onnx, savedmodel"):
        predict(cnn_export, dicom_dir, tmp_path / "o1", runtime="torch")
    with pytest.raises(InputError, match="export version dir"):
        predict(cnn_export.parent, dicom_dir, tmp_path / "o2")
    with pytest.raises(InputError, match="Threshold must be a number in"):
        predict(cnn_export, dicom_dir, tmp_path / "o3", threshold=1.5)
    with pytest.raises(InputError, match="expected an existing key"):
        predict(cnn_export, dicom_dir, tmp_path / "o4", key_file=tmp_path / "missing.key")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.dcm").write_bytes(b"\0" * 300)
    with pytest.raises(InputError, match="No readable input: all 1 input files were rejected"):
        predict(cnn_export, junk, tmp_path / "o5")
    assert not any(p.name.startswith(("o", ".o")) for p in tmp_path.iterdir())  # nothing half-made


def test_a_fixed_training_window_is_applied_as_ingest_applied_it(cnn_export, phantom_dicom,
                                                                 key_file, tmp_path):
    """A model trained with --window C,W saw every image in that window, whatever the file's own
    window said; predict feeds it the same way (the card's window wins over the file's)."""
    export = tmp_path / "cnn" / "1"
    shutil.copytree(cnn_export, export)
    card = json.loads((export / "model_card.json").read_text())
    card["input"]["window"] = [40, 400]
    (export / "model_card.json").write_text(json.dumps(card))
    src, synth = phantom_dicom
    dicom_dir = tmp_path / "in"
    shutil.copytree(src / synth["patient_folders"][1], dicom_dir / "p")
    predict(export, dicom_dir, tmp_path / "out", key_file=key_file, progress=False)
    predicted = _by_series_slice(tmp_path / "out")
    for path in sorted(dicom_dir.glob("*.dcm")):
        header = pydicom.dcmread(path, stop_before_pixels=True)
        assert float(header.WindowCenter[0]) != 40  # the file's first window differs
        image = dicom.read_dicom(path, window=(40, 400))
        small = dicom.resize_bilinear(image.frames[0], (32, 32))[None, :, :, None]
        row = predicted[(_series_pseudonym(key_file, path), int(header.InstanceNumber))]
        assert float(row["score"]) == pytest.approx(float(_onnx_scores(export, small)[0]),
                                                    abs=1e-4)
