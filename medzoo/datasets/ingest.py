"""DICOM folder + labels.csv → dataset dir (docs/internals.md).

Worker processes (spawned; they import pydicom and numpy, never TensorFlow) decode one labels.csv
row each; the main process consumes their results in input order, a bounded number ahead, and
streams records into shards. Everything is written into a hidden sibling folder that is renamed
to OUT at the end, so a half-written dataset is never visible. Every input file ends in index.csv
or rejected.csv.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from medzoo.datasets import deid, dicom, manifest, records, splits
from medzoo.errors import InputError

SCHEMA_VERSION = 1


def parse_window(window):
    """``"auto"``, ``"C,W"`` or ``(C, W)`` → ``"auto"`` or ``(float, float)``.

    Raises
    ------
    InputError
        When the window is not "auto" or two numbers with width ≥ 1.
    """
    if window is None or (isinstance(window, str) and window.strip().lower() == "auto"):
        return "auto"
    try:
        parts = window.split(",") if isinstance(window, str) else list(window)
        c, w = (float(v) for v in parts)
    except (TypeError, ValueError):
        raise InputError(f"Window must be 'auto' or 'CENTER,WIDTH'. Received: window={window!r}")
    if not (math.isfinite(c) and math.isfinite(w) and w >= 1):
        raise InputError(f"Window width must be >= 1 and finite. Received: window={window!r}")
    return (c, w)


# --------------------------------------------------------------------------- worker side

_WORKER: dict = {}


def _init_worker(key: bytes, size: int, window):
    _WORKER.update(key=key, size=size, window=window)


def _load_mask(path: Path, rows: int, cols: int) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        try:
            mask = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            raise dicom.DicomRejected("mask file unreadable (expected .npy or .png)")
    else:
        try:
            from PIL import Image

            with Image.open(path) as im:
                mask = np.asarray(im.convert("L"))
        except Exception:
            raise dicom.DicomRejected("mask file unreadable (expected .npy or .png)")
    mask = np.squeeze(mask)
    if mask.shape != (rows, cols):
        got = "x".join(str(s) for s in mask.shape) or "scalar"
        raise dicom.DicomRejected(f"mask shape mismatch (expected {rows}x{cols}, received {got})")
    return (mask > 0).astype(np.float32)


def _sorted_series(files):
    """Files of a folder grouped by SeriesInstanceUID and sorted along the slice normal."""
    keyed = []
    for order, path in enumerate(files):
        try:
            series, position, instance = dicom.read_header(path)
        except Exception:
            series, position, instance = "\uffff", None, None  # unreadable: last, rejected later
        keyed.append((series, position, instance, order, path))
    first = {}
    for series, *_ in keyed:
        first.setdefault(series, len(first))
    keyed.sort(key=lambda k: (first[k[0]], k[1] is None, k[1] or 0.0,
                              k[2] if k[2] is not None else 0, k[3]))
    return [k[4] for k in keyed]


def _decode_file(path: Path, mask_path, key: bytes, size: int, window):
    img = dicom.read_dicom(path, window)
    mask = None
    if mask_path is not None:
        if img.frames.shape[0] != 1:
            raise dicom.DicomRejected(
                f"mask shape mismatch (expected one mask per frame for "
                f"{img.frames.shape[0]} frames, received one {img.rows}x{img.columns} mask)")
        mask = _load_mask(mask_path, img.rows, img.columns)
    if img.patient_id:
        patient = deid.pseudonym(key, "patient", img.patient_id)
    elif img.study_uid:
        patient = deid.pseudonym(key, "patient-study", img.study_uid)
    else:
        patient = deid.pseudonym(key, "patient-file", str(path))
    series = deid.pseudonym(key, "series", img.series_uid or f"file:{path}")
    meta = {
        "patient": patient,
        "study": deid.pseudonym(key, "study", img.study_uid or f"file:{path}"),
        "series": series,
        "sop": deid.pseudonym(key, "sop", img.sop_uid) if img.sop_uid else None,
        "modality": img.modality,
        "photometric": img.photometric,
        "window_center": img.window_center,
        "window_width": img.window_width,
        "position": img.slice_position,
        "instance": img.instance_number,
    }
    out = []
    small_mask = None
    if mask is not None:
        small_mask = (dicom.resize_bilinear(mask, (size, size)) >= 0.5).astype(np.uint8)
    for i, frame in enumerate(img.frames):
        image = dicom.resize_bilinear(frame, (size, size))[:, :, None]
        out.append(("ok", str(path), dict(meta, frame_no=i + 1, image=image, mask=small_mask)))
    return out


def decode_row(files, mask_path, is_folder):
    """Worker entry: every outcome of one labels.csv row, in series order.

    Returns
    -------
    list of tuples
        ``("ok", path, record)`` per frame or ``("reject", path, reason)`` per file.
    """
    key, size, window = _WORKER["key"], _WORKER["size"], _WORKER["window"]
    files = [Path(f) for f in files]
    if is_folder:
        files = _sorted_series(files)
    out = []
    for path in files:
        try:
            out.extend(_decode_file(path, Path(mask_path) if mask_path else None, key, size, window))
        except dicom.DicomRejected as exc:
            out.append(("reject", str(path), exc.reason))
        except MemoryError:
            out.append(("reject", str(path), "image too large to decode"))
        except Exception:
            out.append(("reject", str(path), "cannot decode"))
    return out


def worker_imports_tensorflow() -> bool:
    """True when TensorFlow is loaded in this process (tests run it inside a worker)."""
    return "tensorflow" in sys.modules


# --------------------------------------------------------------------------- main side


def _ordered_map(fn, tasks, workers, initargs):
    """``fn(*task)`` for every task, results in task order, at most ``4 × workers`` in flight."""
    if workers <= 1:
        _init_worker(*initargs)
        for task in tasks:
            yield fn(*task)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=initargs) as pool:
        pending = collections.deque()
        it = iter(tasks)
        for task in it:
            pending.append(pool.submit(fn, *task))
            if len(pending) >= 4 * workers:
                break
        while pending:
            result = pending.popleft().result()
            for task in it:
                pending.append(pool.submit(fn, *task))
                break
            yield result


def _write_text(path: Path, text: str):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _csv_text(header, rows) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _num(x: float) -> str:
    return format(float(x), ".10g")


def ingest(dicom_dir, labels_csv, out, size=64, window="auto", workers=1, folds=5, seed=0,
           key_file=None, strict=False, records_per_shard=records.RECORDS_PER_SHARD,
           progress=None) -> dict:
    """Ingest DICOM files listed in labels.csv into a dataset dir.

    Parameters
    ----------
    dicom_dir : path-like
        Folder the inputs live in; rejected.csv paths are relative to it.
    labels_csv : path-like
        ``path,label[,mask]``; paths relative to the CSV's folder (a file or a series folder).
    out : path-like
        Dataset dir to create; must not exist yet (or be empty).
    size : int
        Stored images are ``size × size`` (bilinear, as ``tf.image.resize``).
    window : "auto", "C,W" or (C, W)
    workers : int
        Decoding processes (1 = in this process).
    folds, seed : int
        Patient-grouped, label-stratified folds.
    key_file : path-like, optional
        Pseudonym key (see :func:`medzoo.datasets.deid.load_or_create_key`).
    strict : bool
        Recorded in the summary as ``strict_failed`` when anything was rejected (the CLI exits 1).
    progress : bool, optional
        Progress bar on stderr; None → only on a terminal.

    Returns
    -------
    dict
        ``inputs, loaded, rejected, records, per_class, per_fold, patients, rejected_by_reason,
        strict_failed, out``. ``inputs == loaded + rejected`` always.

    Raises
    ------
    InputError
        Bad labels file, bad options, OUT already holds something, no readable input, fewer
        patients than folds or a single class.
    """
    dicom_dir = Path(dicom_dir)
    out = Path(out)
    size = int(size)
    if size < 1:
        raise InputError(f"Argument `size` must be a positive integer. Received: size={size}")
    window = parse_window(window)
    if not dicom_dir.is_dir():
        raise InputError(f"DICOM dir {dicom_dir}: expected a folder. Received: no such folder")
    rows = manifest.read_labels(labels_csv)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "a dataset" if (out / "dataset.json").exists() else "existing files"
        raise InputError(f"Output {out}: expected a new or empty folder. Received: it holds "
                         f"{what}; refusing to overwrite")
    classes = manifest.order_classes(r.label for r in rows if r.label)
    if not classes:
        raise InputError(f"Labels file {labels_csv}: expected class names in column `label`. "
                         "Received: every label empty")
    class_index = {c: i for i, c in enumerate(classes)}
    has_mask = any(r.mask is not None for r in rows)
    key = deid.load_or_create_key(key_file)

    # Row-level checks in the main process; everything else goes to the workers.
    plan = []  # (LabelRow, input files, reason to reject the whole row or None)
    for r in rows:
        exists = r.path.exists() and r.path != Path(labels_csv).parent
        files = manifest.expand_path(r.path) if exists else [r.path]
        if not exists:
            reason = "file not found"
        elif not files:
            reason, files = "empty folder", [r.path]
        elif not r.label:
            reason = "label missing"
        elif r.mask is not None and not r.mask.is_file():
            reason = "mask file missing"
        elif r.mask is not None and r.path.is_dir():
            reason = "mask given for a series folder (expected one slice per row)"
        else:
            reason = None
        plan.append((r, files, reason))
    n_inputs = sum(len(files) for _, files, _ in plan)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        summary = _run(plan, dicom_dir, tmp, key, size, window, int(workers), classes,
                       class_index, has_mask, int(folds), int(seed), n_inputs,
                       int(records_per_shard), progress)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary["strict_failed"] = bool(strict and summary["rejected"])
    summary["out"] = str(out)
    return summary


def _run(plan, dicom_dir, tmp, key, size, window, workers, classes, class_index, has_mask,
         folds, seed, n_inputs, records_per_shard, progress):
    from tqdm import tqdm

    rejected = []  # (row, relpath, reason)
    index = []  # dicts, fold filled in at the end
    seen_sop = set()
    total = total_sq = 0.0
    n_pixels = 0

    def reject(row, path, reason):
        rel = os.path.relpath(path, dicom_dir)
        rejected.append((row, rel, reason))
        print(f"medzoo ingest: rejected {rel}: {reason}", file=sys.stderr)

    tasks, task_rows = [], []
    for r, files, reason in plan:
        if reason is None:
            tasks.append(([str(f) for f in files], str(r.mask) if r.mask else None, r.path.is_dir()))
            task_rows.append(r)
    results = _ordered_map(decode_row, tasks, workers, (key, size, window))
    bar = tqdm(total=n_inputs, unit="file", file=sys.stderr, disable=None if progress is None
               else not progress, desc="ingest")
    with records.ShardWriter(tmp / "shards", records_per_shard) as writer:
        task_i = 0
        for r, files, reason in plan:
            if reason is not None:
                for f in files:
                    reject(r.row, f, reason)
                bar.update(len(files))
                continue
            outcomes = next(results)
            assert task_rows[task_i] is r
            task_i += 1
            dup_files = set()
            for kind, path, payload in outcomes:
                if kind == "reject":
                    reject(r.row, path, payload)
                    continue
                if path in dup_files:
                    continue
                if payload["frame_no"] == 1 and payload["sop"] is not None:
                    if payload["sop"] in seen_sop:
                        dup_files.add(path)
                        reject(r.row, path, "duplicate SOPInstanceUID")
                        continue
                    seen_sop.add(payload["sop"])
                record_id = f"r{len(index) + 1:06d}"
                image = payload["image"]
                mask = payload["mask"]
                if has_mask and mask is None:
                    mask = np.zeros(image.shape[:2], np.uint8)
                label = class_index[r.label]
                writer.write(records.record_features(record_id, image, label, mask))
                total += float(image.sum(dtype=np.float64))
                total_sq += float(np.square(image, dtype=np.float64).sum())
                n_pixels += image.size
                index.append({
                    "record_id": record_id, "row": r.row, "patient": payload["patient"],
                    "study": payload["study"], "series": payload["series"], "label": label,
                    "modality": payload["modality"], "window_center": payload["window_center"],
                    "window_width": payload["window_width"], "photometric": payload["photometric"],
                    "has_mask": int(payload["mask"] is not None),
                    "_sort": (payload["position"] is None, payload["position"] or 0.0,
                              payload["instance"] if payload["instance"] is not None else 0,
                              payload["frame_no"], len(index)),
                })
            bar.update(len(files))
    bar.close()
    if not index:
        raise InputError(f"No readable input: all {n_inputs} input files were rejected "
                         "(see the lines above)")

    # frame = 1-based rank along the slice normal within its series
    by_series = collections.defaultdict(list)
    for rec in index:
        by_series[rec["series"]].append(rec)
    for recs in by_series.values():
        for rank, rec in enumerate(sorted(recs, key=lambda x: x["_sort"]), start=1):
            rec["frame"] = rank

    patients = [rec["patient"] for rec in index]
    by_patient = splits.patient_folds(patients, [rec["label"] for rec in index], folds, seed)
    for rec in index:
        rec["fold"] = by_patient[rec["patient"]]
    splits.check_grouped(patients, [rec["fold"] for rec in index])

    cols = manifest.INDEX_COLUMNS
    _write_text(tmp / "index.csv", _csv_text(cols, (
        [rec[c] if c not in ("window_center", "window_width") else _num(rec[c]) for c in cols]
        for rec in index)))
    _write_text(tmp / "rejected.csv", _csv_text(("row", "path", "reason"), sorted(
        rejected, key=lambda x: (x[0], x[1]))))

    n_rejected = len(rejected)
    loaded = n_inputs - n_rejected
    per_class = {c: 0 for c in classes}
    per_fold = {str(f): 0 for f in range(folds)}
    for rec in index:
        per_class[classes[rec["label"]]] += 1
        per_fold[str(rec["fold"])] += 1
    by_reason = collections.Counter(reason for _, _, reason in rejected)
    mean = total / n_pixels
    std = math.sqrt(max(0.0, total_sq / n_pixels - mean * mean))
    counts = {"inputs": n_inputs, "loaded": loaded, "rejected": n_rejected,
              "records": len(index), "per_class": per_class, "per_fold": per_fold,
              "patients": len(by_patient), "rejected_by_reason": dict(sorted(by_reason.items()))}
    info = {
        "schema_version": SCHEMA_VERSION,
        "task": "classification",
        "image_size": [size, size],
        "channels": 1,
        "classes": classes,
        "has_mask": has_mask,
        "window": window if window == "auto" else list(window),
        "folds": folds,
        "seed": seed,
        "counts": counts,
        "modalities": dict(sorted(collections.Counter(r["modality"] for r in index).items())),
        "pixel_stats": {"mean": round(mean, 6), "std": round(std, 6)},
        "key_fingerprint": deid.key_fingerprint(key),
    }
    _write_text(tmp / "dataset.json", json.dumps(info, indent=2) + "\n")
    return dict(counts)
