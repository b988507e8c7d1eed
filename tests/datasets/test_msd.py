"""`medzoo data ingest --layout msd`: Decathlon (4D multi-channel) and nnU-Net v2 (_0000 channel
files) folders written with nibabel become native-volume dataset dirs; every case is loaded or
rejected with its reason; folds are patient-grouped; no case name reaches the dataset dir."""

import csv
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from medzoo.datasets import records
from medzoo.datasets.domain import describe
from medzoo.datasets.msd import ingest_msd
from medzoo.datasets.msd_domain import channel_modality
from medzoo.deploy import domain as deploy_domain

SHAPE = (20, 16, 6)  # NIfTI voxel axes (x, y, z)
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _affine(shift=(0.0, 0.0, 0.0)):
    """RAS affine of an axial LPS grid, 0.8 × 0.7 × 2.5 mm, as dcm2niix writes it."""
    lps = np.eye(4)
    lps[:3, :3] = np.diag([0.8, 0.7, 2.5])
    lps[:3, 3] = np.array([-8.0, -5.0, -7.5]) + shift
    return LPS_TO_RAS @ lps


def _case(seed):
    """A (x, y, z) image with a box 'organ' (1) and a smaller 'tumour' (2) inside it."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(SHAPE, np.uint8)
    x0, y0 = 3 + seed % 4, 3 + seed % 3
    labels[x0:x0 + 9, y0:y0 + 7, 1:5] = 1
    if seed % 2:
        labels[x0 + 2:x0 + 5, y0 + 2:y0 + 4, 2:4] = 2
    image = (labels * 40.0 + rng.normal(0, 5, SHAPE)).astype(np.float32)
    return image, labels


def _save(array, path, affine=None):
    img = nib.Nifti1Image(array, _affine() if affine is None else affine)
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    nib.save(img, str(path))


@pytest.fixture(scope="module")
def msd_dir(tmp_path_factory):
    """MSD layout, 2 MR channels as 4D images; 7 cases of which 2 are bad, plus a ._ file."""
    root = tmp_path_factory.mktemp("Task99_Phantom")
    (root / "imagesTr").mkdir()
    (root / "labelsTr").mkdir()
    for n in range(7):
        image, labels = _case(n)
        four_d = np.stack([image, image * 0.5 + 100], axis=-1)
        _save(four_d, root / "imagesTr" / f"phantom_{n:03d}.nii.gz")
        affine = _affine(shift=(0, 0, 1.5)) if n == 5 else None  # label map 1.5 mm off
        _save(labels, root / "labelsTr" / f"phantom_{n:03d}.nii.gz", affine)
    bad = root / "imagesTr" / "phantom_006.nii.gz"
    bad.write_bytes(bad.read_bytes()[:300])  # truncated
    (root / "imagesTr" / "._phantom_000.nii.gz").write_bytes(b"\x00\x05\x16\x07 mac metadata")
    (root / "dataset.json").write_text(json.dumps({
        "name": "Phantom", "modality": {"0": "FLAIR", "1": "T1w"},
        "labels": {"0": "background", "1": "organ", "2": "tumour"},
        "numTraining": 7, "training": [
            {"image": f"./imagesTr/phantom_{n:03d}.nii.gz",
             "label": f"./labelsTr/phantom_{n:03d}.nii.gz"} for n in range(7)]}))
    return root


def _read(ds):
    out = []
    for path in records.shard_paths(ds):
        for data in records.iter_tfrecord(path):
            out.append(records.decode_example(data))
    return out


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_msd_multichannel_ingest(msd_dir, tmp_path):
    ds = tmp_path / "ds"
    summary = ingest_msd(msd_dir, ds, folds=2, seed=0, key_file=tmp_path / "key")
    assert (summary["inputs"], summary["loaded"], summary["rejected"]) == (7, 5, 2)
    info = json.loads((ds / "dataset.json").read_text())
    assert info["kind"] == "volume" and info["spacing_mode"] == "native"
    assert info["task"] == "segmentation" and info["source_layout"] == "msd"
    assert info["channels"] == 2 and info["channel_names"] == ["FLAIR", "T1w"]
    assert info["label_classes"] == ["background", "organ", "tumour"]
    assert info["classes"] == ["organ", "tumour"] and info["image_size"] == [6, 16, 20]
    plan = json.loads((ds / "plan.json").read_text())
    assert plan["normalization"] == {"scheme": "zscore"}
    np.testing.assert_allclose(plan["target_spacing"], [2.5, 0.7, 0.8])
    rejected = {r["path"]: r["reason"] for r in _csv(ds / "rejected.csv")}
    assert rejected == {
        "imagesTr/phantom_005.nii.gz":
            "label map affine does not match the image: offset by up to 1.50 mm",
        "imagesTr/phantom_006.nii.gz": "NIfTI unreadable or truncated: ImageFileError"}
    recs = _read(ds)
    index = _csv(ds / "index.csv")
    assert len(recs) == len(index) == 5
    for rec, row, n in zip(recs, index, (0, 1, 2, 3, 4)):
        parsed = records.parse_record(rec)
        image, labels = _case(n)
        assert parsed["image"].shape == (6, 16, 20, 2)
        np.testing.assert_array_equal(parsed["mask"], labels.transpose(2, 1, 0))
        # channel 1 is an affine function of channel 0: per-channel z-scores coincide
        np.testing.assert_allclose(parsed["image"][..., 0], parsed["image"][..., 1], atol=1e-4)
        assert abs(parsed["image"][..., 0].mean()) < 1e-4
        np.testing.assert_allclose(parsed["spacing"], [2.5, 0.7, 0.8])
        np.testing.assert_allclose(rec["origin"], [-8.0, -5.0, -7.5])
        np.testing.assert_allclose(np.reshape(rec["direction"], (3, 3)),
                                   [[0, 0, 1], [0, 1, 0], [1, 0, 0]], atol=1e-12)
        assert info["classes"][int(row["label"])] == ("tumour" if n % 2 else "organ")
    folds = {}
    for row in index:
        assert folds.setdefault(row["patient"], row["fold"]) == row["fold"]
    assert len(folds) == 5
    _check_mr_domain(info["domain"], [_case(n)[0] for n in range(5)])
    written = "".join(p.read_text(errors="ignore") for p in ds.iterdir() if p.is_file()
                      and p.name != "rejected.csv")
    assert "phantom_" not in written and "Phantom" not in written


def _assert_percentiles(intensity, values):
    """The domain's percentiles are those of ``values`` to within its asinh bins (1.6 %)."""
    for p in ("p1", "p50", "p99"):
        expected = np.percentile(values, float(p[1:]))
        assert abs(intensity[p] - expected) <= 0.02 * abs(expected) + 0.5, (p, expected)


def _check_mr_domain(domain, images):
    """The MSD fixture's domain: FLAIR and T1w are MR; every slice of both channels of the 5
    written cases counted (not the 2 rejected); grid facts of DICOM's schema; intensities as
    stored (channel 1 = 0.5 × channel 0 + 100), not the z-scores written to the records."""
    assert domain["images"] == 5 * 2 * 6 and domain["modalities"] == {"MR": 60}
    assert domain["channels"] == [{"name": "FLAIR", "modality": "MR"},
                                  {"name": "T1w", "modality": "MR"}]
    assert domain["photometric_interpretations"] == {"MONOCHROME2": 60}
    assert domain["samples_per_pixel"] == [1]
    assert domain["pixel_spacing_mm"] == [0.7, 0.8] and domain["slice_spacing_mm"] == [2.5, 2.5]
    assert domain["rows"] == [16, 16] and domain["columns"] == [20, 20]
    assert domain["sop_classes"] == {} and domain["slice_thickness_mm"] is None
    values = np.concatenate([np.r_[im.ravel(), im.ravel() * 0.5 + 100] for im in images])
    intensity = domain["intensity"]
    assert intensity["unit"] == "value as stored in the NIfTI (after scl_slope / scl_inter)"
    assert intensity["pixels_sampled"] == values.size  # 6 slices: all sampled, every pixel
    _assert_percentiles(intensity, values)
    lo, hi = intensity["image_median"]  # slice medians: channel 0 ≈ 0, channel 1 ≈ 100
    assert -3 < lo < 3 and 98 < hi < 104
    assert describe(domain) == ("MR; MONOCHROME2; pixel spacing 0.7–0.8 mm; slice spacing "
                                "2.5 mm; 16 × 20 px; modality values p1–p99 "
                                f"{intensity['p1']:.4g} – {intensity['p99']:.4g}")
    # predict's check (medzoo.deploy.domain) reads it: a CT series at 3 mm in-plane is refused
    ct = {"modalities": ["CT"], "photometric": ["MONOCHROME2"], "samples": [1],
          "pixel_spacing": [3.0, 3.0], "rows": [16, 16], "columns": [20, 20], "median": 0.0}
    assert deploy_domain.reasons(domain, ct) == [
        "modality CT (trained on MR)",
        "pixel spacing 3 mm outside 0.35–1.6 mm (training 0.7–0.8 mm, ÷/× 2)"]


def test_nnunet_v2_ct_via_cli(tmp_path):
    root = tmp_path / "Dataset001_Phantom"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for n in range(5):
        image, labels = _case(n)
        _save(image * 10 - 900, root / "imagesTr" / f"case{n}_0000.nii.gz")
        _save(labels, root / "labelsTr" / f"case{n}.nii.gz")
    (root / "labelsTr" / "case4.nii.gz").unlink()  # an unlabelled case: loaded, zeros mask
    image, labels = _case(3)
    labels[0, 0, 0] = 7
    _save(labels, root / "labelsTr" / "case3.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1, "tumour": 2},
        "numTraining": 5, "file_ending": ".nii.gz"}))
    ds = tmp_path / "ds"
    proc = subprocess.run([sys.executable, "-m", "medzoo", "data", "ingest", "--layout", "msd",
                           str(root), "--out", str(ds), "--folds", "2",
                           "--key-file", str(tmp_path / "key")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ingested 4 of 5 cases (nnunet_v2, 1 channel(s)), rejected 1" in proc.stdout
    assert _csv(ds / "rejected.csv") == [{
        "row": "4", "path": "imagesTr/case3_0000.nii.gz",
        "reason": "label value 7 outside the 3 labels of dataset.json"}]
    info = json.loads((ds / "dataset.json").read_text())
    assert info["source_layout"] == "nnunet_v2" and info["channels"] == 1
    assert info["plan"]["normalization"]["scheme"] == "ct"
    recs = [records.parse_record(r) for r in _read(ds)]
    assert [r["image"].shape for r in recs] == [(6, 16, 20, 1)] * 4
    assert not recs[-1]["mask"].any()  # case4: no label map
    index = _csv(ds / "index.csv")
    assert [r["has_mask"] for r in index] == ["1", "1", "1", "0"]
    domain = info["domain"]  # CT: modality values are HU as stored (image × 10 − 900)
    assert domain["modalities"] == {"CT": 24} and domain["slice_spacing_mm"] == [2.5, 2.5]
    _assert_percentiles(domain["intensity"],
                        np.concatenate([_case(n)[0].ravel() * 10 - 900 for n in (0, 1, 2, 4)]))
    assert "modality unknown" not in proc.stderr


def test_not_a_layout(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "medzoo", "data", "ingest", "--layout", "msd",
                           str(tmp_path), "--out", str(tmp_path / "ds")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "expected an MSD / nnU-Net raw folder with imagesTr/" in proc.stderr


def test_segment_map_flag_is_checked(tmp_path):
    """`--segment-map` (ingest, evaluate) is parsed up front: a bad item is a usage error."""
    proc = subprocess.run([sys.executable, "-m", "medzoo", "data", "ingest", str(tmp_path),
                           "--labels", "x.csv", "--out", str(tmp_path / "ds"), "--segment-map",
                           "Left Lung=lung,Nodule"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "must be NAME=CLASS items separated by commas. Received: 'Nodule'" in proc.stderr


def _affine_z(z_mm):
    affine = _affine()
    affine[:3, 2] *= z_mm / 2.5
    return affine


def test_msd_cases_resampled_to_the_plan(tmp_path):
    """Planning and resampling are DICOM volume ingest's: a case at twice the slice spacing is
    resampled to the plan's target (image smooth, labels label-wise), keeps its source grid in
    original_*, and an explicit --spacing resamples every case."""
    root = tmp_path / "Task98_Spacing"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for n in range(4):
        image, labels = _case(n)
        if n == 3:  # every other slice, 5 mm apart: its slice k is slice 2k of the full case
            image, labels = image[:, :, ::2], labels[:, :, ::2]
        affine = _affine_z(5.0 if n == 3 else 2.5)
        _save(image * 10 - 900, root / "imagesTr" / f"case{n}_0000.nii.gz", affine)
        _save(labels, root / "labelsTr" / f"case{n}.nii.gz", affine)
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1, "tumour": 2}}))
    ds = tmp_path / "ds"
    summary = ingest_msd(root, ds, folds=2, key_file=tmp_path / "key")
    assert (summary["inputs"], summary["loaded"], summary["rejected"]) == (4, 4, 0)
    plan = json.loads((ds / "plan.json").read_text())
    assert "resampled" not in plan and plan["resampling"]["labels"] == "label-wise linear"
    np.testing.assert_allclose(plan["target_spacing"], [2.5, 0.7, 0.8])
    fingerprint = json.loads((ds / "fingerprint.json").read_text())
    np.testing.assert_allclose(fingerprint["spacings"][3], [5.0, 0.7, 0.8], rtol=1e-6)
    assert fingerprint["shapes"][3] == [3, 16, 20]
    recs = _read(ds)
    parsed = [records.parse_record(r) for r in recs]
    assert [p["image"].shape for p in parsed] == [(6, 16, 20, 1)] * 4
    np.testing.assert_allclose(recs[3]["original_spacing"], [5.0, 0.7, 0.8], rtol=1e-6)
    assert list(recs[3]["original_shape"]) == [3, 16, 20]
    np.testing.assert_allclose(recs[3]["origin"], recs[3]["original_origin"])
    # the stored grid keeps voxel (0, 0, 0): stored slice 2k lies on source slice k
    image, labels = _case(3)
    mask = parsed[3]["mask"]
    np.testing.assert_array_equal(mask[0:5:2], labels.transpose(2, 1, 0)[0:5:2])
    assert set(np.unique(mask).tolist()) == {0, 1, 2}  # label-wise: no fractional classes
    norm = plan["normalization"]
    expected = (np.clip(image * 10 - 900, *norm["clip"]) - norm["mean"]) / norm["std"]
    np.testing.assert_allclose(parsed[3]["image"][0:5:2, ..., 0],
                               expected.transpose(2, 1, 0)[0:5:2], atol=1e-3)

    coarse = tmp_path / "coarse"
    ingest_msd(root, coarse, spacing="2.5,1.4,1.6", patch_size="4,8,8", folds=2,
               key_file=tmp_path / "key")
    parsed = [records.parse_record(r) for r in _read(coarse)]
    assert [p["image"].shape for p in parsed] == [(6, 8, 10, 1)] * 4
    np.testing.assert_allclose(parsed[0]["spacing"], [2.5, 1.4, 1.6])
    assert set(np.unique(parsed[1]["mask"]).tolist()) <= {0, 1, 2}
    assert parsed[1]["mask"].any()
    plan = json.loads((coarse / "plan.json").read_text())
    assert plan["overrides"]["target_spacing"] == [2.5, 1.4, 1.6]


def test_case_too_small_for_the_patch_is_rejected(tmp_path):
    """A case that passes its checks but covers under half a patch once resampled is rejected
    in the write pass with its reason: inputs = loaded + rejected still holds."""
    root = tmp_path / "Dataset002_Small"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for n in range(4):
        image, labels = _case(n)
        if n == 2:
            image, labels = image[:6, :6], labels[:6, :6]
        _save(image, root / "imagesTr" / f"case{n}_0000.nii.gz")
        _save(labels, root / "labelsTr" / f"case{n}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T2"}, "labels": {"background": 0, "organ": 1, "tumour": 2}}))
    ds = tmp_path / "ds"
    summary = ingest_msd(root, ds, patch_size="4,16,16", folds=2, key_file=tmp_path / "key")
    assert (summary["inputs"], summary["loaded"], summary["rejected"]) == (4, 3, 1)
    assert _csv(ds / "rejected.csv") == [{
        "row": "3", "path": "imagesTr/case2_0000.nii.gz",
        "reason": "volume too small for one patch (resampled 6x6x6 voxels, patch 4x16x16; "
                  "padding would fill more than half)"}]
    recs = [records.parse_record(r) for r in _read(ds)]
    assert [r["image"].shape for r in recs] == [(6, 16, 20, 1)] * 3


def test_channel_names_without_a_modality_leave_it_unknown_and_say_so(tmp_path, capsys):
    """nnU-Net normalisation names (noNorm, zscore) are no modality: the domain records the
    grid and intensities, no modality, and ingest says so; MR sequence names map to MR."""
    assert [channel_modality(n) for n in ("CT", "MRI", "MR", "T2", "ADC", "t1gd", "T2 FLAIR",
                                          "PET", "noNorm", "zscore", "rescale_to_0_1")] == [
        "CT", "MR", "MR", "MR", "MR", "MR", "MR", "PT", None, None, None]
    root = tmp_path / "Dataset003_Unknown"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for n in range(2):
        image, labels = _case(n)
        _save(image, root / "imagesTr" / f"case{n}_0000.nii.gz")
        _save(image + 5, root / "imagesTr" / f"case{n}_0001.nii.gz")
        _save(labels, root / "labelsTr" / f"case{n}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T2", "1": "noNorm"},
        "labels": {"background": 0, "organ": 1, "tumour": 2}}))
    ingest_msd(root, tmp_path / "ds", folds=2, key_file=tmp_path / "key")
    assert ("medzoo ingest: domain: modality unknown for channel(s) 'noNorm' (expected a "
            "dataset.json channel name saying CT, MR / MRI, an MR sequence such as T2 or ADC, "
            "or PET); predict cannot check the modality") in capsys.readouterr().err
    domain = json.loads((tmp_path / "ds" / "dataset.json").read_text())["domain"]
    assert domain["images"] == 2 * 2 * 6 and domain["modalities"] == {"MR": 12}
    assert domain["channels"] == [{"name": "T2", "modality": "MR"},
                                  {"name": "noNorm", "modality": "unknown"}]
    assert domain["pixel_spacing_mm"] == [0.7, 0.8] and domain["rows"] == [16, 16]
    only_unknown = dict(domain, modalities={})
    assert describe(only_unknown).startswith("modality unknown; MONOCHROME2; pixel spacing")
