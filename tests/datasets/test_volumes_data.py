"""Phantom volumes (synth --volumes) and native-spacing ingest (--spacing): real DICOM files."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pydicom
import pytest

from medzoo.datasets import records
from medzoo.datasets.geometry import series_geometry
from medzoo.datasets.resample import labels_to_shape
from medzoo.datasets.synth_volumes import LABEL_CLASSES, write_synthetic_volumes
from medzoo.datasets.volumes import ingest_volumes

SIZE, SLICES = 48, 12


@pytest.fixture(scope="module")
def phantom_volumes(tmp_path_factory):
    out = tmp_path_factory.mktemp("volumes") / "dicom"
    summary = write_synthetic_volumes(out, patients=4, size=SIZE, slices=SLICES, seed=5)
    return out, summary


def _series(folder):
    datasets = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    geometry = series_geometry(datasets)
    along = [float(np.dot(geometry.normal, [float(v) for v in ds.ImagePositionPatient]))
             for ds in datasets]
    ordered = [datasets[i] for i in np.argsort(along)]
    hu = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
                   for ds in ordered])
    return geometry, hu, ordered


def test_synth_volumes_vary_geometry_and_label_maps_match_their_series(phantom_volumes):
    out, summary = phantom_volumes
    rows = list(csv.DictReader(open(out / "labels.csv")))
    assert [r["label"] for r in rows].count("lesion") >= 1
    assert [r["label"] for r in rows].count("normal") >= 1
    assert json.loads((out / "label_classes.json").read_text())["label_classes"] == \
        ["background", "lung", "heart", "lesion"] == LABEL_CLASSES
    spacings = set()
    for row, geo in zip(rows, summary["geometry"]):
        geometry, hu, ordered = _series(out / row["path"])
        assert geometry.check_regular() is None
        spacings.add(geometry.spacing)
        assert 0.6 <= geometry.spacing[1] == geometry.spacing[2] <= 1.0
        assert 1.0 <= geometry.spacing[0] <= 5.0
        assert geometry.spacing == pytest.approx(tuple(geo["spacing"]), abs=1e-3)
        ds = ordered[0]
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2" and float(ds.RescaleIntercept) == -1024
        assert float(ds.SpacingBetweenSlices) == pytest.approx(geometry.spacing[0], abs=1e-3)
        assert float(ds.SliceThickness) == pytest.approx(geometry.spacing[0], abs=1e-3)
        assert ds.FrameOfReferenceUID
        labels = np.load(out / row["mask"])
        assert labels.shape == geometry.shape == (SLICES, SIZE, SIZE)
        # the label map is in the series' array order (also for series written head first)
        assert hu[labels == 1].mean() < -700 and hu[labels == 2].mean() > 90
        if row["label"] == "lesion":
            assert hu[labels == 3].mean() > -100
        else:
            assert not np.any(labels == 3)
    assert len(spacings) == len(rows)  # every patient its own geometry
    assert any(g["head_first"] for g in summary["geometry"])
    again = write_synthetic_volumes(out.parent / "again", patients=4, size=SIZE, slices=SLICES,
                                    seed=5)
    first = rows[1]["path"]
    assert sorted((out / first).iterdir())[0].read_bytes() == \
        sorted((out.parent / "again" / first).iterdir())[0].read_bytes()
    assert again["geometry"] == summary["geometry"]


def _bad_inputs(src, dst):
    """A copy of the phantoms plus one series per kind of bad input, and its labels.csv."""
    shutil.copytree(src, dst)
    rows = list(csv.DictReader(open(dst / "labels.csv")))
    good = rows[0]
    whole = dst / rows[2]["mask"]  # a float label map of whole numbers is accepted
    np.save(whole, np.load(whole).astype(np.float32))

    def clone(name):
        folder = dst / name
        shutil.copytree(dst / good["path"], folder / "CT")
        shutil.copy(dst / good["mask"], folder / "labels.npy")
        return folder

    def edit(path, **values):
        ds = pydicom.dcmread(path)
        for key, value in values.items():
            setattr(ds, key, value)
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(path)

    extra = []
    for name in ("gap", "shape", "value", "frac", "orient", "zero", "dup", "small", "junk"):
        folder = clone(name)
        files = sorted((folder / "CT").iterdir())
        if name != "dup":
            for f in files:  # a series of its own (no duplicate SOP instances)
                edit(f)
        if name == "gap":
            files[5].unlink()
        elif name == "shape":
            np.save(folder / "labels.npy", np.zeros((SLICES - 1, SIZE, SIZE), np.uint8))
        elif name == "value":
            labels = np.load(folder / "labels.npy")
            labels[0, 0, 0] = 7
            np.save(folder / "labels.npy", labels)
        elif name == "frac":  # float maps are fine when they hold whole numbers, not else
            labels = np.load(folder / "labels.npy").astype(np.float32)
            labels[1, 2, 3] = 0.5
            np.save(folder / "labels.npy", labels)
        elif name == "orient":
            edit(files[3], ImageOrientationPatient=[1, 0, 0, 0, 0.8, 0.6])
        elif name == "zero":
            for f in files:
                edit(f, PixelSpacing=[0, 0])
        elif name == "junk":
            (folder / "CT" / "notes.dcm").write_text("not an image")
        elif name == "small":  # 2 slices: far thinner than one patch
            ordered = sorted(files, key=lambda f: float(pydicom.dcmread(f).SliceLocation))
            for f in ordered[2:]:
                f.unlink()
            np.save(folder / "labels.npy", np.load(folder / "labels.npy")[:2])
        extra.append([f"{name}/CT", "normal", f"{name}/labels.npy"])
    (dst / "seg").mkdir()
    (dst / "seg" / "labels.nii.gz").write_bytes(b"not really")
    extra.append([good["path"].replace(good["path"].split("/")[0], "seg-row"), "normal",
                  "seg/labels.nii.gz"])
    shutil.copytree(dst / good["path"], dst / "seg-row" / "CT")
    for f in sorted((dst / "seg-row" / "CT").iterdir()):
        edit(f)
    with open(dst / "labels.csv", "a", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(extra)
    return dst


def test_ingest_native_volumes_records_geometry_and_rejects_bad_input(phantom_volumes, tmp_path):
    src, summary = phantom_volumes
    dicom_dir = _bad_inputs(src, tmp_path / "dicom")
    ds = tmp_path / "ds"
    result = ingest_volumes(dicom_dir, dicom_dir / "labels.csv", ds, spacing="auto", folds=2,
                            key_file=tmp_path / "key")
    n_files = sum(1 for f in dicom_dir.rglob("*.dcm"))
    assert result["inputs"] == n_files == result["loaded"] + result["rejected"]
    assert result["records"] == 4 and result["loaded"] == 4 * SLICES
    rejected = list(csv.DictReader(open(ds / "rejected.csv")))
    by_folder = {}
    for r in rejected:
        by_folder.setdefault(r["path"].split("/")[0], set()).add(r["reason"])
    reasons = {k: " ".join(v) for k, v in by_folder.items()}
    assert "uneven slices" in reasons["gap"]
    assert "label map shape 11x48x48 does not match its series" in reasons["shape"]
    assert "label value 7 not in the class list" in reasons["value"]
    assert "fractional or non-finite values" in reasons["frac"]
    assert "mixed orientations" in reasons["orient"]
    assert "PixelSpacing must be 2 positive numbers" in reasons["zero"]
    assert "duplicate series" in reasons["dup"]
    assert "volume too small for one patch" in reasons["small"]
    junk = {r["path"]: r["reason"] for r in rejected if r["path"].startswith("junk/")}
    assert junk.pop("junk/CT/notes.dcm") == "not DICOM" and len(junk) == SLICES
    assert set(junk.values()) == {"series has unreadable files (1 of 13: not DICOM)"}
    try:
        import medzoo.datasets.annotations  # noqa: F401 - its own tests cover NIfTI reading
    except ImportError:
        assert reasons["seg-row"] == "annotations reader not available"
    assert sum(1 for r in rejected if r["path"].startswith("gap/")) == SLICES - 1

    written = b"".join(f.read_bytes() for f in ds.rglob("*") if f.is_file())
    leaked = [phi for phi in summary["phi"] if phi.encode() in written]
    assert not leaked  # no name, ID, date, UID or institution of the phantoms in DS
    info = json.loads((ds / "dataset.json").read_text())
    plan = json.loads((ds / "plan.json").read_text())
    assert info["kind"] == "volume" and info["spacing_mode"] == "native"
    assert info["task"] == "segmentation" and info["has_mask"] is True
    assert info["label_classes"] == LABEL_CLASSES == plan["label_classes"]
    assert info["plan"] == plan and info["image_size"] == plan["median_shape"]
    assert plan["normalization"]["scheme"] == "ct"
    fingerprint = json.loads((ds / "fingerprint.json").read_text())
    assert len(fingerprint["spacings"]) == 5  # the 4 phantoms + "small" (rejected in pass 2)
    for geo in summary["geometry"]:
        assert any(s == pytest.approx(geo["spacing"], abs=1e-4) for s in fingerprint["spacings"])
    assert plan["median_spacing"] == pytest.approx(
        np.median(fingerprint["spacings"], axis=0).tolist(), abs=1e-4)
    index = list(csv.DictReader(open(ds / "index.csv")))
    rows = {r["record_id"]: r for r in index}
    labels_rows = list(csv.DictReader(open(dicom_dir / "labels.csv")))
    for rec in records.read_records(ds):
        row = labels_rows[int(rows[rec["record_id"]]["row"]) - 1]
        geometry, hu, ordered = _series(dicom_dir / row["path"])
        assert rec["spacing"] == pytest.approx(plan["target_spacing"], rel=1e-6)
        assert rec["original_shape"].tolist() == list(geometry.shape)
        assert rec["original_spacing"] == pytest.approx(geometry.spacing, abs=1e-4)
        first = [float(v) for v in ordered[0].ImagePositionPatient]  # the lowest slice
        assert rec["origin"] == pytest.approx(first, abs=1e-3)
        assert rec["original_origin"] == pytest.approx(first, abs=1e-3)
        assert rec["direction"] == pytest.approx(geometry.direction(), abs=1e-6)
        expected = [max(round(n * s / t), p) for n, s, t, p in zip(
            geometry.shape, geometry.spacing, plan["target_spacing"], plan["patch_size"])]
        assert list(rec["mask"].shape) == expected and rec["image"].shape == (*expected, 1)
        source = np.load(dicom_dir / row["mask"])
        kept = set(np.unique(rec["mask"]).tolist())
        assert kept == set(np.unique(source).tolist())  # integer classes, none lost
        image = rec["image"][..., 0]
        assert image[rec["mask"] == 1].mean() < image[rec["mask"] == 2].mean() - 1.0
        # back on the DICOM grid (as a prediction would go): the source label map again
        back = labels_to_shape(rec["mask"], rec["spacing"], rec["original_shape"],
                               rec["original_spacing"], n_classes=4)
        assert back.shape == source.shape and np.mean(back == source) > 0.99
        lung_dice = 2 * np.sum((back == 1) & (source == 1)) / (np.sum(back == 1)
                                                               + np.sum(source == 1))
        assert lung_dice > 0.95


def test_zscore_normalisation_scales_each_volume_alone(phantom_volumes, tmp_path):
    src, _ = phantom_volumes
    summary = ingest_volumes(src, src / "labels.csv", tmp_path / "ds", spacing="auto", folds=2,
                             normalization="zscore", patch_size="4,16,16",
                             key_file=tmp_path / "key")
    assert summary["plan"]["normalization"] == {"scheme": "zscore"}
    assert set(summary["plan"]["overrides"]) == {"normalization", "patch_size"}
    for rec in records.read_records(tmp_path / "ds"):  # resampling moves them a little
        assert abs(float(rec["image"].mean())) < 0.05
        assert abs(float(rec["image"].std()) - 1.0) < 0.05


def test_cli_synth_volumes_ingest_and_plan(tmp_path):
    env = dict(os.environ)
    run = [sys.executable, "-m", "medzoo", "data"]
    dicom_dir, ds = tmp_path / "dicom", tmp_path / "ds"
    done = subprocess.run([*run, "synth", str(dicom_dir), "--volumes", "--patients", "3",
                           "--size", "32", "--slices", "8", "--seed", "2"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert len(list(dicom_dir.rglob("*.dcm"))) == 24
    done = subprocess.run([*run, "ingest", str(dicom_dir), "--labels",
                           str(dicom_dir / "labels.csv"), "--out", str(ds), "--spacing",
                           "2,1,1", "--folds", "2", "--patch-size", "8,16,16",
                           "--key-file", str(tmp_path / "key")],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "ingested 24 of 24 inputs (3 volumes), rejected 0" in done.stdout
    plan = json.loads((ds / "plan.json").read_text())
    assert plan["target_spacing"] == [2.0, 1.0, 1.0] and plan["patch_size"] == [8, 16, 16]
    assert set(plan["overrides"]) == {"target_spacing", "patch_size"}
    done = subprocess.run([*run, "plan", str(dicom_dir), "--labels", str(dicom_dir / "labels.csv"),
                           "--spacing", "2,1,1", "--patch-size", "8,16,16", "--json"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    preview = json.loads(done.stdout)
    assert preview["target_spacing"] == plan["target_spacing"]
    assert preview["normalization"] == plan["normalization"]
    done = subprocess.run([*run, "plan", str(ds), "--batch-size", "5", "--json"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["batch_size"] == 5
    done = subprocess.run([*run, "ingest", str(dicom_dir), "--labels",
                           str(dicom_dir / "labels.csv"), "--out", str(tmp_path / "x"),
                           "--spacing", "0,1,1"], capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert "--spacing must be auto or three positive numbers" in done.stderr
    assert not (tmp_path / "x").exists()


def test_spacing_refuses_fixed_grid_and_2d_options(phantom_volumes, tmp_path):
    from medzoo.datasets.ingest import ingest
    from medzoo.errors import InputError

    src, _ = phantom_volumes
    with pytest.raises(InputError, match="not both"):
        ingest(src, src / "labels.csv", tmp_path / "a", spacing="auto", volumes="4,16,16")
    with pytest.raises(InputError, match="takes no --denoise, --window"):
        ingest(src, src / "labels.csv", tmp_path / "b", spacing="auto", window="lung",
               denoise="median")
    with pytest.raises(InputError, match="need class names"):
        (tmp_path / "d").mkdir()
        shutil.copytree(src, tmp_path / "d" / "dicom")
        (tmp_path / "d" / "dicom" / "label_classes.json").unlink()
        ingest_volumes(tmp_path / "d" / "dicom", tmp_path / "d" / "dicom" / "labels.csv",
                       tmp_path / "e", key_file=tmp_path / "key")
    assert not any((tmp_path / n).exists() for n in ("a", "b", "e"))


def test_workers_write_the_same_records_and_killed_work_is_cleared(phantom_volumes, tmp_path):
    src, _ = phantom_volumes
    killed = tmp_path / ".ds1.volumes-killed"  # what a killed ingest leaves: removed
    (killed / "shards").mkdir(parents=True)
    (killed / ".lock").touch()
    shards = []
    for workers in (1, 2):
        out = tmp_path / f"ds{workers}"
        ingest_volumes(src, src / "labels.csv", out, folds=2, key_file=tmp_path / "key",
                       workers=workers)
        shards.append(b"".join(p.read_bytes() for p in records.shard_paths(out)))
        assert (out / "index.csv").read_text() == (tmp_path / "ds1" / "index.csv").read_text()
        info = json.loads((out / "dataset.json").read_text())
        assert info["domain"] == json.loads((tmp_path / "ds1" / "dataset.json").read_text())[
            "domain"]  # the domain too: deterministic, whatever the workers
    assert shards[0] == shards[1] and len(shards[0]) > 4 * SIZE * SIZE * 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds1", "ds2", "key"]
    assert not (tmp_path / "ds1" / ".lock").exists()


def test_native_ingest_records_the_domain_of_every_slice_of_every_series(phantom_volumes,
                                                                          tmp_path):
    """dataset.json ``domain`` as 2D ingest writes it, over every slice of the 4 series (their
    spacings differ per patient), plus the slice spacing range."""
    src, _ = phantom_volumes
    ingest_volumes(src, src / "labels.csv", tmp_path / "ds", folds=2, key_file=tmp_path / "key")
    domain = json.loads((tmp_path / "ds" / "dataset.json").read_text())["domain"]
    folders = sorted({f.parent for f in src.rglob("*.dcm")})
    slices = [pydicom.dcmread(f, stop_before_pixels=True) for d in folders
              for f in sorted(d.glob("*.dcm"))]
    geometries = [series_geometry([pydicom.dcmread(f, stop_before_pixels=True)
                                   for f in sorted(d.glob("*.dcm"))]) for d in folders]
    assert len(folders) == 4 and domain["images"] == len(slices) == 4 * SLICES
    assert domain["modalities"] == {"CT": 4 * SLICES}
    assert domain["photometric_interpretations"] == {"MONOCHROME2": 4 * SLICES}
    assert list(domain["sop_classes"]) == ["1.2.840.10008.5.1.4.1.1.2"]
    spacing = [float(v) for ds in slices for v in ds.PixelSpacing]
    assert domain["pixel_spacing_mm"] == pytest.approx([min(spacing), max(spacing)], abs=1e-4)
    steps = [g.slice_spacing for g in geometries]
    assert min(steps) < max(steps)  # the phantoms vary: the range spans all 4, not the first
    assert domain["slice_spacing_mm"] == pytest.approx([min(steps), max(steps)], abs=1e-4)
    assert domain["rows"] == [SIZE, SIZE] and domain["columns"] == [SIZE, SIZE]
    hu = np.concatenate([_series(d)[1].ravel() for d in folders])
    intensity = domain["intensity"]
    for p in ("p1", "p50", "p99"):  # the asinh bins: within 2 % of the value (or 1 HU)
        exact = float(np.percentile(hu, float(p[1:])))
        assert intensity[p] == pytest.approx(exact, rel=0.05, abs=2.0)
