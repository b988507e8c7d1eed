"""``medzoo predict`` with a volume export: whole DICOM series → one multi-class DICOM SEG each.

For every series (grouped by UIDs exactly as :mod:`medzoo.deploy.predict` groups them):

0. the domain check (:mod:`medzoo.deploy.domain`, through :class:`medzoo.deploy.screening.
   Screen`, the same rules and tolerances as 2D predict) against the export's training domain:
   modality, non-image objects (RT Dose …), colour, pixel spacing and size from the headers
   first; the slice spacing (geometry) and the median modality value of the middle slice once
   the series is read, before any resampling or sliding window. A series outside is listed in
   ``not_analysed.csv`` with its reasons and not segmented, unless ``--allow-out-of-domain``:
   then it is segmented and marked (``out_of_domain`` column of predictions.csv, studies.json,
   the findings report);
1. the slices' geometry (:func:`medzoo.datasets.geometry.series_geometry`; uneven, missing or
   mixed-orientation slices are rejected with the reason), the stored values through the
   modality LUT (rescale slope/intercept);
2. normalised per the export's plan (CT: clip + z-score with the training statistics; MR:
   per-volume z-score) and resampled to the plan's target spacing (cubic);
3. sliding-window inference through onnxruntime
   (:func:`medzoo.evaluation.sliding_window.sliding_window_inference`, Gaussian blending);
4. probabilities resampled back to the source grid class by class (linear), argmax there;
5. one multi-frame DICOM SEG (``seg/series-NNN.dcm``, BINARY, one segment per foreground class,
   every source slice referenced, empty frames kept) and the findings: per-structure volumes in
   mL and, for lesion-like classes, connected components with their volume and longest diameter.

Out dir (built in a hidden sibling and renamed into place): ``predictions.csv`` (one row per
series and class), ``lesions.csv`` (one row per component), ``studies.json`` (what ``--send``
reads), ``findings/study-NNN.md``, ``seg/series-NNN.dcm``, ``rejected.csv``,
``not_analysed.csv``. Studies and series
are medzoo's counters; no UID, name or input path is written outside ``seg/`` (the SEG repeats
its source study's identifiers by design, as in :mod:`medzoo.deploy.dicom_seg`).

This module orchestrates; the steps live beside it: :mod:`medzoo.deploy.volume_grid` (reading,
normalising and resampling a series), :mod:`medzoo.deploy.volume_findings` (volumes, lesions,
the report) and :mod:`medzoo.deploy.volume_seg` (the DICOM SEG).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from medzoo import __version__, fsio
from medzoo.deploy.volume_findings import (LESION_WORDS, is_lesion_class, render_volume_report,
                                           structure_findings)
from medzoo.deploy.volume_grid import (grid_resampler, normalize, normalizer, read_dicom,
                                       resample_to_shape, series_volume, target_shape)
from medzoo.deploy.volume_seg import build_multiclass_segmentation
from medzoo.errors import InputError

# normalize ... build_multiclass_segmentation moved to the volume_* modules; still importable
# from here, where callers and tests have always found them.
__all__ = ["is_volume_export", "predict_volumes", "normalize", "resample_to_shape",
           "target_shape", "structure_findings", "LESION_WORDS", "build_multiclass_segmentation",
           "render_volume_report"]

PREDICTION_COLUMNS = ("study", "series", "class", "slices", "voxels", "volume_ml", "lesions",
                      "max_diameter_mm", "seconds", "out_of_domain")
LESION_COLUMNS = ("study", "series", "class", "lesion", "volume_ml", "diameter_mm", "first_slice",
                  "last_slice")


def is_volume_export(export_dir) -> bool:
    """True for an export version dir of a 3D patch-trained segmenter (card ``volume`` section)."""
    card = Path(export_dir) / "model_card.json"
    if not card.is_file():
        return False
    try:
        return isinstance(fsio.read_json(card).get("volume"), dict)
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------- the command


def predict_volumes(export_dir, dicom_dir, out_dir, *, batch_size: int = 2,
                    overlap: float = 0.5, mirror_axes=(), progress: bool | None = None,
                    allow_out_of_domain: bool = False) -> dict:
    """Segment every DICOM series under ``dicom_dir`` with a volume export; write ``out_dir``.

    Parameters
    ----------
    export_dir : path-like
        A volume export ``BASE/NAME/VERSION`` (``model.onnx`` + ``model_card.json``).
    dicom_dir, out_dir : path-like
        Input folder (walked recursively); a new or empty output folder.
    batch_size : int
        Windows per onnxruntime call.
    overlap, mirror_axes : sliding-window overlap and mirroring axes (TTA).
    progress : bool, optional
        A line per series on stderr (None: only on a terminal).
    allow_out_of_domain : bool
        Segment series outside the training domain anyway, marked (by default they are listed
        in ``not_analysed.csv`` with the reasons and not segmented).

    Returns
    -------
    dict: ``inputs, predicted, rejected, not_analysed, not_analysed_series, ignored, images,
    studies, series, positive_studies, rejected_by_reason, threshold, threshold_source, model,
    version, runtime, seg_files, seconds_per_series, out``;
    ``inputs == predicted + rejected + not_analysed``.

    Raises
    ------
    InputError
        Not a volume export, no DICOM folder, an out dir holding files, or no usable series.
    """
    from medzoo.deploy.outputs import check_new_out_dir, staged_out_dir
    from medzoo.deploy.sources import input_files
    from medzoo.evaluation.runtime import OnnxModel

    export_dir, dicom_dir, out = Path(export_dir), Path(dicom_dir), Path(out_dir)
    if not is_volume_export(export_dir):
        raise InputError(f"{export_dir}: expected a volume export (model_card.json with a "
                         "`volume` section). Received: none")
    if not dicom_dir.is_dir():
        raise InputError(f"DICOM dir {dicom_dir}: expected a folder. Received: no such folder")
    check_new_out_dir(out)
    from medzoo.deploy.screening import Screen

    card = fsio.read_json(export_dir / "model_card.json")
    model = OnnxModel(export_dir / "model.onnx")
    screen = Screen(export_dir, allow_out_of_domain)
    files, ignored = input_files(dicom_dir, skip=out)
    with staged_out_dir(out) as staging:
        summary = _predict(model, card, files, dicom_dir, staging, batch_size=int(batch_size),
                           overlap=overlap, mirror_axes=mirror_axes, screen=screen,
                           progress=sys.stderr.isatty() if progress is None else progress)
    summary.update(ignored=ignored, runtime="onnx", out=str(out),
                   seg_files=[str(out / "seg" / name) for name in summary.pop("seg_names")])
    return summary


class _NotAnalysed(Exception):
    """A series outside the training domain, not to be segmented (its reasons: ``args``)."""


def _predict(model, card: dict, files, dicom_dir: Path, out: Path, *, batch_size: int,
             overlap: float, mirror_axes, progress: bool, screen) -> dict:
    from medzoo.datasets.geometry import series_geometry
    from medzoo.deploy import findings as F
    from medzoo.deploy.outputs import NOT_ANALYSED_COLUMNS
    from medzoo.deploy.findings import DISCLAIMER
    from medzoo.deploy.sources import group, scan_files
    from medzoo.evaluation.sliding_window import sliding_window_inference

    meta = model.metadata
    plan, classes = meta["plan"], list(meta["label_classes"])
    patch = [int(p) for p in plan["patch_size"]]
    rejected: list[tuple[str, str]] = []

    def reject(rel: str, reason: str):
        rejected.append((rel, reason))
        print(f"medzoo predict: rejected {rel}: {reason}", file=sys.stderr)

    sources = []
    for rel, src, reason in scan_files(files, dicom_dir):
        if src is None:
            reject(rel, reason)
        else:
            sources.append(src)

    model_info = {"name": card["model"]["name"], "version": card["model"]["version"],
                  "architecture": card["model"]["architecture"], "task": "segmentation",
                  "classes": classes}
    studies, prediction_rows, lesion_rows, seg_names, timings = [], [], [], [], []
    not_analysed = []
    series_counter = 0

    def skip(study_no, index, objects, reasons):
        more = (f" and {len(objects) - 1} more file{'s' if len(objects) > 2 else ''}"
                if len(objects) > 1 else "")
        print(f"medzoo predict: not analysed: {objects[0].rel}{more}: {'; '.join(reasons)}",
              file=sys.stderr)
        modalities = sorted({(o.facts or {}).get("modality", "") for o in objects} - {""})
        return {"study": study_no, "series": index, "files": len(objects),
                "images": sum(o.frames for o in objects),
                "modality": ", ".join(modalities) or None, "reason": "; ".join(reasons)}

    for series_list in group(sources):
        study_no = len(studies) + 1
        study = {"study": study_no, "images": 0, "series": [], "max_score": 0.0,
                 "positive": False, "positive_images": 0}
        skipped = []
        for index, objects in enumerate(series_list, start=1):
            started = time.perf_counter()
            reasons = screen.series_reasons(objects)  # headers only: before any pixel is read
            try:
                if reasons and not screen.allow:
                    raise _NotAnalysed(*reasons)
                result = _predict_series(model, objects, plan, classes, patch, batch_size,
                                         overlap, mirror_axes, series_geometry,
                                         sliding_window_inference, screen, reasons)
            except _NotAnalysed as exc:
                skipped.append(skip(study_no, index, objects, list(exc.args)))
                continue
            except (ValueError, InputError) as exc:
                reason = str(exc).splitlines()[0][:200]
                for src in objects:
                    reject(src.rel, f"series not analysed: {reason}")
                continue
            series_counter += 1
            seg_name = f"series-{series_counter:03d}.dcm"
            seg = build_multiclass_segmentation(
                result["headers"], result["labels"], classes, model_name=model_info["name"],
                model_version=model_info["version"], series_number=900 + series_counter)
            with fsio.atomic_path(out / "seg" / seg_name, suffix=".dcm") as tmp:
                seg.save_as(str(tmp), enforce_file_format=True)
            seg_names.append(seg_name)
            seconds = time.perf_counter() - started
            timings.append(seconds)
            found = result["findings"]
            lesion_slices = result["lesion_slices"]
            series_entry = {"series": series_counter, "slices": len(objects),
                            "spacing_mm": [round(v, 4) for v in result["spacing"]],
                            "structures": found, "max_lesion_probability": result["max_lesion_p"],
                            "seg": f"seg/{seg_name}", "seconds": round(seconds, 3),
                            "out_of_domain": list(reasons)}
            study["series"].append(series_entry)
            study["images"] += len(objects)
            study["max_score"] = max(study["max_score"], result["max_lesion_p"])
            study["positive_images"] += lesion_slices
            study["positive"] |= lesion_slices > 0
            for name, entry in found.items():
                lesions = entry["lesions"]
                prediction_rows.append({
                    "study": study_no, "series": series_counter, "class": name,
                    "slices": len(objects), "voxels": entry["voxels"],
                    "volume_ml": f"{entry['volume_ml']:.4f}",
                    "lesions": "" if lesions is None else len(lesions),
                    "max_diameter_mm": "" if not lesions else
                    f"{max(item['diameter_mm'] for item in lesions):.2f}",
                    "seconds": f"{seconds:.3f}", "out_of_domain": "; ".join(reasons)})
                for item in lesions or []:
                    lesion_rows.append({"study": study_no, "series": series_counter,
                                        "class": name, "lesion": item["lesion"],
                                        "volume_ml": f"{item['volume_ml']:.4f}",
                                        "diameter_mm": f"{item['diameter_mm']:.2f}",
                                        "first_slice": item["first_slice"],
                                        "last_slice": item["last_slice"]})
            if progress:
                print(f"medzoo predict: study {study_no} series {series_counter}: "
                      f"{len(objects)} slices in {seconds:.1f} s", file=sys.stderr)
        not_analysed += skipped
        if study["series"]:
            if skipped:
                study["not_analysed"] = skipped
            study["analysed"] = True
            study["out_of_domain"] = any(s["out_of_domain"] for s in study["series"])
            studies.append(study)
            fsio.write_text(out / "findings" / f"study-{study_no:03d}.md",
                            render_volume_report(study, model_info, DISCLAIMER))
        elif skipped:  # every series outside the domain: listed, with a report saying so
            studies.append({"study": study_no, "images": 0, "analysed": False,
                            "positive": False, "series": [], "not_analysed": skipped,
                            "finding": f"Not analysed: {skipped[0]['reason']}",
                            "report": f"findings/study-{study_no:03d}.md"})
            fsio.write_text(out / "findings" / f"study-{study_no:03d}.md",
                            F.render_not_analysed_report(
                                study_no, skipped, model=model_info,
                                medzoo_version=__version__))
    if not studies:
        raise InputError(f"No readable input: all {len(files)} input files were rejected "
                         "(see the lines above)")
    fsio.write_csv(out / "predictions.csv", prediction_rows, PREDICTION_COLUMNS)
    fsio.write_csv(out / "lesions.csv", lesion_rows, LESION_COLUMNS)
    fsio.write_csv(out / "rejected.csv", [{"path": p, "reason": r} for p, r in rejected],
                   ("path", "reason"))
    fsio.write_csv(out / "not_analysed.csv", not_analysed, NOT_ANALYSED_COLUMNS)
    fsio.write_json(out / "studies.json", {"model": model_info, "threshold": 0.5,
                                          "threshold_source": "argmax over classes",
                                          "studies": studies, **screen.document()})
    by_reason: dict[str, int] = {}
    for _, reason in rejected:
        by_reason[reason] = by_reason.get(reason, 0) + 1
    n_rejected = len({p for p, _ in rejected})
    n_skipped = sum(item["files"] for item in not_analysed)
    return {"inputs": len(files), "predicted": len(files) - n_rejected - n_skipped,
            "rejected": n_rejected, "not_analysed": n_skipped,
            "not_analysed_series": len(not_analysed),
            "not_analysed_studies": sum(1 for s in studies if s.get("analysed") is False),
            "images": sum(s["images"] for s in studies), "studies": len(studies),
            "series": series_counter, "positive_studies": sum(s["positive"] for s in studies),
            "rejected_by_reason": by_reason, "threshold": 0.5,
            "threshold_source": "argmax over classes", "model": model_info["name"],
            "version": model_info["version"], "seg_names": seg_names,
            "seconds_per_series": round(float(np.mean(timings)), 3) if timings else None}


def _predict_series(model, objects, plan, classes, patch, batch_size, overlap, mirror_axes,
                    series_geometry, sliding_window_inference, screen, reasons: list) -> dict:
    """One series through the whole chain; raises ValueError with a PHI-free reason, or
    :class:`_NotAnalysed` when its slice spacing or intensities lie outside the training domain
    (``reasons`` gets them; with ``--allow-out-of-domain`` the series goes on, marked)."""
    if any(src.frames > 1 for src in objects):
        raise ValueError("multi-frame images: expected one slice per file")
    if len(objects) < 2:
        raise ValueError("a volume model needs at least 2 slices. Received: 1")
    headers = [read_dicom(src.path, pixels=False) for src in objects]
    geometry = series_geometry(headers)
    problem = geometry.check_regular()
    if problem:
        raise ValueError(problem)
    if len(set(geometry.sop_uids)) != len(headers):
        raise ValueError("slices without distinct SOPInstanceUIDs")
    by_uid = {src.sop_uid: src.path for src in objects}
    header_by_uid = {str(h.SOPInstanceUID): h for h in headers}
    spacing = geometry.spacing
    target = tuple(float(v) for v in plan["target_spacing"])
    values = series_volume(headers, by_uid, geometry)
    reasons += screen.volume_reasons(geometry.slice_spacing, values[len(values) // 2])
    if reasons and not screen.allow:
        raise _NotAnalysed(*reasons)
    volume = normalizer()(values, plan.get("normalization"))
    del values
    shape = geometry.shape
    work_shape = target_shape(shape, spacing, target)
    to_grid = grid_resampler()
    work = to_grid(volume, spacing, work_shape, target, 3)[..., None]
    del volume
    probs = sliding_window_inference(work, patch, lambda b: model.predict(b, batch_size=batch_size),
                                     overlap=overlap, batch_size=batch_size,
                                     mirror_axes=mirror_axes)
    del work
    # Back to the source grid class by class: one float32 map at a time, never K of them.
    best = np.full(shape, -1.0, np.float32)
    labels = np.zeros(shape, np.uint8)
    max_lesion_p = 0.0
    for index, name in enumerate(classes):
        up = to_grid(probs[..., index], target, shape, spacing, 1)
        better = up > best
        labels[better] = index
        best[better] = up[better]
        if is_lesion_class(name):
            max_lesion_p = max(max_lesion_p, float(up.max()))
    del probs, best
    findings = structure_findings(labels, spacing, classes)
    lesion_indices = [i for i, name in enumerate(classes) if i and is_lesion_class(name)]
    lesion_slices = int(np.count_nonzero(np.isin(labels, lesion_indices).any(axis=(1, 2))))
    return {"headers": [header_by_uid[uid] for uid in geometry.sop_uids], "labels": labels,
            "spacing": spacing, "findings": findings, "lesion_slices": lesion_slices,
            "max_lesion_p": round(max_lesion_p, 6)}
