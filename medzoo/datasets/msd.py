"""Medical Segmentation Decathlon / nnU-Net raw folders → a dataset dir of native volumes.

Two layouts are recognised from the files:

* **MSD** (Decathlon tarballs): ``imagesTr/CASE.nii.gz`` (4D when a case has several channels,
  the last axis), ``labelsTr/CASE.nii.gz``, ``dataset.json`` with ``modality``
  (``{"0": "FLAIR", ...}``) and ``labels`` (``{"0": "background", "1": "edema", ...}``).
* **nnU-Net v2**: ``imagesTr/CASE_0000.nii.gz``, ``CASE_0001…`` (one file per channel),
  ``labelsTr/CASE.nii.gz``, ``dataset.json`` with ``channel_names`` and ``labels``
  (``{"background": 0, "lung": 1}``).

The guarantees are those of DICOM ingest: every case is an input, and is either loaded (one
record) or rejected with one line in rejected.csv (inputs = loaded + rejected); folds are grouped
by patient (one case = one patient, keyed by an HMAC pseudonym of the case name); nothing in the
dataset dir names a file or a case. Files whose names start with ``.`` (``._CASE.nii.gz``: macOS
metadata shipped inside the Decathlon tarballs) are not cases.

Records follow the native-volume contract (docs/internals.md "Native-spacing volumes"): ``image``
``D×H×W×C`` float32 normalised per the plan, ``mask`` ``D×H×W`` class indices, ``spacing``
(each case's own, z y x mm), ``origin``, ``direction`` (LPS) and the ``original_*`` grid (the
same: nothing is resampled here). The array axes are the NIfTI's voxel axes reversed
(``data[i, j, k]`` → ``array[k, j, i]``), so ``direction`` may be any orthonormal matrix.
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from medzoo import fsio
from medzoo.datasets import deid, manifest, records, splits
from medzoo.datasets.annotations import AnnotationError
from medzoo.datasets.nifti import LPS_TO_RAS, load_nifti
from medzoo.errors import InputError

SCHEMA_VERSION = 1
#: Channels of one case (and its label map) must share the grid to within this (mm).
GRID_TOLERANCE_MM = 0.1
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})\.nii(\.gz)?$")
_CT_NAMES = {"ct"}
#: Interim plan values until medzoo.datasets.plan decides them (see docs/annotations.md).
MAX_PATCH = (64, 128, 128)
PATCH_MULTIPLE = 16


class CaseRejected(Exception):
    """One case cannot be used; the message is the reason for rejected.csv."""


def _nifti_name(name: str) -> bool:
    return name.endswith((".nii", ".nii.gz")) and not name.startswith(".")


def _case_name(name: str) -> str:
    return name[:-7] if name.endswith(".nii.gz") else name[:-4]


def read_layout(root) -> dict:
    """The cases, channel names and label classes of an MSD / nnU-Net raw folder.

    Returns
    -------
    dict
        ``layout`` ("msd" or "nnunet_v2"), ``channel_names``, ``label_classes`` (index order,
        ``background`` first), ``cases``: ``[{"name", "row", "images": [Path], "label": Path or
        None, "problem": str or None}]`` sorted by name.

    Raises
    ------
    InputError
        No ``imagesTr``, no or unreadable ``dataset.json``, labels that are not a 0..N mapping.
    """
    root = Path(root)
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    if not images_dir.is_dir():
        raise InputError(f"{root}: expected an MSD / nnU-Net raw folder with imagesTr/. "
                         "Received: no imagesTr folder")
    try:
        info = json.loads((root / "dataset.json").read_text())
    except FileNotFoundError:
        raise InputError(f"{root}: expected dataset.json beside imagesTr/. Received: none") from None
    except (OSError, ValueError):
        raise InputError(f"{root}/dataset.json: expected JSON. Received: unreadable text") from None
    label_classes = _label_classes(info.get("labels"))
    files = sorted(p.name for p in images_dir.iterdir() if _nifti_name(p.name))
    grouped: dict[str, dict[int, str]] = collections.defaultdict(dict)
    for name in files:
        m = _CHANNEL.match(name)
        if m:
            grouped[m["case"]][int(m["channel"])] = name
    nnunet = "channel_names" in info or (bool(files) and all(_CHANNEL.match(n) for n in files))
    names_json = info.get("channel_names") or info.get("modality") or {}
    channel_names = [str(v) for _, v in sorted((int(k), v) for k, v in names_json.items())]
    cases = []
    if nnunet:
        n_channels = len(channel_names) or max((max(v) + 1 for v in grouped.values()), default=1)
        channel_names = channel_names or [f"channel{c}" for c in range(n_channels)]
        loose = [n for n in files if not _CHANNEL.match(n)]
        for case, chans in sorted(grouped.items()):
            missing = [c for c in range(n_channels) if c not in chans]
            extra = [c for c in chans if c >= n_channels]
            problem = None
            if missing:
                problem = f"channel file _{missing[0]:04d} missing ({n_channels} channels expected)"
            elif extra:
                problem = f"channel file _{extra[0]:04d} beyond the {n_channels} channel_names"
            cases.append({"name": case, "images": [images_dir / chans[c] for c in sorted(chans)],
                          "problem": problem})
        for name in loose:
            cases.append({"name": _case_name(name), "images": [images_dir / name],
                          "problem": "image name lacks the _NNNN channel suffix of nnU-Net v2"})
    else:
        for name in files:
            cases.append({"name": _case_name(name), "images": [images_dir / name],
                          "problem": None})
    cases.sort(key=lambda c: c["name"])
    for row, case in enumerate(cases, start=1):
        case["row"] = row
        label = None
        for suffix in (".nii.gz", ".nii"):
            if (labels_dir / f"{case['name']}{suffix}").is_file():
                label = labels_dir / f"{case['name']}{suffix}"
                break
        case["label"] = label
    return {"layout": "nnunet_v2" if nnunet else "msd", "channel_names": channel_names,
            "label_classes": label_classes, "cases": cases}


def _label_classes(labels) -> list:
    """``{"0": "background", ...}`` (MSD) or ``{"background": 0, ...}`` (nnU-Net v2) → names."""
    if not isinstance(labels, dict) or not labels:
        raise InputError("dataset.json: expected `labels` mapping values to class names. "
                         f"Received: {labels!r}")
    try:
        if all(str(k).isdigit() for k in labels):
            pairs = {int(k): str(v) for k, v in labels.items()}
        else:
            pairs = {int(v): str(k) for k, v in labels.items()}
    except (TypeError, ValueError):
        raise InputError("dataset.json: `labels` must map each class to one integer (nnU-Net "
                         "region labels are not supported). Received: "
                         f"{json.dumps(labels)[:120]}") from None
    if sorted(pairs) != list(range(len(pairs))):
        raise InputError(f"dataset.json: label values must be 0..N. Received: {sorted(pairs)}")
    names = [pairs[v] for v in range(len(pairs))]
    names[0] = "background"
    return names


def _grid(affine: np.ndarray, shape) -> dict:
    """Spacing / origin / direction (LPS, array axes z y x = NIfTI axes reversed) of a NIfTI grid."""
    lps = LPS_TO_RAS @ affine  # the flip is its own inverse: RAS → LPS
    axes = lps[:3, :3][:, ::-1]  # columns: steps along the array axes (k, j, i)
    spacing = np.sqrt((axes ** 2).sum(0))
    return {"spacing": [float(s) for s in spacing], "origin": [float(v) for v in lps[:3, 3]],
            "direction": (axes / spacing).T.ravel().tolist(),
            "shape": [int(s) for s in shape[:3][::-1]]}


def _corner_gap_mm(a: np.ndarray, b: np.ndarray, shape) -> float:
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                        for k in (0, shape[2] - 1)])
    return float(np.linalg.norm((corners @ (a - b).T)[:, :3], axis=1).max())


def load_case(case, n_channels: int, label_classes) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(image (D, H, W, C) float32, labels (D, H, W) uint8 or None, grid)`` of one case.

    Raises
    ------
    CaseRejected
        Unreadable file, wrong dimensionality or channel count, channels or label map on
        another grid (offset stated in mm), label values outside the class list.
    """
    if case["problem"]:
        raise CaseRejected(case["problem"])
    channels, affine0 = [], None
    for path in case["images"]:
        try:
            data, affine = load_nifti(path)
        except AnnotationError as e:
            raise CaseRejected(str(e)) from None
        data = np.asarray(data, dtype=np.float32)
        parts = [data] if data.ndim == 3 else ([data[..., c] for c in range(data.shape[3])]
                                              if data.ndim == 4 else None)
        if parts is None:
            raise CaseRejected(f"image must be 3D or 4D (channels last). Received shape "
                               f"{'x'.join(map(str, data.shape))}")
        if affine0 is None:
            affine0 = affine
        for part in parts:
            if channels and part.shape != channels[0].shape:
                raise CaseRejected(f"channel {len(channels)} is {'x'.join(map(str, part.shape))}, "
                                   f"channel 0 {'x'.join(map(str, channels[0].shape))}")
            channels.append(part)
        gap = _corner_gap_mm(affine, affine0, channels[0].shape)
        if gap > GRID_TOLERANCE_MM:
            raise CaseRejected(f"channel grids differ by up to {gap:.2f} mm")
    if len(channels) != n_channels:
        raise CaseRejected(f"case has {len(channels)} channel(s), dataset.json names {n_channels}")
    if not all(np.all(np.isfinite(c)) for c in channels):
        raise CaseRejected("image holds non-finite values")
    shape = channels[0].shape
    image = np.stack([c.transpose(2, 1, 0) for c in channels], axis=-1)
    labels = None
    if case["label"] is not None:
        try:
            data, affine = load_nifti(case["label"])
        except AnnotationError as e:
            raise CaseRejected(f"label map: {e}") from None
        data = np.asarray(data)
        while data.ndim > 3 and data.shape[-1] == 1:
            data = data[..., 0]
        if data.shape != shape:
            raise CaseRejected(f"label map is {'x'.join(map(str, data.shape))}, the image "
                               f"{'x'.join(map(str, shape))}")
        gap = _corner_gap_mm(affine, affine0, shape)
        if gap > GRID_TOLERANCE_MM:
            raise CaseRejected(f"label map affine does not match the image: offset by up to "
                               f"{gap:.2f} mm")
        if data.dtype.kind == "f" and np.any(data != np.round(data)):
            raise CaseRejected("label map holds non-integer values")
        if data.min() < 0 or data.max() >= len(label_classes):
            raise CaseRejected(f"label value {int(data.max() if data.max() > 0 else data.min())} "
                               f"outside the {len(label_classes)} labels of dataset.json")
        labels = data.astype(np.uint8).transpose(2, 1, 0)
    return image, labels, _grid(affine0, shape)


def _plan(cases_meta, channel_names, label_classes, samples) -> dict:
    """A plan in the contract's shape: no resampling (target = median spacing), CT clipping at
    the foreground's 0.5/99.5 percentiles, else per-volume z-score; a patch that fits the median
    shape, rounded down to a multiple of 16 (at most 64×128×128)."""
    spacings = np.array([m["spacing"] for m in cases_meta])
    shapes = np.array([m["shape"] for m in cases_meta])
    median_spacing = [float(v) for v in np.median(spacings, axis=0)]
    median_shape = [int(v) for v in np.median(shapes, axis=0)]
    ct = bool(channel_names) and all(n.strip().lower() in _CT_NAMES for n in channel_names)
    if ct:
        values = np.concatenate(samples) if samples else np.zeros(1, np.float32)
        lo, hi = (float(v) for v in np.percentile(values, [0.5, 99.5]))
        clipped = np.clip(values, lo, hi)
        normalization = {"scheme": "ct", "clip": [lo, hi], "mean": float(clipped.mean()),
                         "std": float(clipped.std() or 1.0)}
    else:
        normalization = {"scheme": "zscore"}
    patch = [max(PATCH_MULTIPLE, min(cap, s) // PATCH_MULTIPLE * PATCH_MULTIPLE)
             for cap, s in zip(MAX_PATCH, median_shape)]
    spread = spacings.max(0) / np.maximum(spacings.min(0), 1e-9)
    return {"schema_version": 1, "modality": "CT" if ct else ",".join(channel_names),
            "median_spacing": median_spacing, "target_spacing": median_spacing,
            "anisotropic": bool(max(median_spacing) > 3 * min(median_spacing)),
            "median_shape": median_shape, "normalization": normalization,
            "patch_size": patch, "batch_size": 2, "memory_gb": 8.0,
            "label_classes": list(label_classes), "foreground_oversample": 0.33,
            "overrides": {}, "resampled": False,
            "spacing_spread": [round(float(v), 4) for v in spread]}


def normalise(image: np.ndarray, normalization: dict) -> np.ndarray:
    """Apply the plan's normalisation to ``(D, H, W, C)`` (z-score: per channel, per volume)."""
    if normalization["scheme"] == "ct":
        lo, hi = normalization["clip"]
        return ((np.clip(image, lo, hi) - normalization["mean"])
                / normalization["std"]).astype(np.float32)
    mean = image.mean(axis=(0, 1, 2), keepdims=True)
    std = image.std(axis=(0, 1, 2), keepdims=True)
    return ((image - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


def ingest_msd(root, out, *, folds: int = 5, seed: int = 0, key_file=None, strict: bool = False,
               records_per_shard: int = records.RECORDS_PER_SHARD) -> dict:
    """Ingest an MSD / nnU-Net raw folder (see the module docstring) into dataset dir ``out``.

    Returns
    -------
    dict
        ``inputs, loaded, rejected, records, per_class, per_fold, patients, rejected_by_reason,
        layout, channels, plan, strict_failed, out``; ``inputs == loaded + rejected`` (cases).

    Raises
    ------
    InputError
        Not such a folder, ``out`` not new/empty, no usable case, too few cases for the folds.
    """
    root, out = Path(root), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"Output {out}: expected a new or empty folder. Received: it holds "
                         "existing files; refusing to overwrite")
    layout = read_layout(root)
    cases, label_classes = layout["cases"], layout["label_classes"]
    channel_names = layout["channel_names"] or ["channel0"]
    key = deid.load_or_create_key(key_file)
    rejected, loaded, samples = [], [], []

    def reject(case, reason):
        rel = os.path.relpath(case["images"][0], root)
        rejected.append((case["row"], rel, reason))
        print(f"medzoo ingest: rejected {rel}: {reason}", file=sys.stderr)

    rng = np.random.default_rng(seed)
    for case in cases:  # pass 1: check every case, measure the plan's inputs
        try:
            image, labels, grid = load_case(case, len(channel_names), label_classes)
        except CaseRejected as e:
            reject(case, str(e))
            continue
        fg = image[..., 0][labels > 0] if labels is not None and labels.any() else image[..., 0]
        samples.append(rng.choice(fg.ravel(), size=min(fg.size, 10_000), replace=False))
        # the image-level label (for stratified folds): the last label class present
        present = sorted(set(np.unique(labels).tolist()) - {0}) if labels is not None else []
        loaded.append((case, grid, labels is not None,
                       label_classes[present[-1]] if present else "empty"))
    if not loaded:
        raise InputError(f"No readable input: all {len(cases)} cases in {root} were rejected "
                         "(see the lines above)")
    plan = _plan([g for _, g, _, _ in loaded], channel_names, label_classes, samples)
    has_mask = any(m for _, _, m, _ in loaded)
    classes = manifest.order_classes(name for _, _, _, name in loaded)
    class_index = {c: i for i, c in enumerate(classes)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.msd-", dir=out.parent))
    try:
        index, totals = [], [0.0, 0.0, 0]
        with records.ShardWriter(tmp / "shards", records_per_shard) as writer:
            for case, grid, _, name in loaded:  # pass 2: write
                image, labels, _ = load_case(case, len(channel_names), label_classes)
                image = normalise(image, plan["normalization"])
                if has_mask and labels is None:
                    labels = np.zeros(image.shape[:3], np.uint8)
                record_id = f"r{len(index) + 1:06d}"
                features = records.record_features(record_id, image, class_index[name], labels,
                                                   spacing=grid["spacing"])
                features.update(origin=grid["origin"], direction=grid["direction"],
                                original_shape=grid["shape"], original_spacing=grid["spacing"],
                                original_origin=grid["origin"])
                writer.write(features)
                index.append({"record_id": record_id, "row": case["row"], "frame": 1,
                              "patient": deid.pseudonym(key, "patient", case["name"]),
                              "study": deid.pseudonym(key, "study", case["name"]),
                              "series": deid.pseudonym(key, "series", case["name"]),
                              "label": class_index[name], "modality": plan["modality"],
                              "window_center": 0.0, "window_width": 0.0,
                              "photometric": "MONOCHROME2",
                              "has_mask": int(case["label"] is not None),
                              "voi": "plan", "slices": grid["shape"][0]})
                totals[0] += float(image.sum(dtype=np.float64))
                totals[1] += float(np.square(image, dtype=np.float64).sum())
                totals[2] += image.size
        assignment = _folds([r["patient"] for r in index], [r["label"] for r in index], folds,
                            seed)
        for rec in index:
            rec["fold"] = assignment[rec["patient"]]
        splits.check_grouped([r["patient"] for r in index], [r["fold"] for r in index])
        summary = _write_tables(tmp, index, rejected, classes, label_classes, channel_names,
                                plan, totals, len(cases), folds, seed, key, has_mask, layout)
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary.update(strict_failed=bool(strict and summary["rejected"]), out=str(out))
    return summary


def _folds(patients, labels, folds: int, seed: int) -> dict:
    """Patient-grouped folds, stratified by image label when there are two labels or more."""
    if len(set(labels)) >= 2:
        return splits.patient_folds(patients, labels, folds, seed)
    unique = list(dict.fromkeys(patients))
    if len(unique) < int(folds):
        raise InputError(f"Splitting into {folds} patient-grouped folds needs at least {folds} "
                         f"patients. Received: {len(unique)} patients")
    order = np.random.default_rng(int(seed)).permutation(len(unique))
    return {unique[p]: n % int(folds) for n, p in enumerate(order)}


def _write_tables(tmp, index, rejected, classes, label_classes, channel_names, plan, totals,
                  n_inputs, folds, seed, key, has_mask, layout) -> dict:
    cols = manifest.INDEX_COLUMNS + manifest.INDEX_EXTRA_COLUMNS
    fsio.write_csv(tmp / "index.csv", ({c: rec[c] for c in cols} for rec in index), cols)
    fsio.write_csv(tmp / "rejected.csv",
                   ({"row": r, "path": p, "reason": why} for r, p, why in sorted(rejected)),
                   ("row", "path", "reason"))
    per_class = collections.Counter(classes[rec["label"]] for rec in index)
    per_fold = collections.Counter(str(rec["fold"]) for rec in index)
    counts = {"inputs": n_inputs, "loaded": len(index), "rejected": len(rejected),
              "records": len(index), "per_class": {c: per_class[c] for c in classes},
              "per_fold": {str(f): per_fold[str(f)] for f in range(folds)},
              "patients": len({rec["patient"] for rec in index}),
              "rejected_by_reason": dict(sorted(collections.Counter(
                  why for _, _, why in rejected).items()))}
    if counts["loaded"] + counts["rejected"] != n_inputs:  # the promise, checked
        raise AssertionError(f"inputs {n_inputs} != loaded {counts['loaded']} + rejected "
                             f"{counts['rejected']}")
    total, total_sq, n = totals
    mean = total / n
    info = {"schema_version": SCHEMA_VERSION,
            "task": "segmentation" if has_mask else "classification",
            "kind": "volume", "spacing_mode": "native", "source_layout": layout["layout"],
            "image_size": plan["median_shape"], "channels": len(channel_names),
            "channel_names": list(channel_names), "classes": classes,
            "label_classes": list(label_classes), "has_mask": has_mask, "window": None,
            "folds": int(folds), "seed": int(seed), "counts": counts,
            "modalities": {plan["modality"]: len(index)},
            "pixel_stats": {"mean": round(mean, 6),
                            "std": round(math.sqrt(max(0.0, total_sq / n - mean * mean)), 6)},
            "key_fingerprint": deid.key_fingerprint(key), "input_columns": ["path"],
            "plan": plan}
    fsio.write_json(tmp / "plan.json", plan)
    fsio.write_json(tmp / "dataset.json", info)
    return dict(counts, layout=layout["layout"], channels=len(channel_names), plan=plan)
