"""DICOM folder + labels.csv → dataset dir (docs/internals.md).

Rows of labels.csv are decoded in chunks, in this process first; worker processes (forked
where safe, else spawned; they import pydicom and numpy, never TensorFlow) are started only when
the work measured so far says they will pay for their start-up, and this process keeps decoding
chunks alongside them (``workers`` counts it). Each file is read once: the pixel chain runs only
on the pixels the resize reads (:func:`medzoo.datasets.dicom.read_dicom` with ``size``), and a
series folder is sorted along the slice normal from the headers of that same read. Results come
back small (already resized) and are streamed, in input order, into shards. Everything is
written into a hidden sibling folder that is renamed to OUT at the end, so a half-written
dataset is never visible; after every finished shard the work done is journalled there, and the
same command run again after a kill resumes from it (:mod:`medzoo.datasets.resume`). Every
input file ends in index.csv or rejected.csv; series-level findings in 2D mode go to
warnings.csv.

This module checks the options and runs the steps, each in a module of its own:

* :mod:`medzoo.datasets.ingest_rows`: row checks before decoding, outcomes → records and the
  rejections (:func:`plan_rows`, :class:`RecordStream`, :func:`iter_plan_records`);
* :mod:`medzoo.datasets.ingest_decode`: one row's files → records, in any process
  (:class:`Options`, :func:`decode_task`);
* :mod:`medzoo.datasets.ingest_series` and :mod:`medzoo.datasets.ingest_masks`: series folders
  (grouping, :func:`series_issues`, ``--volumes`` stacks) and the ``mask`` column;
* :mod:`medzoo.datasets.ingest_schedule`: chunks and worker processes (:func:`iter_outcomes`);
* :mod:`medzoo.datasets.ingest_write`: shards, journal, index.csv, rejected.csv, dataset.json.

Their public names are importable from here as well, as before the split.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from medzoo.datasets import deid, dicom, manifest, preprocess, records, resume
from medzoo.datasets.ingest_decode import (FILE_TIMEOUT_SECONDS, Options, decode_chunk,
                                           decode_task, init_worker, worker_imports_tensorflow)
from medzoo.datasets.ingest_rows import (PlannedRow, RecordStream, iter_plan_records, plan_rows,
                                         planned_tasks)
from medzoo.datasets.ingest_schedule import (CHUNKS_HELD_PER_PROCESS, CHUNKS_QUEUED_PER_WORKER,
                                             FILES_PER_CHUNK, FIRST_CHUNK_FILES,
                                             PARALLEL_MIN_SECONDS, iter_outcomes,
                                             worker_start_method)
from medzoo.datasets.ingest_series import (DUPLICATE_POSITION_MM, MISSING_SLICE_FACTOR,
                                           series_issues)
from medzoo.datasets.ingest_write import CHECKPOINT_SECONDS, SCHEMA_VERSION, write_dataset
from medzoo.errors import InputError

__all__ = [
    "CHECKPOINT_SECONDS",
    "CHUNKS_HELD_PER_PROCESS",
    "CHUNKS_QUEUED_PER_WORKER",
    "DUPLICATE_POSITION_MM",
    "FILES_PER_CHUNK",
    "FILE_TIMEOUT_SECONDS",
    "FIRST_CHUNK_FILES",
    "MISSING_SLICE_FACTOR",
    "Options",
    "PARALLEL_MIN_SECONDS",
    "PlannedRow",
    "RecordStream",
    "SCHEMA_VERSION",
    "decode_chunk",
    "decode_task",
    "ingest",
    "init_worker",
    "iter_outcomes",
    "iter_plan_records",
    "parse_volume",
    "parse_window",
    "plan_rows",
    "planned_tasks",
    "series_issues",
    "worker_imports_tensorflow",
    "worker_start_method",
]


def parse_window(window):
    """``"auto"``, a preset name, ``"C,W"`` or ``(C, W)`` → ``"auto"`` or ``(float, float)``.

    Presets (CT, Hounsfield units): see :data:`medzoo.datasets.dicom.CT_WINDOWS`.

    Raises
    ------
    InputError
        When the window is not "auto", a preset or two numbers with width ≥ 1.
    """
    if window is None or (isinstance(window, str) and window.strip().lower() == "auto"):
        return "auto"
    if isinstance(window, str) and window.strip().lower() in dicom.CT_WINDOWS:
        return dicom.CT_WINDOWS[window.strip().lower()]
    try:
        parts = window.split(",") if isinstance(window, str) else list(window)
        c, w = (float(v) for v in parts)
    except (TypeError, ValueError):
        raise InputError(f"Window must be 'auto', one of {', '.join(dicom.CT_WINDOWS)} or "
                         f"'CENTER,WIDTH'. Received: window={window!r}")
    if not (math.isfinite(c) and math.isfinite(w) and w >= 1):
        raise InputError(f"Window width must be >= 1 and finite. Received: window={window!r}")
    return (c, w)


def _preset_name(window):
    if isinstance(window, str) and window.strip().lower() in dicom.CT_WINDOWS:
        return window.strip().lower()
    return None


def parse_volume(volumes):
    """``"D,H,W"`` or a 3-sequence → ``(D, H, W)`` of positive ints, None → None."""
    if volumes is None:
        return None
    try:
        parts = volumes.split(",") if isinstance(volumes, str) else list(volumes)
        dims = tuple(int(v) for v in parts)
    except (TypeError, ValueError):
        dims = ()
    if len(dims) != 3 or min(dims) < 1:
        raise InputError(f"--volumes must be three positive integers D,H,W. Received: {volumes!r}")
    return dims


def _windows(window, n_columns):
    specs = list(window) if isinstance(window, (list, tuple)) and window and all(
        isinstance(w, (str, list, tuple)) or w is None for w in window) else [window]
    if len(specs) == 1:
        specs = specs * n_columns
    if len(specs) != n_columns:
        raise InputError(f"Expected one window, or one per input column ({n_columns}). "
                         f"Received: {len(specs)} windows")
    return specs


def _parse_segment_map(segment_map) -> dict:
    """``segment_map`` as a dict (text is parsed); a bad item is an :class:`InputError`."""
    from medzoo.datasets.annotations import parse_segment_map

    if not isinstance(segment_map, str):
        return dict(segment_map or {})
    try:
        return parse_segment_map(segment_map)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def ingest(dicom_dir, labels_csv, out, size=64, window="auto", workers=1, folds=5, seed=0,
           key_file=None, strict=False, records_per_shard=records.RECORDS_PER_SHARD,
           progress=None, *, color="grey", volumes=None, denoise=None, enhance=None,
           standardize=None, series_issues="warn", parallel="auto",
           file_timeout=FILE_TIMEOUT_SECONDS, spacing=None, volume_options=None,
           segment_map=None) -> dict:
    """Ingest DICOM files listed in labels.csv into a dataset dir.

    Parameters
    ----------
    dicom_dir : path-like
        Folder the inputs live in; rejected.csv paths are relative to it.
    labels_csv : path-like
        ``path,label[,mask]``, optionally more input columns ``path_<name>`` (one channel group
        each, e.g. ``path,path_mr,label``); paths relative to the CSV's folder (a file or a
        series folder).
    out : path-like
        Dataset dir to create; must not exist yet (or be empty).
    size : int or "auto"
        Stored images are ``size × size`` (bilinear, as ``tf.image.resize``); ``"auto"`` chooses
        it from the data (:func:`medzoo.datasets.plan2d.plan_size`) and stores the plan in
        dataset.json under ``plan``.
    window : "auto", a CT preset (lung, mediastinum, brain, bone, abdomen), "C,W", (C, W), or
        a list of these, one per input column.
    workers : int
        Up to this many decoding processes, started only when worthwhile (see ``parallel``).
    folds, seed : int
        Patient-grouped, label-stratified folds.
    key_file : path-like, optional
        Pseudonym key (see :func:`medzoo.datasets.deid.load_or_create_key`).
    strict : bool
        Recorded in the summary as ``strict_failed`` when anything was rejected (the CLI exits 1).
    progress : bool, optional
        Progress bar on stderr; None → only on a terminal.
    color : {"grey", "rgb"}
        Colour objects reduced to luma (1 channel per input) or kept as 3 channels (monochrome
        repeated).
    volumes : "D,H,W" or (D, H, W), optional
        Write one resampled volume per series (``kind: volume``) instead of 2D slices.
    denoise, enhance, standardize : str, optional
        Preprocessing after the resize (:func:`medzoo.datasets.preprocess.parse_specs`).
    series_issues : {"warn", "reject"}
        2D mode: series with missing slices, duplicate positions or inconsistent geometry are
        kept and listed in warnings.csv ("warn"), or their files rejected ("reject"). Volumes
        always reject such series.
    parallel : {"auto", "always", "never"}
        When to start the worker processes (see :func:`iter_outcomes`).
    file_timeout : float
        Seconds one file may take to decode before it is rejected ("decoding timed out");
        0 disables the limit.
    spacing : "auto" or "Z,Y,X", optional
        Native-spacing volumes instead (one record per series at the plan's target spacing):
        :func:`medzoo.datasets.volumes.ingest_volumes`, given ``volume_options`` (its keyword
        arguments: label_classes, memory_gb, patch_size, batch_size, normalization,
        segment_map).
    segment_map : dict or str, optional
        SEG segment / RTSTRUCT ROI names (or coded properties) → classes, as
        :func:`medzoo.datasets.annotations.parse_segment_map` reads them. 2D: a row whose
        ``mask`` is a DICOM SEG or RTSTRUCT gets a binary mask of the segments not mapped to
        ``-`` (:func:`medzoo.datasets.slice_masks.read_slice_mask`); with ``spacing``, it is
        passed on to the volume ingest (unless ``volume_options`` has its own).

    Returns
    -------
    dict
        ``inputs, loaded, rejected, records, per_class, per_fold, patients, rejected_by_reason,
        warnings, workers_started, resumed_files, strict_failed, out``.
        ``inputs == loaded + rejected`` always.

    Raises
    ------
    InputError
        Bad labels file, bad options, OUT already holds something, no readable input, fewer
        patients than folds or a single class.
    """
    if spacing is not None:
        if volumes is not None:
            raise InputError(f"Give --spacing (native volumes) or --volumes (a fixed grid), not "
                             f"both. Received: --spacing {spacing} --volumes {volumes}")
        from medzoo.datasets.volumes import ingest_volumes

        volume_options = dict(volume_options or {})
        if segment_map is not None:
            volume_options.setdefault("segment_map", segment_map)

        unused = [name for name, value in (("--denoise", denoise), ("--enhance", enhance),
                                           ("--standardize", standardize)) if value]
        unused += ["--color rgb"] if color != "grey" else []
        unused += ["--window"] if any(parse_window(w) != "auto" for w in (
            window if isinstance(window, (list, tuple)) and window
            and isinstance(window[0], (str, list, tuple)) else [window])) else []
        if unused:
            raise InputError(f"--spacing stores modality values normalised by the plan; it "
                             f"takes no {', '.join(unused)}. Received: {', '.join(unused)}")
        return ingest_volumes(dicom_dir, labels_csv, out, spacing=spacing, folds=folds,
                              seed=seed, key_file=key_file, strict=strict,
                              records_per_shard=records_per_shard, progress=progress,
                              workers=workers, **volume_options)
    dicom_dir = Path(dicom_dir)
    out = Path(out)
    auto_size = str(size) == "auto"
    size = 64 if auto_size else int(size)  # auto: replaced by the plan once labels are read
    if size < 1:
        raise InputError(f"Argument `size` must be a positive integer. Received: size={size}")
    if color not in dicom.COLOR_MODES:
        raise InputError(f"--color must be grey or rgb. Received: {color!r}")
    if series_issues not in ("warn", "reject"):
        raise InputError(f"Series issues must be 'warn' or 'reject'. Received: {series_issues!r}")
    segment_map = _parse_segment_map(segment_map)
    volume = parse_volume(volumes)
    specs = preprocess.parse_specs(denoise, enhance, standardize)
    image_hw = (volume[1], volume[2]) if volume else (size, size)
    preprocess.check_size(specs, *image_hw)
    if not dicom_dir.is_dir():
        raise InputError(f"DICOM dir {dicom_dir}: expected a folder. Received: no such folder")
    rows = manifest.read_labels(labels_csv)
    size_plan = None
    if auto_size and not volume:
        from medzoo.datasets import plan2d

        size_plan = plan2d.plan_size(rows)
        size = size_plan["image_size"]
        image_hw = (size, size)
        preprocess.check_size(specs, *image_hw)
    input_names = [name for name, _ in rows[0].columns]
    raw_windows = _windows(window, len(input_names))
    windows = [parse_window(w) for w in raw_windows]
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "a dataset" if (out / "dataset.json").exists() else "existing files"
        raise InputError(f"Output {out}: expected a new or empty folder. Received: it holds "
                         f"{what}; refusing to overwrite")
    multi_label = any(len(manifest.split_label(r.label)) > 1 for r in rows if r.label)
    classes = manifest.order_classes(name for r in rows if r.label
                                     for name in manifest.split_label(r.label))
    if not classes:
        raise InputError(f"Labels file {labels_csv}: expected class names in column `label`. "
                         "Received: every label empty")
    if len(classes) < 2:  # folds are label-stratified: say so before decoding anything
        raise InputError(f"Labels file {labels_csv}: expected at least two classes in column "
                         f"`label`. Received: only {classes[0]!r}")
    has_mask = any(r.mask is not None for r in rows)
    key = deid.load_or_create_key(key_file)
    options = Options(key=key, size=image_hw, windows=tuple(windows), color=color,
                      volume_depth=volume[0] if volume else None, preprocessing=tuple(specs),
                      series_issues=series_issues, file_timeout=float(file_timeout),
                      segment_map=tuple(segment_map.items()))
    plan = plan_rows(rows, labels_csv, volume=volume is not None)

    per_channel = 3 if color == "rgb" else 1
    settings = {
        "kind": "volume" if volume else "image",
        "image_size": list(volume) if volume else [size, size],
        "channels": per_channel * len(input_names),
        "inputs": input_names,
        "window": windows[0] if windows[0] == "auto" else list(windows[0]),
        "window_preset": _preset_name(raw_windows[0]),
        "windows": [w if w == "auto" else list(w) for w in windows],
        "color": color,
        "preprocessing": specs,
        "series_issues": "reject" if volume else series_issues,
        "multi_label": multi_label,
    }
    if size_plan is not None:
        settings["plan"] = size_plan
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = resume.fingerprint(labels_csv, (f for p in plan for f in p.files), dict(
        settings, schema=SCHEMA_VERSION, dicom_dir=str(dicom_dir.resolve()), folds=int(folds),
        seed=int(seed), records_per_shard=int(records_per_shard), file_timeout=file_timeout,
        key=deid.key_fingerprint(key), **({"segment_map": segment_map} if segment_map else {})))
    with resume.WorkDir(out, digest) as work:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(work.path, 0o777 & ~umask)
        try:
            summary = write_dataset(plan, dicom_dir, work, options, int(workers), classes,
                                    has_mask, int(folds), int(seed), int(records_per_shard),
                                    progress, parallel, settings)
        except InputError:  # the same inputs would fail the same way: nothing to resume
            work.discard()
            raise
        except BaseException:
            if work.journal():
                print(f"medzoo ingest: interrupted; what is done is kept in {work.path} and "
                      "the same command resumes from it", file=sys.stderr)
            else:
                work.discard()
            raise
        work.finish()
    summary["strict_failed"] = bool(strict and summary["rejected"])
    summary["out"] = str(out)
    return summary
