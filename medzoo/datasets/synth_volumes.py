"""Chest-CT-like phantom volumes at realistic, per-patient geometry, with multi-class label maps.

Each patient is one axial CT series (one DICOM file per slice, CT Image Storage, stored values
= HU + 1024 with RescaleIntercept −1024) at its own in-plane spacing (0.6–1.0 mm) and slice
spacing (1–5 mm), and a label map ``labels.npy`` in the series' array order (slice k ascending
along the slice normal, then row, column — docs/internals.md): 0 background, 1 lung, 2 heart,
3 lesion. The anatomy is defined in millimetres (in-plane sized to fit the field of view at the
finest spacing, so about 100 mm wide at 192 px and 270 mm at 512 px; along z the chest spans the
series), so the same structure covers more voxels at a finer spacing: body (soft tissue, fat
rim), two lungs, heart (contrast-enhanced, 130 HU), spine, and for "lesion" patients 1–3
spherical nodules of 3–20 mm diameter inside the lungs (capped to fit a lung on small matrices).
Noise is Gaussian (sigma 20 HU). Half the patients are written head first (file IM0001 is the
top slice) to show that file order is not array order.

Layout: ``OUT/<PatientID>/CT/IM0001.dcm…``, ``OUT/<PatientID>/labels.npy``, ``OUT/labels.csv``
(``path,label,mask``: the series folder, ``lesion``/``normal``, the label map) and
``OUT/label_classes.json`` (the voxel class names, value ↔ name). The DICOM headers come from
:mod:`medzoo.datasets.synth` (fake PHI included, for leak tests). Same seed → identical files.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from medzoo.datasets import synth

LABEL_CLASSES = ["background", "lung", "heart", "lesion"]
IN_PLANE_MM = (0.6, 1.0)
SLICE_MM = (1.0, 5.0)
LESION_MM = (3.0, 20.0)
NOISE_HU = 20.0
HU = {"air": -1000.0, "fat": -100.0, "soft": 40.0, "lung": -850.0, "heart": 130.0, "bone": 700.0,
      "lesion": 30.0}


def patient_geometry(rng, size: int, slices: int) -> dict:
    """One patient's grid: in-plane and slice spacing (mm) and the position of voxel (0, 0, 0)."""
    pixel = round(float(rng.uniform(*IN_PLANE_MM)), 4)
    step = round(float(rng.uniform(*SLICE_MM)), 3)
    fov = pixel * size
    z0 = round(float(rng.uniform(-40.0, 40.0)) - step * (slices - 1) / 2.0, 3)
    return {"pixel": pixel, "step": step,
            "origin": (-fov / 2.0 + pixel / 2.0, -fov / 2.0 + pixel / 2.0, z0)}


def _anatomy(rng, size: int, slices: int, geometry: dict, lesions: int) -> dict:
    """Anatomy in mm (patient LPS, body centred at x = y = 0 and on the series along z)."""
    # sized so the whole body fits the field of view at the finest in-plane spacing
    half = 0.5 * size * IN_PLANE_MM[0]
    body = np.array([0.88, 0.66]) * half * rng.uniform(0.93, 1.0)
    # along z the chest spans the series (with a margin), centred on it: every structure is
    # in view whatever the slice spacing
    step, z0 = geometry["step"], geometry["origin"][2]
    extent = step * (slices - 1)
    zc = z0 + extent / 2.0 + rng.uniform(-0.05, 0.05) * extent
    lung_axes = np.array([0.30 * body[0], 0.62 * body[1],
                          0.6 * extent * rng.uniform(0.95, 1.1)])
    lungs = [np.array([side * 0.5 * body[0], -0.05 * body[1], zc]) for side in (-1.0, 1.0)]
    heart_axes = np.array([0.26 * body[0], 0.40 * body[1], 0.45 * lung_axes[2]])
    heart = np.array([0.05 * body[0], -0.15 * body[1], zc - 0.10 * lung_axes[2]])
    spine = np.array([0.0, 0.75 * body[1]]), 0.10 * body[1]
    nodules = []
    for i in range(lesions):
        centre_lung = lungs[int(rng.integers(0, 2))]
        radius = min(float(rng.uniform(*LESION_MM)), 0.8 * lung_axes[0]) / 2.0
        for _ in range(200):  # a centre whose whole sphere lies in the lung, on a slice
            k = int(rng.integers(1, slices - 1))
            centre = np.array([centre_lung[0] + rng.uniform(-1, 1) * lung_axes[0],
                               centre_lung[1] + rng.uniform(-1, 1) * lung_axes[1], z0 + step * k])
            shrunk = np.maximum(lung_axes - radius, 1e-3)
            if np.sum(((centre - centre_lung) / shrunk) ** 2) <= 1.0:
                nodules.append((centre, radius))
                break
    return {"body": body, "lungs": lungs, "lung_axes": lung_axes, "heart": heart,
            "heart_axes": heart_axes, "spine": spine, "nodules": nodules}


def phantom_volume(rng, size: int, slices: int, geometry: dict, lesions: int = 0):
    """One phantom volume in HU and its label map (pure; vectorised).

    Parameters
    ----------
    rng : numpy.random.Generator
    size, slices : int
        Rows = columns, and slices.
    geometry : dict
        From :func:`patient_geometry`.
    lesions : int
        Nodules in the lungs (0 for a normal patient).

    Returns
    -------
    (hu float32 (slices, size, size), labels uint8 (slices, size, size), nodules)
        ``nodules``: list of (centre LPS mm, radius mm).
    """
    a = _anatomy(rng, size, slices, geometry, lesions)
    pixel, step = geometry["pixel"], geometry["step"]
    x0, y0, z0 = geometry["origin"]
    x = (x0 + pixel * np.arange(size, dtype=np.float32))[None, None, :]
    y = (y0 + pixel * np.arange(size, dtype=np.float32))[None, :, None]
    z = (z0 + step * np.arange(slices, dtype=np.float32))[:, None, None]
    shape = (slices, size, size)
    hu = np.full(shape, HU["air"], np.float32)
    labels = np.zeros(shape, np.uint8)
    bx, by = a["body"]
    body = (x / bx) ** 2 + (y / by) ** 2 <= 1.0
    inner = (x / (0.94 * bx)) ** 2 + (y / (0.94 * by)) ** 2 <= 1.0
    body, inner = np.broadcast_to(body, shape), np.broadcast_to(inner, shape)
    hu[body] = HU["fat"]
    hu[inner] = HU["soft"]
    ax, ay, az = a["lung_axes"]
    for cx, cy, cz in a["lungs"]:
        lung = ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2 <= 1.0
        hu[lung] = HU["lung"]
        labels[lung] = 1
    hx, hy, hz = a["heart_axes"]
    cx, cy, cz = a["heart"]
    heart = ((x - cx) / hx) ** 2 + ((y - cy) / hy) ** 2 + ((z - cz) / hz) ** 2 <= 1.0
    hu[heart] = HU["heart"]
    labels[heart] = 2
    (sx, sy), sr = a["spine"]
    spine = np.broadcast_to((x - sx) ** 2 + (y - sy) ** 2 <= sr**2, shape)
    hu[spine] = HU["bone"]
    labels[spine] = 0
    for (cx, cy, cz), r in a["nodules"]:
        nodule = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= r**2
        nodule = nodule & (labels == 1)
        hu[nodule] = HU["lesion"]
        labels[nodule] = 3
    hu += rng.normal(0.0, NOISE_HU, size=shape).astype(np.float32)
    return hu, labels, a["nodules"]


def write_synthetic_volumes(out, patients: int = 8, size: int = 192, slices: int = 40,
                            seed: int = 0, lesion_fraction: float = 0.5) -> dict:
    """Write ``patients`` phantom CT series with label maps, labels.csv and label_classes.json.

    Parameters
    ----------
    out : path-like
        Output folder (created).
    patients : int
        ≥ 2; about ``lesion_fraction`` of them have nodules (label ``lesion``), the rest none
        (``normal``); both kinds always occur.
    size : int
        Rows = columns (≥ 16; default 192).
    slices : int
        Slices per series (≥ 4; default 40).
    seed : int
        Same seed → identical files.
    lesion_fraction : float
        In (0, 1).

    Returns
    -------
    dict
        ``patients``, ``files``, ``per_class``, ``label_classes``, ``labels_csv``, ``phi`` (every
        planted identifying string), ``patient_folders``, ``geometry`` (per patient: ``spacing``
        (z, y, x) mm, ``shape``, ``lesions`` count, ``head_first``).

    Raises
    ------
    ValueError
        Sizes out of range.
    """
    if int(patients) < 2 or int(size) < 16 or int(slices) < 4:
        raise ValueError("Expected patients >= 2, size >= 16, slices >= 4. "
                         f"Received: patients={patients}, size={size}, slices={slices}")
    if not 0.0 < float(lesion_fraction) < 1.0:
        raise ValueError("Argument `lesion_fraction` must be in (0, 1). "
                         f"Received: lesion_fraction={lesion_fraction}")
    from pydicom.filewriter import dcmwrite

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    size, slices = int(size), int(slices)
    rows, phi_strings, folders, geometries = [], set(), [], []
    per_class = {"normal": 0, "lesion": 0}
    files = 0
    for p in range(int(patients)):
        rng = np.random.default_rng([int(seed), p, 3])
        positive = int((p + 1) * lesion_fraction) > int(p * lesion_fraction)
        label = "lesion" if positive else "normal"
        phi = synth._patient_phi(rng, p)
        geo = patient_geometry(rng, size, slices)
        hu, labels, nodules = phantom_volume(rng, size, slices, geo,
                                             int(rng.integers(1, 4)) if positive else 0)
        if positive and not nodules:  # no room in the lungs (tiny phantoms): call it normal
            label = "normal"
        uids = {"study": synth._uid(seed, p, "vstudy"), "series": synth._uid(seed, p, "vseries"),
                "frame": synth._uid(seed, p, "vframe")}
        phi_strings.update(phi.values())
        phi_strings.update(uids.values())
        folder = out / phi["PatientID"]
        series_dir = folder / "CT"
        series_dir.mkdir(parents=True, exist_ok=True)
        folders.append(phi["PatientID"])
        head_first = p % 2 == 1
        x0, y0, z0 = geo["origin"]
        for k in range(slices):
            stored, tags = synth._store(hu[k], "ct", None)
            sop = dict(uids, sop=synth._uid(seed, p, "vsop", k))
            phi_strings.add(sop["sop"])
            number = slices - k if head_first else k + 1  # file order ≠ array order
            ds = synth._dataset(stored, tags, "ct", phi, sop, number - 1, size, seed, p)
            z = z0 + geo["step"] * k
            ds.PixelSpacing = [geo["pixel"], geo["pixel"]]
            ds.ImagePositionPatient = [round(x0, 4), round(y0, 4), round(z, 4)]
            ds.SliceLocation = round(z, 4)
            ds.SliceThickness = geo["step"]
            ds.SpacingBetweenSlices = geo["step"]
            buf = io.BytesIO()
            dcmwrite(buf, ds, enforce_file_format=True)
            synth._atomic_bytes(series_dir / f"IM{number:04d}.dcm", buf.getvalue())
            files += 1
        mbuf = io.BytesIO()
        np.save(mbuf, labels, allow_pickle=False)
        synth._atomic_bytes(folder / "labels.npy", mbuf.getvalue())
        rows.append((f"{phi['PatientID']}/CT", label, f"{phi['PatientID']}/labels.npy"))
        per_class[label] += 1
        geometries.append({"spacing": [geo["step"], geo["pixel"], geo["pixel"]],
                           "shape": [slices, size, size], "lesions": len(nodules),
                           "lesion_diameters_mm": [round(2 * r, 2) for _, r in nodules],
                           "head_first": head_first})
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["path", "label", "mask"])
    writer.writerows(rows)
    synth._atomic_bytes(out / "labels.csv", text.getvalue().encode())
    synth._atomic_bytes(out / "label_classes.json",
                        (json.dumps({"label_classes": LABEL_CLASSES}, indent=2) + "\n").encode())
    return {"patients": int(patients), "files": files, "per_class": per_class,
            "label_classes": list(LABEL_CLASSES), "labels_csv": str(out / "labels.csv"),
            "phi": sorted(phi_strings), "patient_folders": folders, "geometry": geometries}
