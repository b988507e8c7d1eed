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

Planning and resampling are DICOM volume ingest's (:mod:`medzoo.datasets.volumes`): the cases'
fingerprint (spacings, shapes, foreground intensities of channel 0) gives the plan
(:func:`medzoo.datasets.plan.make_plan`: target spacing, normalisation, patch and batch size);
each case is normalised channel by channel, resampled to the target spacing (cubic; label maps
label-wise) and padded like a DICOM series (:func:`medzoo.datasets.volumes.fit_to_plan`).
Records follow the native-volume contract (docs/internals.md "Native-spacing volumes"): ``image``
``D×H×W×C`` float32, ``mask`` ``D×H×W`` class indices, ``spacing`` (the target), ``origin``,
``direction`` (LPS) and the ``original_*`` grid (the case's own). The array axes are the NIfTI's
voxel axes reversed (``data[i, j, k]`` → ``array[k, j, i]``), so ``direction`` may be any
orthonormal matrix; the stored grid keeps voxel (0, 0, 0) and the direction.

``dataset.json`` ``domain`` is DICOM volume ingest's schema, from what the NIfTI files and the
channel names know (:mod:`medzoo.datasets.msd_domain`): the modality where a channel's name says
it, spacing, size and stored intensities of every slice of every written case.
"""

from __future__ import annotations

import collections
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

from medzoo.datasets import deid, manifest, msd_domain, records, splits, volume_dir, volumes
from medzoo.datasets import plan as planning
from medzoo.datasets.annotations import AnnotationError
from medzoo.datasets.domain import DomainAccumulator
from medzoo.datasets.label_maps import SeriesRejected
from medzoo.datasets.nifti import LPS_TO_RAS, load_nifti
from medzoo.errors import InputError

SCHEMA_VERSION = 1
#: Channels of one case (and its label map) must share the grid to within this (mm).
GRID_TOLERANCE_MM = 0.1
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})\.nii(\.gz)?$")
_CT_NAMES = {"ct"}


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


def _modality(channel_names) -> str:
    """``CT`` when every channel is CT (the plan then clips and z-scores with the dataset's
    statistics), else the channel names (per-volume z-score)."""
    if channel_names and all(n.strip().lower() in _CT_NAMES for n in channel_names):
        return "CT"
    return ",".join(channel_names)


def _normalise(image: np.ndarray, normalization: dict) -> np.ndarray:
    """The plan's normalisation, channel by channel (z-score: each channel its own statistics)."""
    for c in range(image.shape[-1]):
        image[..., c] = planning.normalize(image[..., c], normalization)
    return image


def ingest_msd(root, out, *, spacing="auto", memory_gb: float = planning.DEFAULT_MEMORY_GB,
               patch_size=None, batch_size=None, normalization=None, folds: int = 5,
               seed: int = 0, key_file=None, strict: bool = False,
               records_per_shard: int = records.RECORDS_PER_SHARD) -> dict:
    """Ingest an MSD / nnU-Net raw folder (see the module docstring) into dataset dir ``out``.

    Parameters
    ----------
    root, out : path-like
        The raw folder; the dataset dir to create (new or empty).
    spacing : "auto" or "Z,Y,X" or 3 floats
        Target spacing in mm (auto: the plan's, from the cases' fingerprint).
    memory_gb, patch_size, batch_size, normalization
        Plan inputs and overrides (:func:`medzoo.datasets.plan.make_plan`).
    folds, seed, key_file, strict, records_per_shard
        As :func:`medzoo.datasets.volumes.ingest_volumes`.

    Returns
    -------
    dict
        ``inputs, loaded, rejected, records, per_class, per_fold, patients, rejected_by_reason,
        layout, channels, plan, strict_failed, out``; ``inputs == loaded + rejected`` (cases).

    Raises
    ------
    InputError
        Not such a folder, ``out`` not new/empty, bad plan options, no usable case, too few
        cases for the folds.
    """
    root, out = Path(root), Path(out)
    target = volumes.parse_spacing(spacing)
    patch_size = volumes.parse_triple(patch_size, "--patch-size")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"Output {out}: expected a new or empty folder. Received: it holds "
                         "existing files; refusing to overwrite")
    layout = read_layout(root)
    cases, label_classes = layout["cases"], layout["label_classes"]
    channel_names = layout["channel_names"] or ["channel0"]
    codes = msd_domain.channel_modalities(channel_names)
    key = deid.load_or_create_key(key_file)
    rejected, loaded, samples = [], [], []
    sample_n = max(1000, planning.SAMPLE_VALUES // max(1, len(cases)))

    def reject(case, reason):
        rel = os.path.relpath(case["images"][0], root)
        rejected.append((case["row"], rel, reason))
        print(f"medzoo ingest: rejected {rel}: {reason}", file=sys.stderr)

    for case in cases:  # pass 1: check every case, measure the fingerprint
        try:
            image, labels, grid = load_case(case, len(channel_names), label_classes)
        except CaseRejected as e:
            reject(case, str(e))
            continue
        samples.append(planning.foreground_sample(image[..., 0], labels, n=sample_n, seed=seed))
        # the image-level label (for stratified folds): the last label class present
        present = sorted(set(np.unique(labels).tolist()) - {0}) if labels is not None else []
        loaded.append((case, grid, label_classes[present[-1]] if present else "empty"))
    if not loaded:
        raise InputError(f"No readable input: all {len(cases)} cases in {root} were rejected "
                         "(see the lines above)")
    fingerprint = planning.make_fingerprint([g["spacing"] for _, g, _ in loaded],
                                            [g["shape"] for _, g, _ in loaded],
                                            _modality(channel_names), samples)
    try:
        plan = planning.make_plan(fingerprint, memory_gb=memory_gb, target_spacing=target,
                                  patch_size=patch_size, batch_size=batch_size,
                                  normalization=normalization, label_classes=label_classes,
                                  channels=len(channel_names))
    except ValueError as exc:
        raise InputError(str(exc)) from None
    print("medzoo ingest: plan\n" + planning.describe(plan), file=sys.stderr)
    has_mask = any(case["label"] is not None for case, _, _ in loaded)
    classes = manifest.order_classes(name for _, _, name in loaded)
    class_index = {c: i for i, c in enumerate(classes)}
    with volume_dir.building(out) as tmp:
        index, stats, domain = [], [0.0, 0.0, 0], DomainAccumulator()
        with records.ShardWriter(tmp / "shards", records_per_shard) as writer:
            for case, grid, name in loaded:  # pass 2: normalise, resample, write
                image, labels, _ = load_case(case, len(channel_names), label_classes)
                facts = msd_domain.case_facts(image, grid["spacing"], codes)  # stored values
                image = _normalise(image, plan["normalization"])
                try:
                    image, mask = volumes.fit_to_plan(image, labels, grid["spacing"], plan,
                                                      len(label_classes))
                except SeriesRejected as exc:
                    reject(case, exc.reason)
                    continue
                domain.add(facts)  # written cases only, in case order
                record_id = f"r{len(index) + 1:06d}"
                writer.write(records.record_features(
                    record_id, image, class_index[name], mask, spacing=plan["target_spacing"],
                    geometry={"origin": grid["origin"], "direction": grid["direction"],
                              "original_shape": grid["shape"],
                              "original_spacing": grid["spacing"],
                              "original_origin": grid["origin"]}))
                volume_dir.add_pixel_stats(stats, image)
                index.append({"record_id": record_id, "row": case["row"], "frame": 1,
                              "patient": deid.pseudonym(key, "patient", case["name"]),
                              "study": deid.pseudonym(key, "study", case["name"]),
                              "series": deid.pseudonym(key, "series", case["name"]),
                              "label": class_index[name], "modality": plan["modality"],
                              "window_center": 0.0, "window_width": 0.0,
                              "photometric": "MONOCHROME2",
                              "has_mask": int(case["label"] is not None),
                              "voi": "plan", "slices": grid["shape"][0], "_files": 1,
                              "_names": [name]})
                del image, mask
        if not index:
            raise InputError(f"No readable input: all {len(cases)} cases in {root} were "
                             "rejected (see the lines above)")
        assignment = _folds([r["patient"] for r in index], [r["label"] for r in index], folds,
                            seed)
        for rec in index:
            rec["fold"] = assignment[rec["patient"]]
        splits.check_grouped([r["patient"] for r in index], [r["fold"] for r in index])
        summary = volume_dir.write_dataset_tables(
            tmp, index, rejected, classes, label_classes, plan, fingerprint, stats, len(cases),
            folds, seed, key, has_mask, channels=len(channel_names),
            extra_info={"source_layout": layout["layout"],
                        "channel_names": list(channel_names),
                        "domain": msd_domain.summary(domain, channel_names, codes)})
    summary.update(layout=layout["layout"], channels=len(channel_names),
                   strict_failed=bool(strict and summary["rejected"]), out=str(out))
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
