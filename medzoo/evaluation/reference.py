"""Score predicted segmentations against reference annotations of the same series, in mm.

``medzoo evaluate --predictions PRED --reference REF --images DICOM_DIR --out EVAL``: every
prediction (a DICOM SEG, e.g. ``out/seg/series-NNN.dcm`` from ``medzoo predict``) is paired
with the series it references (by Series Instance UID, found among the images under DICOM_DIR)
and with the reference annotation of that series under REF: a SEG or RTSTRUCT referencing the
same series, or a NIfTI named after the series folder (``REF/<folder name>.nii.gz``). Both are
read onto the series' grid by :func:`medzoo.datasets.annotations.read_label_map` (one class
list, one segment map), and each structure is scored: Dice, and HD95 (mm) — the larger of the
two directed 95th percentiles of surface-to-surface distances, as MONAI computes it — by
:mod:`medzoo.evaluation.surface` (the metrics of volume evaluation).

No TensorFlow and no model: predictions are files. Per-structure results go to
``per_case.csv`` and ``metrics.json``; a prediction that cannot be paired or read is a line in
``rejected.csv`` (predictions = evaluated + rejected). Cases are numbered; their paths are
printed on the terminal only (they may name patients).
"""

from __future__ import annotations

import contextlib
import math
import sys
import warnings
from pathlib import Path

import numpy as np

from medzoo import fsio
from medzoo.errors import InputError
from medzoo.evaluation.surface import binary_metrics



@contextlib.contextmanager
def _silenced():
    """pydicom/highdicom warnings off: they quote element values, which may be PHI (UIDs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ------------------------------------------------------------------------------ metrics
def structure_metrics(pred_labels, pred_classes, ref_labels, ref_classes, spacing) -> dict:
    """``{class: {"dice", "hd95_mm", "pred_voxels", "ref_voxels"}}`` for every class the
    prediction declares (but background), matched to the reference's class of the same name.

    Dice and HD95 are :func:`medzoo.evaluation.surface.binary_metrics`'s (one implementation
    of the mm metrics); ``hd95_mm`` is 0.0 when both masks are empty and None when exactly one
    is (undefined).

    Raises
    ------
    ValueError
        A predicted class the reference does not have.
    """
    out = {}
    for value, name in enumerate(pred_classes):
        if value == 0:
            continue
        if name not in ref_classes:
            raise ValueError(f"predicted structure {name!r} is not a reference class (expected "
                             f"one of {list(ref_classes[1:])}; map it with --segment-map)")
        p, r = pred_labels == value, ref_labels == ref_classes.index(name)
        m = binary_metrics(p, r, spacing)
        # this report's conventions: HD95 0 when both masks are empty, None when one is
        hd = m["hd95"] if math.isfinite(m["hd95"]) else (0.0 if m["dice"] == 1.0 else None)
        out[name] = {"dice": m["dice"], "hd95_mm": hd,
                     "pred_voxels": int(p.sum()), "ref_voxels": int(r.sum())}
    return out


# ------------------------------------------------------------------------------ pairing
def _series_index(images_dir: Path) -> dict:
    """Series UID → (folder relative to images_dir, headers) for every image under it."""
    import pydicom

    series: dict[str, tuple] = {}
    for path in sorted(p for p in images_dir.rglob("*") if p.is_file()):
        try:
            with _silenced():
                ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not DICOM: not a slice of any series
            continue
        if str(ds.get("Modality", "")) in ("SEG", "RTSTRUCT", "SR") or "Rows" not in ds:
            continue
        uid = str(ds.get("SeriesInstanceUID", ""))
        folder = path.parent.relative_to(images_dir).as_posix()
        series.setdefault(uid, (folder, []))[1].append(ds)
    return series


def _annotations(folder: Path) -> tuple[dict, dict]:
    """DICOM annotations by referenced series UID, and NIfTI files by name, under ``folder``."""
    import pydicom

    from medzoo.datasets.annotations import referenced_series
    by_series: dict[str, list[Path]] = {}
    nifti: dict[str, Path] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.name.lower()
        if name.endswith((".nii", ".nii.gz")):
            nifti[path.name[:-7] if name.endswith(".gz") else path.name[:-4]] = path
            continue
        try:
            with _silenced():
                ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        except Exception:  # noqa: BLE001
            continue
        if str(ds.get("Modality", "")) not in ("SEG", "RTSTRUCT"):
            continue
        for uid in referenced_series(ds):
            by_series.setdefault(uid, []).append(path)
    return by_series, nifti


def evaluate_against_reference(predictions, reference, images, out, *, class_names=None,
                               segment_map=None) -> dict:
    """Score every predicted SEG under ``predictions`` against its reference (module docstring).

    Parameters
    ----------
    predictions, reference, images, out : path-like
        Folders: predicted SEGs, reference SEG/RTSTRUCT/NIfTI, the source DICOM series, and the
        eval dir to write (``metrics.json``, ``per_case.csv``, ``rejected.csv``).
    class_names : list of str, optional
        Classes both sides are mapped onto (``background`` first); default: the reference's.
    segment_map : dict, optional
        Segment / ROI name → class, applied to predictions and references alike.

    Returns
    -------
    dict
        ``predictions, evaluated, rejected, structures, per_structure`` (mean Dice, mean HD95 over
        cases where it is defined, ``n``, ``hd95_undefined``).
    """
    from medzoo.datasets.annotations import AnnotationError, read_label_map
    from medzoo.datasets.geometry import series_geometry

    predictions, reference, images, out = (Path(p) for p in (predictions, reference, images, out))
    for name, folder in (("--predictions", predictions), ("--reference", reference),
                         ("--images", images)):
        if not folder.is_dir():
            raise InputError(f"{name} must be a folder. Received: {folder}")
    series = _series_index(images)
    refs, ref_nifti = _annotations(reference)
    preds, _ = _annotations(predictions)
    pred_files = sorted({p for paths in preds.values() for p in paths})
    pred_series = {p: [u for u, paths in preds.items() if p in paths] for p in pred_files}
    if not pred_files:
        raise InputError(f"--predictions {predictions}: expected DICOM SEG files. Received: none")
    rows, rejected, per_structure = [], [], {}
    for n, pred in enumerate(pred_files, start=1):
        rel = pred.relative_to(predictions).as_posix()
        try:
            uids = [u for u in pred_series[pred] if u in series]
            if not uids:
                raise AnnotationError("its series is not among --images")
            folder, headers = series[uids[0]]
            ref = (refs.get(uids[0]) or [None])[0] or ref_nifti.get(Path(folder).name)
            if ref is None:
                raise AnnotationError("no reference annotation for its series under --reference")
            try:
                geometry = series_geometry(headers)
            except ValueError as e:
                raise AnnotationError(f"series geometry: {e}") from None
            ref_map = read_label_map(ref, geometry, class_names=class_names,
                                     segment_map=segment_map)
            pred_map = read_label_map(pred, geometry, segment_map=segment_map)
            metrics = structure_metrics(pred_map.array, pred_map.classes, ref_map.array,
                                        ref_map.classes, geometry.spacing)
        except (AnnotationError, ValueError) as e:
            rejected.append({"row": n, "path": rel, "reason": str(e)})
            print(f"medzoo evaluate: rejected {rel}: {e}", file=sys.stderr)
            continue
        print(f"medzoo evaluate: case {n} = {rel}", file=sys.stderr)
        for name, m in metrics.items():
            rows.append({"case": n, "structure": name, "dice": round(m["dice"], 6),
                         "hd95_mm": "" if m["hd95_mm"] is None else round(m["hd95_mm"], 4),
                         "pred_voxels": m["pred_voxels"], "ref_voxels": m["ref_voxels"]})
            per_structure.setdefault(name, []).append(m)
    summary = {"predictions": len(pred_files), "evaluated": len(pred_files) - len(rejected),
               "rejected": len(rejected), "structures": list(per_structure),
               "per_structure": {name: _mean(ms) for name, ms in per_structure.items()}}
    out.mkdir(parents=True, exist_ok=True)
    fsio.write_csv(out / "per_case.csv", rows,
                   ("case", "structure", "dice", "hd95_mm", "pred_voxels", "ref_voxels"))
    fsio.write_csv(out / "rejected.csv", rejected, ("row", "path", "reason"))
    fsio.write_json(out / "metrics.json", summary)
    return summary


def _mean(metrics) -> dict:
    hds = [m["hd95_mm"] for m in metrics if m["hd95_mm"] is not None]
    return {"dice": float(np.mean([m["dice"] for m in metrics])),
            "hd95_mm": float(np.mean(hds)) if hds else None, "n": len(metrics),
            "hd95_undefined": len(metrics) - len(hds)}


def describe(summary: dict) -> str:
    """One line per structure, then the counts."""
    lines = []
    for name, m in summary["per_structure"].items():
        hd = "n/a" if m["hd95_mm"] is None or math.isnan(m["hd95_mm"]) else f"{m['hd95_mm']:.2f} mm"
        lines.append(f"{name}: Dice {m['dice']:.3f}, HD95 {hd} (n={m['n']})")
    lines.append(f"evaluated {summary['evaluated']} of {summary['predictions']} predictions, "
                 f"rejected {summary['rejected']}")
    return "\n".join(lines)
