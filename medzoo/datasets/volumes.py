"""Native-spacing volume ingest: one record per series at the plan's target spacing.

``medzoo data ingest DIR --labels labels.csv --out DS --spacing auto|Z,Y,X`` (docs/internals.md,
"Native-spacing volumes"). Two passes over labels.csv, one series at a time:

1. *Fingerprint*: every file's header (no pixels) → :func:`medzoo.datasets.geometry.
   series_geometry` (sorted along the normal, regular grid checked), the label map checked
   against the series (shape, class values), and a sample of foreground intensities from a few
   slices. Series that fail are rejected with their reason; the accepted ones make the
   fingerprint, and :func:`medzoo.datasets.plan.make_plan` the plan.
2. *Write*: each accepted series decoded whole (modality values, HU for CT), normalised per the
   plan, resampled to the target spacing (cubic; label maps label-wise), padded at the far end
   when a little smaller than one patch, and written as one record with its geometry.

Pass 2 runs in ``workers`` processes when asked (records written here, in order). Peak memory
per process is a few copies of one series (the float32 volume, the resampled output and one
intermediate per axis pass, the label map and its per-class interpolation), whatever the number
of series (bench/volumes_ingest.py measures it). Everything is written into a hidden
sibling folder renamed to DS at the end (no resume: a killed ingest leaves no DS and is simply
run again; the next run removes the killed one's folder). Every input file ends in index.csv (through its series' record) or rejected.csv.

``dataset.json`` ``domain`` (:mod:`medzoo.datasets.domain`, the schema 2D ingest writes, plus
``slice_spacing_mm``): the header facts of every slice of every written series and the
modality values of the slices pass 1 samples (up to :data:`SAMPLE_SLICES` per series).
"""

from __future__ import annotations

import collections
import os
import sys
from pathlib import Path

import numpy as np

from medzoo import fsio
from medzoo.datasets import (deid, dicom, manifest, plan as planning, records, resample, splits,
                             volume_dir)
from medzoo.datasets.domain import DomainAccumulator, header_facts, object_facts, sample_grid
from medzoo.datasets.geometry import SeriesGeometry, series_geometry
from medzoo.datasets.label_maps import (SeriesRejected, load_label_map, remap,
                                        resolve_label_classes)
from medzoo.errors import InputError

SCHEMA_VERSION = 1
SAMPLE_SLICES = 8
"""Slices per series whose pixels the fingerprint samples (evenly spaced)."""
MIN_PATCH_SHARE = 0.5
"""A volume is padded up to the patch when it covers at least this share of it along every
axis; smaller ones are rejected ("volume too small for one patch")."""


def _bar(iterable, desc: str, progress, **kw):
    from tqdm import tqdm

    class Bar(tqdm):
        monitor_interval = 0  # no monitor thread: workers may then be forked (one thread)

    return Bar(iterable, unit="series", file=sys.stderr, desc=desc,
               disable=None if progress is None else not progress, **kw)


def sample_slices(n: int) -> np.ndarray:
    """Indices of up to :data:`SAMPLE_SLICES` slices of ``n``, evenly spaced, first and last."""
    return np.unique(np.linspace(0, n - 1, min(SAMPLE_SLICES, n)).round().astype(int))


def parse_spacing(spacing):
    """``"auto"`` → None; ``"Z,Y,X"`` or a 3-sequence → three positive floats (mm).

    Raises
    ------
    InputError
        Anything else.
    """
    if spacing is None or (isinstance(spacing, str) and spacing.strip().lower() == "auto"):
        return None
    values = planning.positive_triple(spacing.split(",") if isinstance(spacing, str) else spacing)
    if values is None:
        raise InputError(f"--spacing must be auto or three positive numbers Z,Y,X in mm. "
                         f"Received: {spacing!r}")
    return values


def parse_triple(text, name: str):
    """``"D,H,W"`` → three positive ints (None stays None)."""
    if text is None:
        return None
    values = planning.positive_triple(text.split(",") if isinstance(text, str) else text, int)
    if values is None:
        raise InputError(f"{name} must be three positive integers D,H,W. Received: {text!r}")
    return values


def _rows(labels_csv):
    rows = manifest.read_labels(labels_csv)
    if rows[0].inputs:
        raise InputError("Native-spacing volumes take one input column (path). Received: "
                         f"columns {', '.join(n for n, _ in rows[0].columns)}")
    return rows


def _series_files(row) -> tuple[list[Path], str | None]:
    """The files of a row's series folder (its own label map excluded), or a row-level reason."""
    path = row.path
    if not path.exists():
        return [path], "file not found"
    if not path.is_dir():
        return [path], "expected a series folder (one folder per series for --spacing)"
    files = manifest.expand_path(path)
    if row.mask is not None:
        files = [f for f in files if f.resolve() != row.mask.resolve()]
    if not files:
        return [path], "empty folder"
    if not row.label:
        return files, "label missing"
    if row.mask is not None and not row.mask.is_file():
        return files, "mask file missing"
    return files, None


def _read_headers(files):
    """Headers of the files (no pixels) → (headers, {file: reason})."""
    import warnings

    import pydicom
    from pydicom.errors import InvalidDicomError

    headers, bad = [], {}
    for path in files:
        try:
            dicom._check_file(path)
        except dicom.DicomRejected as exc:
            bad[str(path)] = exc.reason
            continue
        try:
            with warnings.catch_warnings():  # pydicom's warnings quote values (PHI)
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError,
                IndexError, AttributeError):
            bad[str(path)] = "not DICOM"
            continue
        kind = dicom.non_image_kind(str(ds.get("SOPClassUID", "") or ""))
        if kind:
            bad[str(path)] = f"not an image ({kind})"
            continue
        headers.append((path, ds))
    return headers, bad


def _pseudonyms(ds, path: str, key: bytes) -> dict:
    patient_id = str(ds.get("PatientID", "") or "")
    study, series = str(ds.get("StudyInstanceUID", "") or ""), str(ds.get("SeriesInstanceUID", ""))
    if patient_id:
        patient = deid.pseudonym(key, "patient", patient_id)
    elif study:
        patient = deid.pseudonym(key, "patient-study", study)
    else:
        patient = deid.pseudonym(key, "patient-file", path)
    return {"patient": patient, "study": deid.pseudonym(key, "study", study or f"file:{path}"),
            "series": deid.pseudonym(key, "series", series or f"file:{path}")}


def fingerprint_series(row, label_classes, key: bytes, segment_map=None, sample_n=10_000,
                       seed=0) -> dict:
    """Pass 1 for one labels.csv row: headers, geometry, label map checks, intensity sample.

    Returns
    -------
    dict
        ``files`` (sorted along the normal), ``geometry``, ``modality``, ``sample``,
        ``classes`` (the label map's, or None), pseudonyms, ``bad`` ({file: reason} of files
        left out of an accepted series — none today: any bad file rejects its series).

    Raises
    ------
    SeriesRejected
    """
    files, reason = _series_files(row)
    if reason:
        raise SeriesRejected(reason)
    headers, bad = _read_headers(files)
    if bad:
        first = next(iter(bad.values()))
        raise SeriesRejected(f"series has unreadable files ({len(bad)} of {len(files)}: "
                             f"{first})", bad)
    series_uids = {str(ds.get("SeriesInstanceUID", "")) for _, ds in headers}
    if len(series_uids) > 1:
        raise SeriesRejected(f"folder holds {len(series_uids)} series (expected one per row)")
    if len(headers) < 2:
        raise SeriesRejected("a volume needs at least 2 slices (received 1)")
    try:
        geometry = series_geometry([ds for _, ds in headers])
    except ValueError as exc:
        raise SeriesRejected(str(exc)) from None
    irregular = geometry.check_regular()
    if irregular:
        raise SeriesRejected(irregular)
    normal = geometry.normal
    order = np.argsort([float(np.dot(normal, [float(v) for v in ds.ImagePositionPatient]))
                        for _, ds in headers], kind="stable")
    sorted_files = [headers[i][0] for i in order]
    first = headers[0][1]
    modality = str(first.get("Modality", "OT") or "OT").upper()
    labels, classes = None, None
    if row.mask is not None:
        labels, classes = load_label_map(row.mask, geometry, label_classes, segment_map)
        labels = remap(labels, classes, label_classes)
    picks = sample_slices(len(sorted_files))
    values, fg, sampled = [], [], {}
    for k in picks:
        try:
            frame = dicom.read_modality_values(sorted_files[k])[0]
        except dicom.DicomRejected as exc:
            raise SeriesRejected(f"series has an undecodable slice ({exc.reason})",
                                 {str(sorted_files[k]): exc.reason}) from None
        if frame.shape != (geometry.rows, geometry.columns):
            raise SeriesRejected("slices must share rows × columns")
        values.append(frame)
        fg.append(None if labels is None else labels[k])
        sampled[sorted_files[k]] = sample_grid(frame[None])
    stack = np.stack(values)
    mask_stack = None if labels is None else np.stack(fg)
    sample = planning.foreground_sample(stack, mask_stack, n=sample_n, seed=seed)
    sops = {str(ds.get("SOPInstanceUID", "")) for _, ds in headers}
    # The training domain (medzoo.datasets.domain): every slice's header, the intensities of the
    # slices sampled above (their modality values are decoded here anyway), the slice spacing.
    by_path = dict(headers)
    domain = [dict(object_facts(by_path[f], sampled[f]) if f in sampled
                   else header_facts(by_path[f]), slice_spacing=geometry.slice_spacing)
              for f in sorted_files]
    return {"row": row, "files": sorted_files, "geometry": geometry, "modality": modality,
            "sample": sample, "classes": classes, "sops": sops, "domain": domain,
            **_pseudonyms(first, str(row.path), key)}


def _decode_series(files, geometry: SeriesGeometry) -> np.ndarray:
    volume = np.empty(geometry.shape, np.float32)
    for k, path in enumerate(files):
        try:
            frame = dicom.read_modality_values(path)
        except dicom.DicomRejected as exc:
            raise SeriesRejected(f"series has an undecodable slice ({exc.reason})",
                                 {str(path): exc.reason}) from None
        if frame.shape[0] != 1 or frame.shape[1:] != volume.shape[1:]:
            raise SeriesRejected("series slices must be single-frame greyscale images of one "
                                 "size")
        volume[k] = frame[0]
    return volume


def prepare_series(item: dict, plan: dict, label_classes, segment_map=None):
    """Pass 2 for one fingerprinted series → ``(image (D,H,W,1), mask (D,H,W), geometry dict)``.

    Raises
    ------
    SeriesRejected
        Undecodable slices, or a volume too small for one patch.
    """
    geometry: SeriesGeometry = item["geometry"]
    spacing = geometry.spacing
    volume = _decode_series(item["files"], geometry)
    volume = planning.normalize(volume, plan["normalization"], copy=False)
    labels = None
    if item["row"].mask is not None:
        labels, classes = load_label_map(item["row"].mask, geometry, label_classes, segment_map)
        labels = remap(labels, classes, label_classes)
        n_classes = len(label_classes or classes)
    else:
        n_classes = None
    image, mask = fit_to_plan(volume[..., None], labels, spacing, plan, n_classes)
    del volume, labels
    origin = geometry.affine()[:3, 3]
    grid = {"origin": origin, "direction": geometry.direction(),
            "original_shape": geometry.shape, "original_spacing": spacing,
            "original_origin": origin}
    return image, mask, grid


def fit_to_plan(image, labels, spacing, plan: dict, n_classes=None):
    """A normalised volume and its label map → the plan's target grid, ready to be a record.

    The image is resampled with a cubic kernel (channel by channel), the label map label-wise
    (:mod:`medzoo.datasets.resample`); a volume a little smaller than one patch is padded at
    the far end (voxel (0, 0, 0), hence the origin, stays put), with each channel's minimum.

    Parameters
    ----------
    image : ndarray
        ``(D, H, W, C)`` float32, normalised per ``plan["normalization"]``.
    labels : ndarray or None
        ``(D, H, W)`` class indices; None: an all-background mask is returned.
    spacing : 3-sequence
        Source spacing (mm, z y x).
    plan : dict
        ``target_spacing`` and ``patch_size`` are used.
    n_classes : int, optional
        Classes of the label map (default: its maximum + 1).

    Returns
    -------
    tuple
        ``(image (D', H', W', C) float32, mask (D', H', W') uint8)``.

    Raises
    ------
    SeriesRejected
        The resampled volume covers less than :data:`MIN_PATCH_SHARE` of the patch along an
        axis ("volume too small for one patch").
    """
    target = plan["target_spacing"]
    shape = resample.target_shape(image.shape[:3], spacing, target)
    patch = plan["patch_size"]
    if any(n < MIN_PATCH_SHARE * p for n, p in zip(shape, patch)):
        raise SeriesRejected(f"volume too small for one patch (resampled "
                             f"{'x'.join(map(str, shape))} voxels, patch "
                             f"{'x'.join(map(str, patch))}; padding would fill more than half)")
    padded = [max(n, p) for n, p in zip(shape, patch)]
    widths = [(0, p - n) for n, p in zip(shape, padded)]
    out = np.empty((*padded, image.shape[3]), np.float32)
    for c in range(image.shape[3]):
        channel = image[..., c]
        resampled = resample.resample_to_shape(channel, spacing, shape, target, order=3)
        out[..., c] = np.pad(resampled, widths, constant_values=float(channel.min()))
        del resampled
    if labels is None:
        return out, np.zeros(padded, np.uint8)
    mask = resample.labels_to_shape(labels, spacing, shape, target, n_classes=n_classes)
    return out, np.pad(mask, widths, constant_values=0)


def _plan_from(items, label_classes, *, target_spacing, memory_gb, patch_size, batch_size,
               normalization):
    modality = collections.Counter(it["modality"] for it in items).most_common(1)[0][0]
    fingerprint = planning.make_fingerprint([it["geometry"].spacing for it in items],
                                            [it["geometry"].shape for it in items], modality,
                                            [it["sample"] for it in items])
    try:
        plan = planning.make_plan(fingerprint, memory_gb=memory_gb, target_spacing=target_spacing,
                                  patch_size=patch_size, batch_size=batch_size,
                                  normalization=normalization, label_classes=label_classes)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return fingerprint, plan


def fingerprint_rows(dicom_dir, labels_csv, *, label_classes=None, key=b"", segment_map=None,
                     seed=0, echo=True, progress=None):
    """Pass 1 over labels.csv → (accepted series, rejected [(row, path, reason)], inputs)."""
    rows = _rows(labels_csv)
    dicom_dir = Path(dicom_dir)
    accepted, rejected, inputs = [], [], 0
    sample_n = max(1000, planning.SAMPLE_VALUES // len(rows))
    seen_sops: dict = {}

    def reject(row, files, exc):
        for f in files:
            reason = exc.file_reasons.get(str(f), exc.reason)
            rel = os.path.relpath(f, dicom_dir)
            rejected.append((row.row, rel, reason))
            if echo:
                print(f"medzoo ingest: rejected {rel}: {reason}", file=sys.stderr)

    for row in _bar(rows, "fingerprint", progress):
        files, _ = _series_files(row)
        inputs += len(files)
        try:
            item = fingerprint_series(row, label_classes, key, segment_map, sample_n, seed)
            dup = next((seen_sops[s] for s in item["sops"] if s in seen_sops), None)
            if dup is not None:
                raise SeriesRejected(f"duplicate series (the same SOPInstanceUIDs as row {dup})")
        except SeriesRejected as exc:
            reject(row, files, exc)
            continue
        seen_sops.update((s, row.row) for s in item["sops"])
        item["n_files"] = len(files)
        item["all_files"] = files
        accepted.append(item)
    return accepted, rejected, inputs, reject


def preview_plan(dicom_dir, labels_csv, *, spacing="auto", label_classes=None, memory_gb=8.0,
                 patch_size=None, batch_size=None, normalization=None, segment_map=None) -> dict:
    """The plan ingest would make (pass 1 only; nothing written)."""
    classes = resolve_label_classes(labels_csv, label_classes)
    items, _, _, _ = fingerprint_rows(dicom_dir, labels_csv, label_classes=classes,
                                      segment_map=segment_map, echo=False)
    if not items:
        raise InputError("No usable series: every row was rejected (run ingest to see why)")
    if classes is None:
        names = [c for it in items for c in (it["classes"] or [])[1:]]
        classes = ["background", *dict.fromkeys(names)] if names else None
    return _plan_from(items, classes,
                      target_spacing=parse_spacing(spacing), memory_gb=memory_gb,
                      patch_size=patch_size, batch_size=batch_size, normalization=normalization)[1]


def ingest_volumes(dicom_dir, labels_csv, out, *, spacing="auto", label_classes=None,
                   memory_gb: float = planning.DEFAULT_MEMORY_GB, patch_size=None,
                   batch_size=None, normalization=None, segment_map=None, folds: int = 5,
                   seed: int = 0, key_file=None, strict: bool = False,
                   records_per_shard: int = records.RECORDS_PER_SHARD, progress=None,
                   workers: int = 1) -> dict:
    """Ingest DICOM series at native resolution into a dataset dir of volumes (see module doc).

    Parameters
    ----------
    dicom_dir : path-like
        Folder the inputs live in (rejected.csv paths are relative to it).
    labels_csv : path-like
        ``path,label[,mask]``: a series folder, its image-level label, its label map (``.npy``
        in the series' array order, or NIfTI / DICOM SEG / RTSTRUCT via the annotations reader).
    out : path-like
        Dataset dir to create (new or empty).
    spacing : "auto" or "Z,Y,X" or 3 floats
        Target spacing in mm (auto: the plan's).
    label_classes : str or list, optional
        Voxel class names (``background,…``); default: label_classes.json / dataset.json beside
        labels.csv.
    memory_gb, patch_size, batch_size, normalization
        Plan inputs and overrides (:func:`medzoo.datasets.plan.make_plan`).
    segment_map : dict, optional
        Passed to the annotations reader (segment / ROI name → class name).
    folds, seed, key_file, strict, records_per_shard, progress
        As :func:`medzoo.datasets.ingest.ingest`.
    workers : int
        Series prepared (decoded, normalised, resampled) in parallel by this many worker
        processes (1: in this process). Memory: about one series per worker, plus up to
        ``workers`` prepared series waiting to be written in order.

    Returns
    -------
    dict
        ``inputs, loaded, rejected, records, per_class, per_fold, patients, rejected_by_reason,
        warnings, plan, strict_failed, out``; ``inputs == loaded + rejected``.

    Raises
    ------
    InputError
        Bad options or labels file, OUT not empty, no usable series, too few patients or
        classes for the folds.
    """
    dicom_dir, out = Path(dicom_dir), Path(out)
    target = parse_spacing(spacing)
    patch_size = parse_triple(patch_size, "--patch-size")
    if not dicom_dir.is_dir():
        raise InputError(f"DICOM dir {dicom_dir}: expected a folder. Received: no such folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"Output {out}: expected a new or empty folder. Received: it holds "
                         "existing files; refusing to overwrite")
    rows = _rows(labels_csv)
    classes = manifest.order_classes(r.label for r in rows if r.label)
    if len(classes) < 2:
        raise InputError(f"Labels file {labels_csv}: expected at least two classes in column "
                         f"`label`. Received: {classes}")
    label_classes = resolve_label_classes(labels_csv, label_classes)
    if label_classes is None and any(r.mask is not None and r.mask.suffix.lower() == ".npy"
                                     for r in rows):
        raise InputError("Label maps given as .npy need class names: pass --label-classes "
                         "background,NAME,… or put label_classes.json beside labels.csv. "
                         "Received: neither")
    key = deid.load_or_create_key(key_file)
    items, rejected, n_inputs, reject = fingerprint_rows(
        dicom_dir, labels_csv, label_classes=label_classes, key=key, segment_map=segment_map,
        seed=seed, progress=progress)
    if not items:
        raise InputError(f"No readable input: all {n_inputs} input files were rejected "
                         "(see the lines above)")
    if label_classes is None:  # names from the readers (SEG segments, …): their union
        names = [c for it in items for c in (it["classes"] or [])[1:]]
        label_classes = ["background", *dict.fromkeys(names)] if names else None
    fingerprint, plan = _plan_from(items, label_classes, target_spacing=target,
                                   memory_gb=memory_gb, patch_size=patch_size,
                                   batch_size=batch_size, normalization=normalization)
    print("medzoo ingest: plan\n" + planning.describe(plan), file=sys.stderr)
    class_index = {c: i for i, c in enumerate(classes)}
    has_mask = any(r.mask is not None for r in rows)
    with volume_dir.building(out) as tmp:
        index, stats, domain = [], [0.0, 0.0, 0], DomainAccumulator()
        bar = _bar(None, "ingest", progress, total=len(items))
        with records.ShardWriter(tmp / "shards", records_per_shard) as writer:
            for item, result in _prepared(items, plan, label_classes, segment_map, workers):
                bar.update(1)
                row = item["row"]
                if isinstance(result, SeriesRejected):
                    reject(row, item["all_files"], result)
                    continue
                image, mask, grid = result
                domain.add(item["domain"])  # written series only, in row order: deterministic
                record_id = f"r{len(index) + 1:06d}"
                label = class_index[manifest.split_label(row.label)[0]]
                writer.write(records.record_features(
                    record_id, image, label, mask, spacing=plan["target_spacing"],
                    geometry=grid))
                volume_dir.add_pixel_stats(stats, image)
                center, width = _window_of(plan)
                index.append({
                    "record_id": record_id, "row": row.row, "frame": 1,
                    "patient": item["patient"], "study": item["study"],
                    "series": item["series"], "label": label, "modality": item["modality"],
                    "window_center": center, "window_width": width, "photometric": "MONOCHROME2",
                    "has_mask": int(row.mask is not None), "voi": "plan",
                    "slices": item["geometry"].shape[0], "_files": item["n_files"],
                    "_names": manifest.split_label(row.label)})
                del image, mask
        bar.close()
        if not index:
            raise InputError(f"No readable input: all {n_inputs} input files were rejected "
                             "(see the lines above)")
        patients = [rec["patient"] for rec in index]
        by_patient = splits.patient_folds(patients, [rec["label"] for rec in index], folds, seed)
        for rec in index:
            rec["fold"] = by_patient[rec["patient"]]
        splits.check_grouped(patients, [rec["fold"] for rec in index])
        summary = volume_dir.write_dataset_tables(tmp, index, rejected, classes, label_classes, plan,
                                       fingerprint, stats, n_inputs, folds, seed, key, has_mask,
                                       extra_info={"domain": domain.summary()})
    summary.update(strict_failed=bool(strict and summary["rejected"]), out=str(out))
    return summary


def _prepare_task(item, plan, label_classes, segment_map):
    try:
        return prepare_series(item, plan, label_classes, segment_map)
    except SeriesRejected as exc:  # an exception's extra fields do not survive pickling
        return ("rejected", exc.reason, exc.file_reasons)


def _prepared(items, plan, label_classes, segment_map, workers: int):
    """``(item, (image, mask, grid) or SeriesRejected)`` for every item, in item order; with
    ``workers`` > 1 prepared by that many processes, at most ``workers`` series in flight."""
    def unpack(result):
        if isinstance(result[0], str):  # ("rejected", reason, file reasons)
            return SeriesRejected(result[1], result[2])
        return result

    if int(workers) <= 1 or len(items) < 2:
        for item in items:
            yield item, unpack(_prepare_task(item, plan, label_classes, segment_map))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from medzoo.datasets.ingest import worker_start_method

    context = multiprocessing.get_context(worker_start_method())
    queue, upcoming = collections.deque(), iter(items)
    with ProcessPoolExecutor(max_workers=int(workers), mp_context=context) as pool:
        def submit():
            item = next(upcoming, None)
            if item is not None:
                queue.append((item, pool.submit(_prepare_task, item, plan, label_classes,
                                                segment_map)))

        for _ in range(int(workers)):
            submit()
        while queue:
            item, future = queue.popleft()
            result = future.result()
            submit()
            yield item, unpack(result)


def _window_of(plan) -> tuple[float, float]:
    norm = plan["normalization"]
    if norm["scheme"] == "ct":
        lo, hi = norm["clip"]
        return (lo + hi) / 2.0, hi - lo
    return 0.0, 0.0


def replan_dataset(ds_dir, *, memory_gb=None, patch_size=None, batch_size=None,
                   normalization=None, write: bool = False) -> dict:
    """A volume dataset's plan: as stored, or re-planned from its fingerprint.

    The target spacing (and, unless given again, the normalisation) stays the stored one: the
    records are already resampled and normalised with it. Patch and batch size follow the new
    ``memory_gb`` / overrides. ``write`` stores the new plan in ``plan.json`` and
    ``dataset.json`` (atomically).

    Raises
    ------
    InputError
        Not a native-spacing volume dataset, or bad overrides.
    """
    ds_dir = Path(ds_dir)
    info = manifest.read_dataset_info(ds_dir)
    if info.get("spacing_mode") != "native" or not (ds_dir / "fingerprint.json").is_file():
        raise InputError(f"{ds_dir}: expected a volume dataset ingested with --spacing (holding "
                         "plan.json and fingerprint.json). Received: "
                         f"kind {info.get('kind', 'image')!r} without a plan")
    stored = fsio.read_json(ds_dir / "plan.json")
    if memory_gb is None and patch_size is None and batch_size is None and normalization is None:
        return stored
    if normalization is not None and normalization != stored["normalization"]["scheme"]:
        raise InputError(f"--normalization {normalization}: the records are stored normalised "
                         f"with {stored['normalization']['scheme']!r}; ingest again to change it")
    try:
        plan = planning.make_plan(
            fsio.read_json(ds_dir / "fingerprint.json"),
            memory_gb=stored["memory_gb"] if memory_gb is None else memory_gb,
            target_spacing=stored["target_spacing"], patch_size=patch_size,
            batch_size=batch_size, normalization=stored["normalization"]["scheme"],
            label_classes=stored["label_classes"], channels=int(info.get("channels", 1)),
            foreground_oversample=stored["foreground_oversample"])
    except ValueError as exc:
        raise InputError(str(exc)) from None
    plan["normalization"] = stored["normalization"]
    plan["anisotropic"] = stored["anisotropic"]
    kept = {k: v for k, v in stored.get("overrides", {}).items()
            if k in ("target_spacing", "normalization")}
    plan["overrides"] = {**kept, **{k: v for k, v in plan["overrides"].items()
                                    if k not in ("target_spacing", "normalization")}}
    if write:
        for name, data in (("plan.json", plan), ("dataset.json", dict(info, plan=plan))):
            mode = (ds_dir / name).stat().st_mode & 0o777
            fsio.write_json(ds_dir / name, data)
            os.chmod(ds_dir / name, mode)  # the atomic write's temp file is private
    return plan
