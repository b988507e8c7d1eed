"""Synthetic chest phantoms written as real DICOM files, with a learnable lesion / normal task.

Every patient has one series of ``slices`` images: a body ellipse of soft tissue, two lungs, a
spine, noise. Positive patients ("lesion") carry a tissue-density ellipsoid in one lung, visible
in every slice; a per-slice lesion mask is written beside each file as ``.npy`` (zeros for
"normal"). Each file carries planted fake PHI (names, IDs, dates, institution, a private tag) and
sits in a folder named after the PatientID, so that tests can prove none of it leaks.

The same ``seed`` gives byte-identical files (UIDs are derived from the seed, dates are fixed).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from medzoo.datasets.headers import FRAME_OF_REFERENCE_MODALITIES, modality_attributes

MODALITIES = ("ct", "mr", "cr", "us")

_SOP_CLASS = {
    "ct": "1.2.840.10008.5.1.4.1.1.2",
    "mr": "1.2.840.10008.5.1.4.1.1.4",
    "cr": "1.2.840.10008.5.1.4.1.1.1",
    "us": "1.2.840.10008.5.1.4.1.1.6.1",
}
_COMPRESS = {
    None: None,
    "none": None,
    "rle": "1.2.840.10008.1.2.5",
    "jpeg-ls": "1.2.840.10008.1.2.4.80",
    "j2k": "1.2.840.10008.1.2.4.90",
}
_SURNAMES = ("DOE", "ROE", "SMITH", "MORGAN", "NGUYEN", "GARCIA", "KOWALSKI", "OKAFOR")
_GIVEN = ("JANE", "JOHN", "ALEX", "MARIA", "SAM", "LEE")

# Tissue values per modality: air, soft tissue, lung, bone (lesion = soft tissue).
_TISSUE = {
    "ct": (-1000.0, 40.0, -800.0, 700.0, 15.0),  # Hounsfield units, noise sigma
    "mr": (0.0, 500.0, 60.0, 200.0, 20.0),  # arbitrary units
    "cr": (200.0, 2400.0, 900.0, 3500.0, 40.0),  # display brightness before MONOCHROME1 storage
    "us": (0.0, 140.0, 30.0, 220.0, 8.0),  # 8-bit echo brightness
}


def phantom_slice(rng, size, lesion=None, k=0, modality="ct"):
    """One phantom slice in modality units and its lesion mask (pure; no I/O).

    Parameters
    ----------
    rng : numpy.random.Generator
    size : int
    lesion : dict, list of dicts, or None
        ``{"cx", "cy", "r0", "aspect", "zc", "rz"}`` in pixels / slice units, optionally
        ``"density"`` (1.0 soft tissue, the default; 0.5 half-way between lung and tissue).
    k : int
        Slice number (0-based) for the lesion's radius along z.
    modality : str

    Returns
    -------
    (values float64 (size, size), mask uint8 (size, size))
    """
    air, tissue, lung, bone, sigma = _TISSUE[modality]
    u = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(u, u, indexing="ij")
    img = np.full((size, size), air)
    img[(x / 0.85) ** 2 + (y / 0.65) ** 2 <= 1.0] = tissue
    for side in (-1.0, 1.0):
        img[((x - side * 0.38) / 0.28) ** 2 + ((y + 0.02) / 0.45) ** 2 <= 1.0] = lung
    img[(x**2 + (y - 0.5) ** 2) <= 0.08**2] = bone
    mask = np.zeros((size, size), np.uint8)
    for one in ([lesion] if isinstance(lesion, dict) else lesion or []):
        ratio = (k - one["zc"]) / one["rz"]
        r = one["r0"] * np.sqrt(max(0.0, 1.0 - ratio**2))
        py, px = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
        rx, ry = r * one["aspect"], r / one["aspect"]
        inside = ((px - one["cx"]) / rx) ** 2 + ((py - one["cy"]) / ry) ** 2 <= 1.0
        # density: 1.0 = soft tissue (the seed's lesion), 0.5 = half-way to lung (ground glass)
        img[inside] = lung + one.get("density", 1.0) * (tissue - lung)
        mask[inside] = 1
    img = img + rng.normal(0.0, sigma, size=img.shape)
    return img, mask


def _lesion_params(rng, size, slices, side=None):
    side = rng.choice([-1.0, 1.0]) if side is None else side
    cx = (side * 0.38 + rng.uniform(-0.08, 0.08) + 1.0) / 2.0 * size
    cy = (rng.uniform(-0.2, 0.2) + 1.0) / 2.0 * size
    return {
        "cx": cx,
        "cy": cy,
        "r0": max(3.5, 0.09 * size),
        "aspect": rng.uniform(0.85, 1.15),
        "zc": (slices - 1) / 2.0 + rng.uniform(-0.5, 0.5),
        "rz": 0.9 * slices + 1.0,
        "side": float(side),
    }


# Findings beyond the seed's "lesion" (``classes`` > 2 or ``multi_label``), told apart by density.
FINDINGS = {"nodule": 1.0, "ground_glass": 0.5}


def class_names(classes: int = 2, multi_label: bool = False) -> list[str]:
    """The label names :func:`write_synthetic` uses.

    Two classes (the default): ``normal``, ``lesion``. More: ``normal`` then one finding per
    class, told apart by density (``nodule`` soft tissue, ``ground_glass`` half-way to lung).
    Multi-label: ``normal``, ``nodule``, ``ground_glass``; a patient may carry both findings
    (labels.csv ``nodule|ground_glass``).
    """
    if multi_label:
        return ["normal", *FINDINGS]
    if classes == 2:
        return ["normal", "lesion"]
    if not 2 <= classes <= 1 + len(FINDINGS):
        raise ValueError(f"Argument `classes` must be in 2..{1 + len(FINDINGS)}. "
                         f"Received: classes={classes}")
    return ["normal", *list(FINDINGS)[:classes - 1]]


def _patient_findings(p: int, classes: int, multi_label: bool, positive_fraction) -> list[str]:
    """The findings of patient ``p`` (empty = normal); deterministic, spread evenly over p."""
    if multi_label:
        return [[], ["nodule"], ["ground_glass"], ["nodule", "ground_glass"]][p % 4]
    if positive_fraction is not None:
        positive = int((p + 1) * positive_fraction) > int(p * positive_fraction)
        return (["lesion"] if classes == 2 else ["nodule"]) if positive else []
    names = class_names(classes)
    return [] if p % classes == 0 else [names[p % classes]]


def _uid(seed, *parts):
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["medzoo-synth", str(seed), *map(str, parts)])


def _patient_phi(rng, p):
    name = f"{_SURNAMES[p % len(_SURNAMES)]}^{_GIVEN[p % len(_GIVEN)]}^{p}"
    return {
        "PatientName": name,
        "PatientID": f"MZ-{int(rng.integers(100000, 1000000))}-{p}",
        "PatientBirthDate": f"19{int(rng.integers(30, 99))}{int(rng.integers(1, 13)):02d}"
        f"{int(rng.integers(1, 29)):02d}",
        "AccessionNumber": f"ACC{int(rng.integers(1000000, 10000000))}",
        "InstitutionName": f"MEDZOO TEST HOSPITAL {p % 7}",
        "ReferringPhysicianName": f"HOUSE^GREGORY^{p}",
    }


def _store(values, modality, rng):
    """Stored pixel array and pixel-module tags for one slice of modality values."""
    if modality == "ct":
        stored = np.clip(np.round(values + 1024.0), -32768, 32767).astype(np.int16)
        tags = dict(BitsAllocated=16, BitsStored=16, HighBit=15, PixelRepresentation=1,
                    SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2",
                    RescaleSlope=1, RescaleIntercept=-1024, RescaleType="HU",
                    WindowCenter=[-600, 40], WindowWidth=[1500, 400])
    elif modality == "mr":
        slope = float(rng["slope"])
        stored = np.clip(np.round(values / slope), 0, 65535).astype(np.uint16)
        tags = dict(BitsAllocated=16, BitsStored=16, HighBit=15, PixelRepresentation=0,
                    SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME2",
                    RescaleSlope=f"{slope:.4f}", RescaleIntercept=0)
    elif modality == "cr":
        stored = np.clip(np.round(4095.0 - values), 0, 4095).astype(np.uint16)
        tags = dict(BitsAllocated=16, BitsStored=12, HighBit=11, PixelRepresentation=0,
                    SamplesPerPixel=1, PhotometricInterpretation="MONOCHROME1",
                    RescaleSlope=1, RescaleIntercept=0, WindowCenter=2048, WindowWidth=4096)
    elif modality == "us":
        grey = np.clip(np.round(values), 0, 255)
        stored = np.stack([grey, grey, np.clip(np.round(grey * 1.05), 0, 255)], axis=-1)
        stored = stored.astype(np.uint8)
        tags = dict(BitsAllocated=8, BitsStored=8, HighBit=7, PixelRepresentation=0,
                    SamplesPerPixel=3, PhotometricInterpretation="RGB", PlanarConfiguration=0)
    else:
        raise ValueError(f"Unknown modality. Expected one of {MODALITIES}. Received: {modality!r}")
    return stored, tags


def _dataset(stored, tags, modality, phi, uids, k, size, seed, p):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _SOP_CLASS[modality]
    meta.MediaStorageSOPInstanceUID = uids["sop"]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = _SOP_CLASS[modality]
    ds.SOPInstanceUID = uids["sop"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240102"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.Modality = modality.upper()
    ds.Manufacturer = "medzoo synth"
    for key, value in phi.items():
        setattr(ds, key, value)
    ds.PatientSex = "O"
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    if modality in FRAME_OF_REFERENCE_MODALITIES:  # the CR IOD has no Frame of Reference
        ds.FrameOfReferenceUID = uids["frame"]
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = k + 1
    ds.BodyPartExamined = "CHEST"
    if modality in ("ct", "mr"):
        fov = 350.0
        ds.PixelSpacing = [round(fov / size, 6)] * 2
        ds.SliceThickness = 5
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-fov / 2, -fov / 2, -100.0 + 5.0 * k]
        ds.SliceLocation = -100.0 + 5.0 * k
    ds.Rows, ds.Columns = size, size
    for key, value in tags.items():
        setattr(ds, key, value)
    for key, value in modality_attributes(modality).items():  # what the IOD asks beyond that
        setattr(ds, key, value)
    block = ds.private_block(0x0009, "MEDZOO SYNTH", create=True)
    block.add_new(0x01, "LO", phi["PatientName"])
    ds.PixelData = stored.tobytes()
    return ds


def _atomic_bytes(path: Path, data: bytes):
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_synthetic(out, patients=60, modality="ct", size=64, slices=4, seed=0, compress=None,
                    paired=False, classes=2, multi_label=False, positive_fraction=None,
                    difficulty="easy", knobs=None):
    """Write ``patients`` synthetic chest series as DICOM plus ``labels.csv``.

    Parameters
    ----------
    out : path-like
        Output folder (created). Layout: ``OUT/<PatientID>/IM0001.dcm``, ``IM0001_mask.npy``, …,
        and ``OUT/labels.csv`` (``path,label,mask``; paths relative to OUT).
    patients : int
        Number of patients (≥ 2); classes alternate, so they are balanced.
    modality : {"ct", "mr", "cr", "us", "mixed"}
        "mixed" cycles the four by patient pair (so modality does not predict the label).
    size : int
        Rows = Columns (≥ 16).
    slices : int
        Images (one file each) per patient series (≥ 1).
    seed : int
        Same seed → byte-identical output.
    compress : {None, "rle", "jpeg-ls", "j2k"}
        Transfer syntax for the pixel data (lossless); None writes Explicit VR Little Endian.
    paired : bool
        Co-registered CT + MR per patient (``modality`` is ignored): the same anatomy and lesion
        in both, one study, two series sharing a FrameOfReferenceUID, the same slice positions.
        Layout ``OUT/<PatientID>/CT/IM0001.dcm``, ``OUT/<PatientID>/MR/IM0001.dcm``,
        ``OUT/<PatientID>/IM0001_mask.npy``; labels.csv is ``path,path_mr,label,mask``.
    classes : int
        2 (``normal``/``lesion``, the default) or more: ``normal`` plus findings told apart by
        density (see :func:`class_names`); patients cycle through the classes.
    multi_label : bool
        Findings ``nodule`` and ``ground_glass`` independently (one per lung); a row's label is
        ``normal``, ``nodule``, ``ground_glass`` or ``nodule|ground_glass``.
    positive_fraction : float, optional
        Fraction of patients with a finding (class imbalance, e.g. 0.1 for 1:9); default:
        classes in turn (balanced).
    difficulty : {"easy", "medium", "hard"}
        Preset of the difficulty knobs (see :mod:`medzoo.datasets.difficulty`); ``easy`` without
        ``knobs`` is the seed's phantom, byte-identical for the same seed.
    knobs : dict, optional
        Explicit knobs over the preset (``lesion_contrast_hu``, ``lesion_radius_mm``,
        ``distractors``, ``distractor_radius_mm``, ``blur_mm``, ``noise_hu``, ``anatomy``,
        ``scanner``, ``label_noise``).

    Returns
    -------
    dict
        ``patients``, ``files``, ``per_class`` (files per label), ``modalities``, ``labels_csv``,
        ``phi`` (every planted identifying string, UIDs included) and ``patient_folders``.

    Raises
    ------
    ValueError
        On an unknown modality or compression, or sizes out of range.
    """
    if modality not in (*MODALITIES, "mixed"):
        raise ValueError(f"Unknown modality. Expected one of {(*MODALITIES, 'mixed')}. "
                         f"Received: modality={modality!r}")
    if compress not in _COMPRESS:
        raise ValueError(f"Unknown compression. Expected one of {sorted(k for k in _COMPRESS if k)}. "
                         f"Received: compress={compress!r}")
    names = class_names(int(classes), bool(multi_label))
    if positive_fraction is not None and not 0.0 < float(positive_fraction) < 1.0:
        raise ValueError("Argument `positive_fraction` must be in (0, 1). "
                         f"Received: positive_fraction={positive_fraction}")
    if int(patients) < 2 or int(size) < 16 or int(slices) < 1:
        raise ValueError("Expected patients >= 2, size >= 16, slices >= 1. "
                         f"Received: patients={patients}, size={size}, slices={slices}")
    from pydicom.filewriter import dcmwrite

    from medzoo.datasets import difficulty as _difficulty

    level = _difficulty.resolve(difficulty, **(knobs or {}))
    if level is not None and level["label_noise"] and (multi_label or len(names) != 2):
        raise ValueError("Argument `label_noise` needs a two-class task. "
                         f"Received: classes={classes}, multi_label={multi_label}")
    flipped = 0

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, phi_strings, folders = [], set(), []
    per_class = {}
    modalities = {}
    for p in range(int(patients)):
        rng = np.random.default_rng([int(seed), p])
        mod = modality if modality != "mixed" else MODALITIES[(p // 2) % len(MODALITIES)]
        findings = _patient_findings(p, int(classes), bool(multi_label),
                                     None if positive_fraction is None else float(positive_fraction))
        label = "|".join(findings) or "normal"
        phi = _patient_phi(rng, p)
        lesion = None
        for finding in findings:  # a second finding goes to the other lung
            one = _lesion_params(rng, size, slices, side=-lesion[0]["side"] if lesion else None)
            one["density"] = FINDINGS.get(finding, 1.0)
            lesion = [*(lesion or []), one]
        store_params = {"slope": round(float(rng.uniform(0.5, 2.0)), 4)}
        if level is not None:  # a stream of its own: easy's draws stay as they were
            level_rng = np.random.default_rng([int(seed), p, 19])
            level_params = _difficulty.patient(level_rng, level, size, slices, findings, FINDINGS)
            if level_rng.random() < level["label_noise"]:
                label, flipped = _difficulty.flipped(label, names), flipped + 1
        uids = {"study": _uid(seed, p, "study"), "series": _uid(seed, p, "series"),
                "frame": _uid(seed, p, "frame")}
        folder = out / phi["PatientID"]
        folder.mkdir(exist_ok=True)
        folders.append(phi["PatientID"])
        phi_strings.update(v for v in phi.values())
        phi_strings.update((uids["study"], uids["series"], uids["frame"]))
        mods = ("ct", "mr") if paired else (mod,)
        if paired:
            uids["series_mr"] = _uid(seed, p, "series-mr")
            phi_strings.add(uids["series_mr"])
        for k in range(int(slices)):
            name = f"IM{k + 1:04d}"
            rels = []
            for j, m in enumerate(mods):
                # co-registered: the same anatomy and lesion, noise of its own per modality
                sub_rng = rng if j == 0 else np.random.default_rng([int(seed), p, k, 7])
                if level is None:
                    values, mask = phantom_slice(sub_rng, size, lesion, k, m)
                else:
                    values, mask = _difficulty.phantom_slice(sub_rng, size, level_params, k, m,
                                                             level, _TISSUE[m])
                stored, tags = _store(values, m, store_params)
                sop = dict(uids, sop=_uid(seed, p, "sop", k) if j == 0 else _uid(seed, p, m, k))
                if j:
                    sop["series"] = uids["series_mr"]
                phi_strings.add(sop["sop"])
                ds = _dataset(stored, tags, m, phi, sop, k, size, seed, p)
                if paired:
                    ds.SeriesNumber = j + 1
                if _COMPRESS[compress]:
                    if compress == "j2k" and stored.ndim == 3:
                        # colour in JPEG 2000 is stored through its reversible colour
                        # transform, and says so (PS3.5 8.2.4); it decodes back to RGB
                        ds.PhotometricInterpretation = "YBR_RCT"
                    ds.compress(_COMPRESS[compress], stored)
                buf = io.BytesIO()
                dcmwrite(buf, ds, enforce_file_format=True)
                sub = folder / m.upper() if paired else folder
                sub.mkdir(exist_ok=True)
                _atomic_bytes(sub / f"{name}.dcm", buf.getvalue())
                rels.append(f"{phi['PatientID']}/{m.upper() + '/' if paired else ''}{name}.dcm")
                modalities[m.upper()] = modalities.get(m.upper(), 0) + 1
            mbuf = io.BytesIO()
            np.save(mbuf, mask, allow_pickle=False)
            _atomic_bytes(folder / f"{name}_mask.npy", mbuf.getvalue())
            rows.append((*rels, label, f"{phi['PatientID']}/{name}_mask.npy"))
            per_class[label] = per_class.get(label, 0) + 1
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["path", "path_mr", "label", "mask"] if paired else ["path", "label", "mask"])
    writer.writerows(rows)
    _atomic_bytes(out / "labels.csv", text.getvalue().encode())
    return {
        "patients": int(patients),
        "files": len(rows) * (2 if paired else 1),
        "per_class": {**{n: 0 for n in names if not multi_label}, **per_class},
        "classes": names,
        "multi_label": bool(multi_label),
        "modalities": modalities,
        "labels_csv": str(out / "labels.csv"),
        "phi": sorted(phi_strings),
        "patient_folders": folders,
        **({"difficulty": level, "labels_flipped": flipped} if level is not None else {}),
    }
