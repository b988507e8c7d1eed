"""The worker side of ingest: the files of one labels.csv row → records (2D slices or volumes).

:func:`decode_task` turns one row (its input columns and mask) into outcomes: ``ok`` records
(image resized to the stored size, mask, pseudonymised metadata), ``reject`` (a file and its
reason) and ``warn`` (a series-level finding). Each file is read once, with a time limit; a
series folder is grouped and checked by :mod:`medzoo.datasets.ingest_series`, a mask read by
:mod:`medzoo.datasets.ingest_masks`, several input columns stacked as channels. It runs in this
process and in the worker processes :mod:`medzoo.datasets.ingest_schedule` starts, so it
imports pydicom and numpy, never TensorFlow; :class:`Options` is all a worker is given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import sys
import threading
from pathlib import Path

import numpy as np

from medzoo.datasets import deid, dicom, preprocess
from medzoo.datasets.ingest_masks import load_mask, resize_mask
from medzoo.datasets.ingest_series import series_groups, series_issues, series_volume

FILE_TIMEOUT_SECONDS = 120.0
"""A file whose decoding takes longer is rejected ("decoding timed out"), not waited for."""


@dataclasses.dataclass(frozen=True)
class Options:
    """Everything a worker needs to turn files into records (picklable)."""

    key: bytes
    size: tuple  # stored (H, W)
    windows: tuple  # per input column: "auto" or (center, width)
    color: str = "grey"
    volume_depth: int | None = None  # D of --volumes; None: 2D slices
    preprocessing: tuple = ()
    series_issues: str = "warn"  # 2D: "warn" (warnings.csv) or "reject"
    file_timeout: float = FILE_TIMEOUT_SECONDS  # seconds per file; 0: no limit
    segment_map: tuple = ()  # 2D DICOM masks: ((segment or ROI name, class), ...); "-" leaves out


_WORKER: dict = {}


def init_worker(options: Options):
    """Process initializer: the :class:`Options` every later :func:`decode_task` uses."""
    _WORKER["options"] = options


@dataclasses.dataclass
class _Read:
    order: int
    path: str
    img: dicom.DicomImage


class _FileTimeout(BaseException):
    """Raised in the decoding thread when one file took too long (a BaseException, so that no
    ``except Exception`` inside a reader swallows it)."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Interrupt the body after ``seconds`` (SIGALRM: main thread only, which is where ingest and
    its worker processes decode; elsewhere, or with ``seconds <= 0``, no limit)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        # never inside an import: a module cut short stays half-made in this process and every
        # later file would fail with it; try again a moment later instead
        f = frame
        while f is not None:
            if f.f_code.co_filename.startswith("<frozen importlib"):
                signal.setitimer(signal.ITIMER_REAL, 0.05)
                return
            f = f.f_back
        raise _FileTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _read_files(files, window, opts: Options):
    """Decode every file once → (readable items, [(path, reason)])."""
    import pydicom.pixels  # noqa: F401 - a cold import is start-up, not decoding: keep it untimed

    ok, bad = [], []
    for order, path in enumerate(files):
        try:
            with _time_limit(opts.file_timeout):
                img = dicom.read_dicom(path, window, color=opts.color, size=opts.size)
        except dicom.DicomRejected as exc:
            bad.append((str(path), exc.reason))
        except MemoryError:
            bad.append((str(path), "image too large to decode"))
        except _FileTimeout:
            bad.append((str(path), f"decoding timed out (over {opts.file_timeout:g} s)"))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # incl. a Rust decoder's PanicException (not an Exception)
            bad.append((str(path), "cannot decode"))
        else:
            ok.append(_Read(order, str(path), img))
    return ok, bad


def _meta(img: dicom.DicomImage, path: str, key: bytes) -> dict:
    if img.patient_id:
        patient = deid.pseudonym(key, "patient", img.patient_id)
    elif img.study_uid:
        patient = deid.pseudonym(key, "patient-study", img.study_uid)
    else:
        patient = deid.pseudonym(key, "patient-file", path)
    return {
        "patient": patient,
        "study": deid.pseudonym(key, "study", img.study_uid or f"file:{path}"),
        "series": deid.pseudonym(key, "series", img.series_uid or f"file:{path}"),
        "modality": img.modality,
        "photometric": img.photometric,
        "window_center": img.window_center,
        "window_width": img.window_width,
        "voi": img.voi,
        "position": img.slice_position,
        "instance": img.instance_number,
    }


def _decode_column(files, is_folder, window, opts: Options):
    """One input column of a row → (units, rejects, warnings).

    A unit is one future record's worth of this column: 2D → one frame; volume → one series.
    Each unit: ``{"image", "img", "path", "frame_no", "paths", "slices", "spacing"}``.
    """
    ok, bad = _read_files(files, window, opts)
    warnings = []
    units = []
    groups = series_groups(ok) if is_folder else [[it] for it in ok]
    for group in groups:
        volume = opts.volume_depth is not None
        issues = series_issues(group, need_positions=volume and len(group) > 1) if is_folder else []
        if issues and (volume or opts.series_issues == "reject"):
            bad.extend((it.path, "; ".join(issues)) for it in group)
            continue
        if issues:
            warnings.append("; ".join(issues))
        if volume:
            try:
                image, spacing, n = series_volume(group, opts.volume_depth, opts.size)
            except dicom.DicomRejected as exc:
                bad.extend((it.path, exc.reason) for it in group)
                continue
            units.append({"image": image, "img": group[0].img, "path": group[0].path,
                          "frame_no": 1, "paths": [it.path for it in group],
                          "sops": [it.img.sop_uid for it in group], "slices": n,
                          "spacing": spacing})
            continue
        for it in group:
            for i, frame in enumerate(it.img.frames):
                units.append({"image": frame, "img": it.img, "path": it.path, "frame_no": i + 1,
                              "paths": [it.path], "sops": [it.img.sop_uid] if i == 0 else [],
                              "slices": 1, "spacing": None})
    return units, bad, warnings


def decode_task(task):
    """Every outcome of one labels.csv row, in series order.

    Parameters
    ----------
    task : tuple
        ``(columns, mask_path)``; columns is ``[(name, [files], is_folder), …]`` in channel order.

    Returns
    -------
    list of tuples
        ``("ok", path, record)`` per record, ``("reject", path, reason)`` per rejected file,
        ``("warn", path, reason)`` per series-level finding that did not reject anything.
    """
    opts: Options = _WORKER["options"]
    columns, mask_path = task
    per_column = []
    for (name, files, is_folder), window in zip(columns, opts.windows):
        per_column.append(_decode_column([Path(f) for f in files], is_folder, window, opts))
    out = []
    for (name, _, _), (_, _, warns) in zip(columns, per_column):
        out.extend(("warn", name, w) for w in warns)
    if len(columns) == 1:
        units, bad, _ = per_column[0]
    else:
        units, bad = _pair(columns, per_column)
    out.extend(("reject", p, reason) for p, reason in bad)
    mask = None
    if mask_path is not None and units:
        unit = units[0]
        img = unit["img"]
        try:
            if len(units) != 1 or img.frames.shape[0] != 1:
                raise dicom.DicomRejected(
                    f"mask shape mismatch (expected one mask per frame for "
                    f"{img.frames.shape[0]} frames, received one {img.rows}x{img.columns} mask)")
            stored = load_mask(Path(mask_path), img.rows, img.columns, unit["paths"][0],
                               segment_map=dict(opts.segment_map))
        except dicom.DicomRejected as exc:
            out.extend(("reject", p, exc.reason) for u in units for p in u["paths"])
            return out
        mask = resize_mask(stored, opts.size)
    for unit in units:
        image = unit["image"]
        if opts.preprocessing:
            image = preprocess.apply_specs(image, opts.preprocessing)
        payload = dict(_meta(unit["img"], unit["path"], opts.key), image=image, mask=mask,
                       frame_no=unit["frame_no"], paths=unit["paths"],
                       sops=[deid.pseudonym(opts.key, "sop", s) for s in unit["sops"] if s],
                       slices=unit["slices"], spacing=unit["spacing"],
                       domain=(unit.get("domains") or [unit["img"].domain])
                       if unit["frame_no"] == 1 else None)
        out.append(("ok", unit["path"], payload))
    return out


def _pair(columns, per_column):
    """Stack the units of several input columns as channels (all or nothing per row)."""
    names = [name for name, _, _ in columns]
    bad = []
    for name, (_, col_bad, _) in zip(names, per_column):
        bad.extend(col_bad)
    counts = [len(units) for units, _, _ in per_column]
    reason = None
    if bad:
        first_name = next(n for n, (_, b, _) in zip(names, per_column) if b)
        first_reason = next(b for _, b, _ in per_column if b)[0][1]
        reason = f"paired input rejected ({first_name}: {first_reason})"
    elif len(set(counts)) > 1:
        reason = "paired inputs differ in slice count (" + ", ".join(
            f"{n} {c}" for n, c in zip(names, counts)) + ")"
    if reason is not None:
        done = {p for p, _ in bad}
        for units, _, _ in per_column:
            for unit in units:
                for p in unit["paths"]:
                    if p not in done:
                        bad.append((p, reason))
                        done.add(p)
        return [], bad
    units = []
    for parts in zip(*(u for u, _, _ in per_column)):
        lead = dict(parts[0])
        lead["image"] = np.concatenate([u["image"] for u in parts], axis=-1)
        lead["paths"] = [p for u in parts for p in u["paths"]]
        lead["domains"] = [u["img"].domain for u in parts]  # every input's kind of image
        units.append(lead)
    return units, []


def decode_chunk(tasks):
    """Worker entry: :func:`decode_task` for each task of a chunk."""
    return [decode_task(task) for task in tasks]


def worker_imports_tensorflow() -> bool:
    """True when TensorFlow is loaded in this process (tests run it inside a worker)."""
    return "tensorflow" in sys.modules
