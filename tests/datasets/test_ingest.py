import csv
import json
import shutil

import numpy as np
import pydicom
import pytest

from medzoo.datasets.dicom import read_dicom, resize_bilinear
from medzoo.datasets.ingest import ingest
from medzoo.datasets.manifest import read_index
from medzoo.datasets.records import read_records
from medzoo.datasets.synth import write_synthetic
from medzoo.errors import InputError


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_clean_ingest_counts_and_files(dataset):
    ds, result, summary = dataset
    assert result["inputs"] == result["loaded"] == result["records"] == summary["files"] == 24
    assert result["rejected"] == 0 and result["patients"] == 8
    assert result["per_class"] == {"normal": 12, "lesion": 12}
    info = json.loads((ds / "dataset.json").read_text())
    assert info["classes"] == ["normal", "lesion"] and info["image_size"] == [32, 32]
    assert info["has_mask"] is True and info["folds"] == 4 and info["counts"]["records"] == 24
    assert 0 < info["pixel_stats"]["mean"] < 1
    index = read_index(ds)
    assert [r["record_id"] for r in index] == [f"r{i:06d}" for i in range(1, 25)]
    assert [r["row"] for r in index] == list(range(1, 25))
    assert [r["frame"] for r in index] == [1, 2, 3] * 8
    assert {r["modality"] for r in index} == {"CT"}
    assert _csv(ds / "rejected.csv") == []


def test_no_patient_in_two_folds(dataset):
    ds, _, _ = dataset
    folds = {}
    for r in read_index(ds):
        assert folds.setdefault(r["patient"], r["fold"]) == r["fold"]
    assert sorted(set(folds.values())) == [0, 1, 2, 3]


def test_stored_images_follow_the_pixel_chain(dataset, synth_ct):
    ds, _, _ = dataset
    src, _ = synth_ct
    labels = _csv(src / "labels.csv")
    recs = list(read_records(ds))
    assert len(recs) == 24
    for rec, row in zip(recs[:6], labels[:6]):
        expected = resize_bilinear(read_dicom(src / row["path"]).frames[0], (32, 32))
        np.testing.assert_allclose(rec["image"][..., 0], expected, atol=1e-6)
        assert rec["label"] == (1 if row["label"] == "lesion" else 0)
        assert rec["mask"].shape == (32, 32)
        assert (rec["mask"].sum() > 0) == (row["label"] == "lesion")
    # lesion pixels are tissue (bright in the lung window), the lungs around them dark
    lesion = [r for r in recs if r["label"] == 1]
    inside = np.concatenate([r["image"][..., 0][r["mask"] == 1] for r in lesion])
    assert inside.mean() > 0.8


def test_planted_faults_are_each_rejected_with_their_reason(tmp_path, key_file, capsys):
    src = tmp_path / "dicom"
    write_synthetic(src, patients=4, size=32, slices=2, seed=5)
    rows = _csv(src / "labels.csv")
    first = src / rows[0]["path"]
    data = first.read_bytes()
    (src / "corrupt.dcm").write_bytes(data[: len(data) - 700])  # truncated pixel data
    (src / "notes.dcm").write_text("this is not DICOM\n" * 10)
    shutil.copy(first, src / "copy.dcm")  # same SOPInstanceUID as row 1
    np.save(src / "wrong_mask.npy", np.zeros((10, 12), np.uint8))
    extra = [
        {"path": "corrupt.dcm", "label": "normal", "mask": ""},
        {"path": "notes.dcm", "label": "normal", "mask": ""},
        {"path": rows[1]["path"], "label": "", "mask": ""},
        {"path": rows[2]["path"], "label": "lesion", "mask": "wrong_mask.npy"},
        {"path": rows[3]["path"], "label": "lesion", "mask": "absent.npy"},
        {"path": "copy.dcm", "label": "normal", "mask": ""},
        {"path": "missing.dcm", "label": "normal", "mask": ""},
    ]
    keep = [r for i, r in enumerate(rows) if i not in (1, 2, 3)]
    all_rows = keep[:1] + extra + keep[1:]
    with open(src / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["path", "label", "mask"], lineterminator="\n")
        w.writeheader()
        w.writerows(all_rows)
    result = ingest(src, src / "labels.csv", tmp_path / "DS", size=32, folds=2, key_file=key_file,
                    progress=False, strict=True)
    assert result["strict_failed"] is True  # the CLI turns this into exit status 1
    assert result["inputs"] == len(all_rows) == 12
    assert result["loaded"] + result["rejected"] == result["inputs"]
    assert result["rejected"] == 7 and result["loaded"] == result["records"] == 5
    rejected = {r["path"]: (int(r["row"]), r["reason"]) for r in _csv(tmp_path / "DS" / "rejected.csv")}
    assert rejected["corrupt.dcm"] == (2, "truncated pixel data")
    assert rejected["notes.dcm"] == (3, "not DICOM")
    assert rejected[rows[1]["path"]] == (4, "label missing")
    assert rejected[rows[2]["path"]] == (5, "mask shape mismatch (expected 32x32, received 10x12)")
    assert rejected[rows[3]["path"]] == (6, "mask file missing")
    assert rejected["copy.dcm"] == (7, "duplicate SOPInstanceUID")
    assert rejected["missing.dcm"] == (8, "file not found")
    index_rows = {r["row"] for r in read_index(tmp_path / "DS")}
    assert index_rows.isdisjoint(r for r, _ in rejected.values())
    assert len(index_rows) + len(rejected) == 12
    err = capsys.readouterr().err
    assert "rejected notes.dcm: not DICOM" in err and err.count("rejected ") == 7


def test_no_planted_phi_in_any_byte_of_the_dataset(dataset):
    ds, _, summary = dataset
    needles = [s.encode() for s in summary["phi"] + summary["patient_folders"]]
    needles += [n.upper() for n in needles] + [n.replace(b"^", b" ") for n in needles]
    files = [p for p in ds.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"dataset.json", "index.csv", "rejected.csv"}
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"planted PHI found in {path.name}"
    for part in summary["patient_folders"]:
        assert all(part not in str(p) for p in files)


def test_same_seed_same_bytes_and_refuses_to_overwrite(tmp_path, synth_ct, dataset, key_file):
    src, _ = synth_ct
    ds, _, _ = dataset
    again = tmp_path / "DS2"
    ingest(src, src / "labels.csv", again, size=32, folds=4, seed=0, key_file=key_file,
           progress=False)
    for name in ("index.csv", "rejected.csv", "dataset.json", "shards/shard-00000.tfrecord"):
        assert (again / name).read_bytes() == (ds / name).read_bytes()
    with pytest.raises(InputError, match="refusing to overwrite"):
        ingest(src, src / "labels.csv", again, size=32, folds=4, key_file=key_file, progress=False)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_series_folder_sorted_by_slice_normal_not_file_name(tmp_path, synth_ct, key_file):
    src, _ = synth_ct
    labels = _csv(src / "labels.csv")
    series = {}
    for row in labels:
        series.setdefault(row["path"].split("/")[0], []).append(row)
    root = tmp_path / "dicom"
    (root).mkdir()
    out_rows = []
    for n, (patient, rows) in enumerate(sorted(series.items())):
        folder = root / f"series{n}"
        folder.mkdir()
        names = ["zz.dcm", "aa.dcm", "mm.dcm"] if n % 2 else ["b", "c", "a"]
        for row, name in zip(rows, names):  # file names no longer follow the slices
            shutil.copy(src / row["path"], folder / name)
        out_rows.append((f"series{n}", rows[0]["label"]))
    with open(root / "labels.csv", "w") as fh:
        fh.write("path,label\n" + "".join(f"{p},{y}\n" for p, y in out_rows))
    result = ingest(root, root / "labels.csv", tmp_path / "DS", size=32, folds=2,
                    key_file=key_file, progress=False, workers=2)
    assert result["records"] == 24 and result["rejected"] == 0
    recs = list(read_records(tmp_path / "DS"))
    index = read_index(tmp_path / "DS")
    assert [r["frame"] for r in index] == [1, 2, 3] * 8
    ordered = sorted(series.items())
    for i, rec in enumerate(recs):
        src_row = ordered[i // 3][1][i % 3]  # IM0001, IM0002, IM0003: increasing z
        z = float(pydicom.dcmread(src / src_row["path"]).ImagePositionPatient[2])
        expected = resize_bilinear(read_dicom(src / src_row["path"]).frames[0], (32, 32))
        np.testing.assert_allclose(rec["image"][..., 0], expected, atol=1e-6, err_msg=str(z))


def test_bad_input_raises_one_clear_line(tmp_path, key_file):
    with pytest.raises(InputError, match="labels.csv: expected a CSV file"):
        ingest(tmp_path, tmp_path / "labels.csv", tmp_path / "DS", key_file=key_file)
    (tmp_path / "x.dcm").write_text("nope")
    (tmp_path / "labels.csv").write_text("path,label\nx.dcm,a\n")
    with pytest.raises(InputError, match="at least two classes"):
        ingest(tmp_path, tmp_path / "labels.csv", tmp_path / "DS", key_file=key_file)
    (tmp_path / "y.dcm").write_text("nope")
    (tmp_path / "labels.csv").write_text("path,label\nx.dcm,a\ny.dcm,b\n")
    with pytest.raises(InputError, match="No readable input"):
        ingest(tmp_path, tmp_path / "labels.csv", tmp_path / "DS", key_file=key_file,
               progress=False)
    with pytest.raises(InputError, match="Received: window='wide'"):
        ingest(tmp_path, tmp_path / "labels.csv", tmp_path / "DS", window="wide",
               key_file=key_file)
    assert not (tmp_path / "DS").exists()


def test_workers_decode_without_tensorflow(synth_ct, key_file):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from medzoo.datasets import ingest as ingest_mod

    src, _ = synth_ct
    files = [str(p) for p in sorted(src.glob("*/IM000*.dcm"))[:2]]
    options = ingest_mod.Options(key=b"k" * 32, size=(32, 32), windows=("auto",))
    tasks = [([("path", [f], False)], None) for f in files]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=ingest_mod.init_worker, initargs=(options,)) as pool:
        outcomes = pool.submit(ingest_mod.decode_chunk, tasks).result()
        assert [[kind for kind, _, _ in o] for o in outcomes] == [["ok"], ["ok"]]
        assert outcomes[0][0][2]["image"].shape == (32, 32, 1)
        assert pool.submit(ingest_mod.worker_imports_tensorflow).result() is False


def test_workers_give_the_same_bytes_as_one_process(synth_ct, dataset, tmp_path, key_file):
    src, _ = synth_ct
    ds, _, _ = dataset
    ingest(src, src / "labels.csv", tmp_path / "DS", size=32, folds=4, seed=0, key_file=key_file,
           progress=False, workers=2, parallel="always")
    for name in ("index.csv", "dataset.json", "shards/shard-00000.tfrecord"):
        assert (tmp_path / "DS" / name).read_bytes() == (ds / name).read_bytes()


def _plain(value):
    """Outcomes with arrays as (dtype, shape, bytes): comparable with ==, bit for bit."""
    if isinstance(value, np.ndarray):
        return value.dtype.str, value.shape, value.tobytes()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def test_this_process_and_a_worker_share_the_chunks_in_input_order(synth_ct, monkeypatch):
    from medzoo.datasets import ingest as ingest_mod
    from medzoo.datasets.manifest import read_labels

    src, _ = synth_ct
    plan = ingest_mod.plan_rows(read_labels(src / "labels.csv"), src / "labels.csv")
    tasks, _ = ingest_mod.planned_tasks(plan)
    options = ingest_mod.Options(key=b"k" * 32, size=(32, 32), windows=("auto",))
    from medzoo.datasets import ingest_schedule

    monkeypatch.setattr(ingest_schedule, "FILES_PER_CHUNK", 1)  # 24 chunks to hand out
    alone = list(ingest_mod.iter_outcomes(tasks, options, workers=1))
    stats: dict = {}
    shared = list(ingest_mod.iter_outcomes(tasks, options, workers=2, parallel="always",
                                           stats=stats))
    assert stats["workers_started"] == 1 and stats["chunks"] == 24
    # the worker gets the first chunks queued; this process decodes later ones meanwhile
    assert 1 <= stats["chunks_here"] <= 24 - ingest_mod.CHUNKS_QUEUED_PER_WORKER
    assert _plain(shared) == _plain(alone)  # same outcomes, order, pixels, pseudonyms


def test_paired_ct_mr_become_two_channels_each_with_its_window(tmp_path, key_file):
    from medzoo.datasets.dicom import read_dicom

    src = tmp_path / "pair"
    s = write_synthetic(src, patients=4, size=32, slices=2, seed=4, paired=True)
    assert s["modalities"] == {"CT": 8, "MR": 8} and s["files"] == 16
    rows = _csv(src / "labels.csv")
    assert list(rows[0]) == ["path", "path_mr", "label", "mask"]
    a = pydicom.dcmread(src / rows[0]["path"])
    b = pydicom.dcmread(src / rows[0]["path_mr"])
    assert a.FrameOfReferenceUID == b.FrameOfReferenceUID and a.SeriesInstanceUID != b.SeriesInstanceUID
    assert a.ImagePositionPatient == b.ImagePositionPatient
    result = ingest(src, src / "labels.csv", tmp_path / "DS", size=32, folds=2, key_file=key_file,
                    progress=False, window=["mediastinum", "auto"])
    assert result["inputs"] == 16 == result["loaded"] and result["records"] == 8
    info = json.loads((tmp_path / "DS" / "dataset.json").read_text())
    assert info["channels"] == 2 and info["input_columns"] == ["path", "path_mr"]
    assert info["windows"] == [[50.0, 350.0], "auto"] and info["window_preset"] == "mediastinum"
    assert info["domain"]["modalities"] == {"CT": 8, "MR": 8}  # every input's kind of image
    for rec, row in zip(read_records(tmp_path / "DS"), rows):
        assert rec["image"].shape == (32, 32, 2)
        ct = read_dicom(src / row["path"], (50, 350), size=(32, 32)).frames[0, ..., 0]
        mr = read_dicom(src / row["path_mr"], size=(32, 32)).frames[0, ..., 0]
        np.testing.assert_array_equal(rec["image"][..., 0], ct)
        np.testing.assert_array_equal(rec["image"][..., 1], mr)
        if row["label"] == "lesion":  # the same lesion, at the same place, in both channels
            m = rec["mask"] == 1
            for c in (0, 1):
                assert rec["image"][..., c][m].mean() > rec["image"][..., c][~m].mean()
    # a broken MR file takes its CT partner with it, both accounted for
    (src / rows[0]["path_mr"]).write_text("not DICOM")
    again = ingest(src, src / "labels.csv", tmp_path / "DS2", size=32, folds=2,
                   key_file=key_file, progress=False)
    rejected = {r["path"]: r["reason"] for r in _csv(tmp_path / "DS2" / "rejected.csv")}
    assert rejected == {rows[0]["path_mr"]: "not DICOM",
                        rows[0]["path"]: "paired input rejected (path_mr: not DICOM)"}
    assert again["inputs"] == again["loaded"] + again["rejected"] == 16


def test_preprocessing_flags_are_applied_and_recorded(synth_ct, tmp_path, key_file):
    from medzoo.datasets import preprocess

    src, _ = synth_ct
    plain = ingest(src, src / "labels.csv", tmp_path / "A", size=32, folds=2, key_file=key_file,
                   progress=False)
    done = ingest(src, src / "labels.csv", tmp_path / "B", size=32, folds=2, key_file=key_file,
                  progress=False, denoise="median:3", enhance="clahe:4:2", standardize="minmax")
    assert plain["records"] == done["records"] == 24
    info = json.loads((tmp_path / "B" / "dataset.json").read_text())
    specs = info["preprocessing"]
    assert [s["op"] for s in specs] == ["denoise", "enhance", "standardize"]
    assert specs[1] == {"op": "enhance", "layer": "Enhance", "mode": "clahe", "bins": 256,
                        "tiles": 4, "clip_limit": 2.0}
    for a, b in zip(read_records(tmp_path / "A"), read_records(tmp_path / "B")):
        np.testing.assert_allclose(b["image"], preprocess.apply_specs(a["image"], specs), atol=1e-6)
        assert b["image"].min() == 0.0 and b["image"].max() == 1.0
    with pytest.raises(InputError, match="Received: 'wiener'"):
        ingest(src, src / "labels.csv", tmp_path / "C", denoise="wiener", key_file=key_file)


def test_mixed_modalities_and_png_masks(tmp_path, key_file):
    from PIL import Image

    src = tmp_path / "mixed"
    write_synthetic(src, patients=8, modality="mixed", size=32, slices=1, seed=2)
    rows = _csv(src / "labels.csv")
    # masks as PNG (0/255) instead of .npy
    for row in rows:
        mask = np.load(src / row["mask"])
        png = row["mask"].replace(".npy", ".png")
        Image.fromarray(mask * 255).save(src / png)
        row["mask"] = png
    with open(src / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["path", "label", "mask"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    result = ingest(src, src / "labels.csv", tmp_path / "DS", size=32, folds=2, key_file=key_file,
                    progress=False)
    assert result["rejected"] == 0 and result["records"] == 8
    info = json.loads((tmp_path / "DS" / "dataset.json").read_text())
    assert info["modalities"] == {"CR": 2, "CT": 2, "MR": 2, "US": 2} and info["channels"] == 1
    index = read_index(tmp_path / "DS")
    assert {r["modality"]: r["photometric"] for r in index} == {
        "CT": "MONOCHROME2", "MR": "MONOCHROME2", "CR": "MONOCHROME1", "US": "RGB"}
    for rec, row in zip(read_records(tmp_path / "DS"), rows):
        assert rec["image"].shape == (32, 32, 1)
        assert 0.0 <= rec["image"].min() and rec["image"].max() <= 1.0
        np.testing.assert_array_equal(rec["mask"], np.load(src / row["path"].replace(".dcm", "_mask.npy")))
        if row["label"] == "lesion":  # the lesion is brighter than the lung around it everywhere
            img = rec["image"][..., 0]
            assert img[rec["mask"] == 1].mean() > img[8:24, 4:10][rec["mask"][8:24, 4:10] == 0].mean()


def test_user_window_is_applied_and_recorded(tmp_path, synth_ct, key_file):
    from medzoo.datasets.dicom import read_modality_values, window_linear

    src, _ = synth_ct
    rows = _csv(src / "labels.csv")[:6]
    with open(tmp_path / "labels.csv", "w") as fh:
        fh.write("path,label\n" + "".join(f"{src / r['path']},{r['label']}\n" for r in rows))
    result = ingest(src, tmp_path / "labels.csv", tmp_path / "DS", size=32, window="40,400",
                    folds=2, key_file=key_file, progress=False)
    assert result["records"] == 6
    info = json.loads((tmp_path / "DS" / "dataset.json").read_text())
    assert info["window"] == [40.0, 400.0] and info["has_mask"] is False
    index = read_index(tmp_path / "DS")
    assert {(r["window_center"], r["window_width"]) for r in index} == {(40.0, 400.0)}
    for rec, row in zip(read_records(tmp_path / "DS"), rows):
        hu = read_modality_values(src / row["path"])[0]
        np.testing.assert_allclose(rec["image"][..., 0],
                                   resize_bilinear(window_linear(hu, 40, 400), (32, 32)), atol=1e-6)
        assert rec["mask"] is None


def test_pydicom_warnings_quoting_identifiers_are_not_shown(tmp_path, synth_ct, key_file):
    import warnings

    src, summary = synth_ct
    ds = pydicom.dcmread(next(src.glob("*/IM0001.dcm")))
    ds.SeriesInstanceUID = "1.2.3." + ds.PatientID  # invalid UI value: pydicom warns, quoting it
    ds.save_as(tmp_path / "odd.dcm")
    (tmp_path / "labels.csv").write_text("path,label\nodd.dcm,normal\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from medzoo.datasets.dicom import read_dicom

        read_dicom(tmp_path / "odd.dcm")
    assert not [w for w in caught if ds.PatientID in str(w.message)]


def test_a_mask_of_structured_or_text_dtype_is_rejected_not_fatal(tmp_path):
    from medzoo.datasets.dicom import DicomRejected
    from medzoo.datasets.ingest_masks import load_mask

    for name, array in (("structured.npy", np.zeros((4, 4), dtype=[("a", "i4"), ("b", "f4")])),
                        ("text.npy", np.full((4, 4), "x"))):
        np.save(tmp_path / name, array)
        with pytest.raises(DicomRejected, match="expected a numeric array"):
            load_mask(tmp_path / name, 4, 4)
    np.save(tmp_path / "ok.npy", np.eye(4, dtype=bool))
    assert load_mask(tmp_path / "ok.npy", 4, 4).sum() == 4
