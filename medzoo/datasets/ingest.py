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
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import functools
import io
import json
import math
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from medzoo.datasets import deid, dicom, manifest, preprocess, records, resume, splits
from medzoo.datasets.domain import DomainAccumulator
from medzoo.errors import InputError

SCHEMA_VERSION = 1

FILES_PER_CHUNK = 16
"""Files decoded per chunk of tasks (a series folder is never split; see :func:`_chunks`)."""

FIRST_CHUNK_FILES = 4
"""Files in the first chunk, which this process times before it starts any worker."""

PARALLEL_MIN_SECONDS = {"fork": 0.15, "spawn": 1.5}
"""Start workers only when the decode time still ahead, estimated, exceeds this (per start
method: a spawned worker re-imports numpy and pydicom, about 0.5 s of CPU each)."""

CHUNKS_QUEUED_PER_WORKER = 2
"""Chunks each worker process has queued (handed out, not yet finished)."""

CHUNKS_HELD_PER_PROCESS = 4
"""Chunks decoded ahead of the one due next, or in flight, per decoding process: what bounds
the results held in memory."""

FILE_TIMEOUT_SECONDS = 120.0
"""A file whose decoding takes longer is rejected ("decoding timed out"), not waited for."""

DUPLICATE_POSITION_MM = 1e-3
MISSING_SLICE_FACTOR = 1.5


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


# --------------------------------------------------------------------------- worker side


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


_WORKER: dict = {}


def _init_worker(options: Options):
    _WORKER["options"] = options


def _load_mask(path: Path, rows: int, cols: int, image_path=None) -> np.ndarray:
    from medzoo.datasets import slice_masks

    if image_path is not None and slice_masks.is_dicom_annotation(path):
        from medzoo.datasets.annotations import AnnotationError

        try:  # a DICOM SEG / RTSTRUCT: this image's frames (docs/annotations.md)
            return slice_masks.read_slice_mask(path, image_path)
        except AnnotationError as exc:
            raise dicom.DicomRejected(f"mask: {exc}") from None
    if path.suffix.lower() == ".npy":
        try:
            mask = _read_npy(path)
        except (OSError, ValueError, SyntaxError, TypeError, MemoryError):
            raise dicom.DicomRejected("mask file unreadable (expected .npy or .png)")
        if mask.dtype.kind not in "biuf":  # structured, string, object... arrays
            raise dicom.DicomRejected(f"mask file unreadable (expected a numeric array, "
                                      f"received dtype {mask.dtype.kind!r})")
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
    return mask


def _read_npy(path: Path) -> np.ndarray:
    """``np.load(path, allow_pickle=False)``, parsing each distinct header once.

    Masks of one dataset share their header (shape, dtype), and parsing it (a Python literal)
    is most of the time ``np.load`` takes. Plain .npy files of version 1 or 2 with all their
    data are read here; anything else goes to ``np.load``, with its checks and errors.
    """
    data = path.read_bytes()
    if data[:6] == b"\x93NUMPY" and len(data) >= 12 and data[7] == 0 and data[6] in (1, 2):
        size_bytes = 2 if data[6] == 1 else 4
        end = 8 + size_bytes + int.from_bytes(data[8:8 + size_bytes], "little")
        if end <= len(data):
            shape, fortran, dtype = _npy_header(data[:end])
            count = math.prod(shape)
            if (not dtype.hasobject and dtype.itemsize > 0
                    and len(data) - end >= count * dtype.itemsize):
                array = np.frombuffer(data, dtype=dtype, count=count, offset=end)
                return array.reshape(shape[::-1]).transpose() if fortran else array.reshape(shape)
    return np.load(path, allow_pickle=False)


@functools.lru_cache(maxsize=16)
def _npy_header(head: bytes):
    """``(shape, fortran_order, dtype)`` of a .npy header (magic and header, version 1 or 2)."""
    from numpy.lib import format as npy

    fh = io.BytesIO(head)
    version = npy.read_magic(fh)
    read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
    return read(fh)


def _resize_mask(mask: np.ndarray, size) -> np.ndarray:
    """``mask > 0`` resized (bilinear, as the images) and thresholded at 0.5 → uint8 0/1.

    The comparison is pointwise, so it runs only on the pixels the resize reads.
    """
    small = dicom._resize_through(lambda a: (a > 0).astype(np.float32)[..., None], mask[None],
                                  size)
    return (small[0, ..., 0] >= 0.5).astype(np.uint8)


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


def _series_groups(items):
    """Items grouped by SeriesInstanceUID (first appearance), each sorted along the normal."""
    groups: dict = {}
    for it in items:
        groups.setdefault(it.img.series_uid, []).append(it)
    out = []
    for group in groups.values():
        group.sort(key=lambda it: (it.img.slice_position is None, it.img.slice_position or 0.0,
                                   it.img.instance_number if it.img.instance_number is not None
                                   else 0, it.order))
        out.append(group)
    return out


def series_issues(items, need_positions=False) -> list[str]:
    """What is wrong with one sorted series: inconsistent geometry, duplicate positions, gaps.

    Parameters
    ----------
    items : list
        Decoded files of one series, sorted along the slice normal.
    need_positions : bool
        Report missing positions (volumes need them; 2D slices do not).

    Returns
    -------
    list of str
        Short reasons, e.g. ``missing slices (gap of 15 mm, more than 1.5 x the median spacing
        of 5 mm)``; empty when the series is sound.
    """
    issues = []
    if len(items) < 2 or any(it.img.frames.shape[0] != 1 for it in items):
        return issues

    def rounded(v):
        return None if v is None else tuple(round(x, 4) for x in v)

    fields = {
        "ImageOrientationPatient": {rounded(it.img.geometry.orientation) for it in items},
        "Rows": {it.img.rows for it in items},
        "Columns": {it.img.columns for it in items},
        "PixelSpacing": {rounded(it.img.geometry.pixel_spacing) for it in items},
    }
    differ = [name for name, values in fields.items() if len(values) > 1]
    if differ:
        issues.append(f"inconsistent geometry in series ({', '.join(differ)} differ)")
    positions = [it.img.slice_position for it in items]
    if any(p is None for p in positions):
        if need_positions:
            issues.append("slice positions missing (ImagePositionPatient or "
                          "ImageOrientationPatient)")
        return issues
    steps = np.diff(np.asarray(positions, dtype=np.float64))
    dups = int(np.sum(steps <= DUPLICATE_POSITION_MM))
    if dups:
        issues.append(f"duplicate slice positions ({dups} slice{'s' if dups > 1 else ''} at "
                      "the position of another)")
    real = steps[steps > DUPLICATE_POSITION_MM]
    if real.size:
        median = float(np.median(real))
        gaps = real[real > MISSING_SLICE_FACTOR * median]
        if gaps.size:
            issues.append(f"missing slices (gap of {float(gaps.max()):.4g} mm, more than "
                          f"{MISSING_SLICE_FACTOR:g} x the median spacing of {median:.4g} mm)")
    return issues


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


def _resample_depth(stack: np.ndarray, depth: int) -> np.ndarray:
    """Linear resample along axis 0 (half-pixel centres, as the in-plane resize)."""
    if stack.shape[0] == depth:
        return stack
    lo, hi, lerp = dicom._interp_weights(stack.shape[0], depth)
    lerp = lerp.reshape(-1, *([1] * (stack.ndim - 1)))
    a, b = stack[lo], stack[hi]
    return (a + (b - a) * lerp).astype(np.float32)


def _volume(group, depth: int, size) -> tuple[np.ndarray, tuple, int]:
    """One sorted series (or one multi-frame object) → ``(D, H, W, C)`` volume, spacing, slices."""
    first = group[0].img
    geo = first.geometry
    if len(group) == 1:
        frames = first.frames
        positions = geo.frame_positions
        if positions is not None:
            order = np.argsort(positions, kind="stable")
            frames = frames[order]
            positions = [positions[i] for i in order]
    else:
        frames = np.concatenate([it.img.frames for it in group])
        positions = [it.img.slice_position for it in group]
    n = frames.shape[0]
    if n < 2:
        raise dicom.DicomRejected("volume needs at least 2 slices (received 1)")
    if positions is not None and None not in positions:
        steps = np.diff(np.asarray(positions, dtype=np.float64))
        step = float(np.median(steps)) if steps.size else 1.0
    else:
        step = geo.slice_spacing or 1.0
    ps = geo.pixel_spacing or (1.0, 1.0)
    spacing = (abs(step) * n / depth, ps[0] * first.rows / size[0], ps[1] * first.columns / size[1])
    return _resample_depth(frames, depth), spacing, n


def _decode_column(files, is_folder, window, opts: Options):
    """One input column of a row → (units, rejects, warnings).

    A unit is one future record's worth of this column: 2D → one frame; volume → one series.
    Each unit: ``{"image", "img", "path", "frame_no", "paths", "slices", "spacing"}``.
    """
    ok, bad = _read_files(files, window, opts)
    warnings = []
    units = []
    groups = _series_groups(ok) if is_folder else [[it] for it in ok]
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
                image, spacing, n = _volume(group, opts.volume_depth, opts.size)
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
            stored = _load_mask(Path(mask_path), img.rows, img.columns, unit["paths"][0])
        except dicom.DicomRejected as exc:
            out.extend(("reject", p, exc.reason) for u in units for p in u["paths"])
            return out
        mask = _resize_mask(stored, opts.size)
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


# --------------------------------------------------------------------------- main side


def _task_files(task) -> int:
    return sum(len(files) for _, files, _ in task[0])


def _chunks(tasks, workers: int = 1):
    """Consecutive tasks grouped into chunks of about :data:`FILES_PER_CHUNK` files (a task, one
    labels.csv row, is never split).

    The first chunk is :data:`FIRST_CHUNK_FILES` files: this process times it to decide whether
    worker processes will pay (the sooner it knows, the sooner they start). Towards the end
    chunks shrink to what is left over ``2 × workers`` (guided self-scheduling), so that no
    process is still decoding a whole chunk while the others have nothing left to do.
    """
    remaining = sum(_task_files(task) for task in tasks)
    target = min(FILES_PER_CHUNK, FIRST_CHUNK_FILES)
    chunk, n = [], 0
    for task in tasks:
        chunk.append(task)
        n += _task_files(task)
        if n >= target:
            yield chunk
            remaining -= n
            chunk, n = [], 0
            target = max(1, min(FILES_PER_CHUNK, remaining // (2 * max(1, int(workers)))))
    if chunk:
        yield chunk


def worker_start_method() -> str:
    """How worker processes start: ``"fork"`` where that is safe, else ``"spawn"``.

    A forked worker is ready in milliseconds with numpy, pydicom and its decoders already
    imported; a spawned one re-imports them (about half a second of CPU each), which on a few
    hundred files costs more than it saves. Fork is used only on Linux, from a process that runs
    a single thread and has not loaded TensorFlow (whose threads and locks a fork would copy
    half-held); anything else spawns.

    Returns
    -------
    str
        ``"fork"`` or ``"spawn"``, a :mod:`multiprocessing` start method.
    """
    if (sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
            and threading.active_count() == 1 and "tensorflow" not in sys.modules):
        return "fork"
    return "spawn"


def iter_outcomes(tasks, options: Options, workers: int = 1, parallel: str = "auto", stats=None):
    """Outcomes of :func:`decode_task` for every task, in task order.

    Tasks are decoded in chunks (:func:`_chunks`) by up to ``workers`` processes, this one
    included: up to ``workers - 1`` worker processes are started (see
    :func:`worker_start_method`), and only when worthwhile: ``parallel="auto"`` times the first
    chunk here and starts them when the remaining work is estimated above
    :data:`PARALLEL_MIN_SECONDS`; ``parallel="always"`` starts them at once (tests), ``"never"``
    never does. Chunks are handed out in order: each worker has :data:`CHUNKS_QUEUED_PER_WORKER`
    queued, and this process, rather than wait for the chunk due next, decodes the next chunk
    nobody has claimed, one task at a time, topping up the workers' queues between tasks (while
    fewer than ``CHUNKS_HELD_PER_PROCESS × workers`` chunks are decoded ahead or in flight).
    ``stats`` (a dict) receives ``workers_started`` (worker processes, this one not counted),
    ``start_method``, ``chunks`` and ``chunks_here`` (decoded by this process).
    """
    if parallel not in ("auto", "always", "never"):
        raise ValueError(f"Argument `parallel` must be auto, always or never. "
                         f"Received: parallel={parallel!r}")
    _init_worker(options)
    scheduler = _Scheduler(list(_chunks(tasks, workers if parallel != "never" else 1)),
                           options, workers, parallel, stats if stats is not None else {})
    try:
        yield from scheduler
    finally:
        scheduler.close()


class _Scheduler:
    """The state of :func:`iter_outcomes`: which chunks are claimed, queued, decoded."""

    def __init__(self, chunks, options, workers, parallel, stats):
        self.chunks, self.options, self.parallel, self.stats = chunks, options, parallel, stats
        self.sizes = [sum(_task_files(task) for task in chunk) for chunk in chunks]
        self.unclaimed = sum(self.sizes)  # files in chunks nobody has started
        self.helpers = max(0, int(workers) - 1) if parallel != "never" else 0
        self.held = CHUNKS_HELD_PER_PROCESS * max(1, int(workers))  # decoded or in flight
        self.pool, self.futures, self.ready, self.claimed = None, {}, {}, 0
        self.busy, self.done_here = 0.0, 0  # this process's decoding: seconds, files
        stats.update(workers_started=0, chunks=len(chunks), chunks_here=0)

    def __iter__(self):
        for i in range(len(self.chunks)):
            while i not in self.ready:
                self._start_workers_if_worthwhile()
                self._feed()
                if i in self.ready:
                    break
                if i in self.futures and (self.claimed == len(self.chunks) or self._full()):
                    self.ready[i] = self.futures.pop(i).result()  # nothing else to do: wait
                else:  # chunk i is unclaimed (then it is the one claimed) or with a worker
                    self._decode_here(self._claim())
            yield from self.ready.pop(i)

    def _full(self) -> bool:
        return len(self.futures) + len(self.ready) >= self.held

    def _claim(self) -> int:
        k = self.claimed
        self.claimed += 1
        self.unclaimed -= self.sizes[k]
        return k

    def _start_workers_if_worthwhile(self):
        if self.pool is not None or not self.helpers:
            return
        method = worker_start_method()
        if self.parallel == "always" or (self.done_here and self.busy / self.done_here
                                         * self.unclaimed > PARALLEL_MIN_SECONDS[method]):
            self.pool = ProcessPoolExecutor(max_workers=self.helpers,
                                            mp_context=multiprocessing.get_context(method),
                                            initializer=_init_worker, initargs=(self.options,))
            self.stats.update(workers_started=self.helpers, start_method=method)

    def _feed(self):
        """Collect what workers finished (a finished chunk waiting for its turn must not count
        as queued work) and top their queues up."""
        if self.pool is None:
            return
        for k in [k for k, future in self.futures.items() if future.done()]:
            self.ready[k] = self.futures.pop(k).result()
        while (self.claimed < len(self.chunks) and not self._full()
               and len(self.futures) < CHUNKS_QUEUED_PER_WORKER * self.helpers):
            k = self._claim()
            self.futures[k] = self.pool.submit(decode_chunk, self.chunks[k])

    def _decode_here(self, k: int):
        """Decode chunk ``k`` in this process, a task at a time, feeding the workers between
        tasks (their queues would otherwise run dry while this process is busy)."""
        t0 = time.perf_counter()
        out = []
        for task in self.chunks[k]:
            out.append(decode_task(task))
            self._feed()
        self.ready[k] = out
        self.busy += time.perf_counter() - t0
        self.done_here += self.sizes[k]
        self.stats["chunks_here"] += 1

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


class RecordStream:
    """Outcomes → records, in input order, with the bookkeeping every consumer needs.

    Keeps ``rejected`` (row, path, reason) and ``warnings`` (row, path, reason) with paths
    relative to ``dicom_dir``, drops repeated SOP Instance UIDs, numbers records ``r000001``….
    Shared by :func:`ingest` and the TFDS builder so both yield the same records.
    """

    def __init__(self, dicom_dir, class_index, has_mask, echo=True):
        self.dicom_dir = Path(dicom_dir)
        self.class_index = class_index
        self.has_mask = has_mask
        self.echo = echo
        self.rejected: list = []
        self.warnings: list = []
        self._rejected_keys: set = set()
        self._seen_sop: set = set()
        self._dup_files: set = set()
        self.sops: list = []  # SOP pseudonyms and duplicate files in the order seen: what a
        self.dups: list = []  # resumed ingest needs of the rows before it (see restore)
        self.count = 0

    def _rel(self, path):
        return os.path.relpath(path, self.dicom_dir)

    def reject(self, row, path, reason):
        key = (row, str(path))
        if key in self._rejected_keys:
            return
        self._rejected_keys.add(key)
        rel = self._rel(path)
        self.rejected.append((row, rel, reason))
        if self.echo:
            print(f"medzoo ingest: rejected {rel}: {reason}", file=sys.stderr)

    def warn(self, row, path, reason):
        rel = self._rel(path)
        self.warnings.append((row, rel, reason))
        if self.echo:
            print(f"medzoo ingest: warning {rel}: {reason}", file=sys.stderr)

    def records(self, row, outcomes):
        """Yield ``(record_id, label_row, payload)`` for the loadable outcomes of one row."""
        for kind, path, payload in outcomes:
            if kind == "reject":
                self.reject(row.row, path, payload)
                continue
            if kind == "warn":  # path is the input column's name
                self.warn(row.row, dict(row.columns)[path], payload)
                continue
            if any(p in self._dup_files for p in payload["paths"]):
                continue
            if any(s in self._seen_sop for s in payload["sops"]):
                for p in payload["paths"]:
                    self._dup_files.add(p)
                    self.dups.append(p)
                    self.reject(row.row, p, "duplicate SOPInstanceUID")
                continue
            self._seen_sop.update(payload["sops"])
            self.sops.extend(payload["sops"])
            if self.has_mask and payload["mask"] is None:
                shape = payload["image"].shape[:-1]
                payload["mask"] = np.zeros(shape, np.uint8)
                payload["has_own_mask"] = False
            else:
                payload["has_own_mask"] = payload["mask"] is not None
            self.count += 1
            yield f"r{self.count:06d}", payload

    def restore(self, state: dict) -> None:
        """Continue after the rows a journal ``state`` holds (:func:`medzoo.datasets.resume.merge`).

        Only whole rows are journalled, and a row's rejections are de-duplicated within it, so
        the keys of earlier rows' rejections are not needed again.
        """
        self.rejected = [tuple(r) for r in state["rejected"]]
        self.warnings = [tuple(w) for w in state["warnings"]]
        self.sops, self.dups = list(state["sops"]), list(state["dups"])
        self._seen_sop, self._dup_files = set(self.sops), set(self.dups)
        self.count = int(state["count"])


@dataclasses.dataclass
class PlannedRow:
    row: manifest.LabelRow
    columns: list  # [(name, [files], is_folder)]
    reason: str | None  # reject the whole row
    reasons: dict = dataclasses.field(default_factory=dict)  # per-file reason override

    @property
    def files(self):
        return [f for _, files, _ in self.columns for f in files]


def plan_rows(rows, labels_csv, volume=False) -> list[PlannedRow]:
    """Row-level checks (files exist, label present, mask usable) before any decoding."""
    base = Path(labels_csv).parent
    plan = []
    for r in rows:
        columns, problems = [], []
        for name, path in r.columns:
            if path is None:
                columns.append((name, [base / f"<{name} empty>"], False))
                problems.append((name, "input missing (empty cell)"))
                continue
            exists = path.exists() and path != base
            files = manifest.expand_path(path) if exists else [path]
            if not exists:
                problems.append((name, "file not found"))
            elif not files:
                files = [path]
                problems.append((name, "empty folder"))
            columns.append((name, [Path(f) for f in files], path.is_dir()))
        reason, reasons = None, {}
        if problems:
            if len(columns) == 1:
                reason = problems[0][1]
            else:
                bad_name, bad_reason = problems[0]
                reason = f"paired input rejected ({bad_name}: {bad_reason})"
                for name, why in problems:
                    for f in dict((n, fs) for n, fs, _ in columns)[name]:
                        reasons[str(f)] = f"{why} ({name})"
        elif len({is_dir for _, _, is_dir in columns}) > 1:
            reason = "paired inputs mix a file and a folder"
        elif not r.label:
            reason = "label missing"
        elif r.mask is not None and not r.mask.is_file():
            reason = "mask file missing"
        elif r.mask is not None and columns[0][2]:
            reason = "mask given for a series folder (expected one slice per row)"
        elif r.mask is not None and volume:
            reason = "mask given for a volume (masks are 2D only)"
        plan.append(PlannedRow(r, columns, reason, reasons))
    return plan


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


def _windows(window, n_columns):
    specs = list(window) if isinstance(window, (list, tuple)) and window and all(
        isinstance(w, (str, list, tuple)) or w is None for w in window) else [window]
    if len(specs) == 1:
        specs = specs * n_columns
    if len(specs) != n_columns:
        raise InputError(f"Expected one window, or one per input column ({n_columns}). "
                         f"Received: {len(specs)} windows")
    return specs


def ingest(dicom_dir, labels_csv, out, size=64, window="auto", workers=1, folds=5, seed=0,
           key_file=None, strict=False, records_per_shard=records.RECORDS_PER_SHARD,
           progress=None, *, color="grey", volumes=None, denoise=None, enhance=None,
           standardize=None, series_issues="warn", parallel="auto",
           file_timeout=FILE_TIMEOUT_SECONDS, spacing=None, volume_options=None) -> dict:
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
                              workers=workers, **(volume_options or {}))
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
                      series_issues=series_issues, file_timeout=float(file_timeout))
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
        key=deid.key_fingerprint(key)))
    with resume.WorkDir(out, digest) as work:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(work.path, 0o777 & ~umask)
        try:
            summary = _run(plan, dicom_dir, work, options, int(workers), classes, has_mask,
                           int(folds), int(seed), int(records_per_shard), progress, parallel,
                           settings)
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


def planned_tasks(plan):
    """The decodable rows of a plan as worker tasks, and those rows."""
    tasks, task_rows = [], []
    for p in plan:
        if p.reason is None:
            columns = [(name, [str(f) for f in files], is_dir) for name, files, is_dir in p.columns]
            tasks.append((columns, str(p.row.mask) if p.row.mask else None))
            task_rows.append(p)
    return tasks, task_rows


def iter_plan_records(plan, stream: RecordStream, options: Options, workers=1, parallel="auto",
                      on_row=None, stats=None):
    """Every record of a plan, in input order: ``(record_id, label_row, payload)``.

    Rows rejected by the plan go to ``stream.reject``; ``on_row(n_files)`` is called per row.
    """
    tasks, _ = planned_tasks(plan)
    outcomes = iter_outcomes(tasks, options, workers, parallel, stats)
    for p in plan:
        if p.reason is not None:
            for f in p.files:
                stream.reject(p.row.row, f, p.reasons.get(str(f), p.reason))
        else:
            for record_id, payload in stream.records(p.row, next(outcomes)):
                yield record_id, p.row, payload
        if on_row is not None:
            on_row(len(p.files))


CHECKPOINT_SECONDS = 60.0
"""Journal the work done at least this often (and after every finished shard)."""


def _checkpoint(work, writer, stream, index, totals, done, journalled, domain=None):
    """Journal the rows done since the last entry (shards made durable first)."""
    entry = {"rows": done["rows"], "files": done["files"], "count": stream.count,
             "totals": list(totals), "writer": writer.checkpoint(),
             "domain": domain.state() if domain is not None else None,
             "index": index[journalled["index"]:],
             "rejected": stream.rejected[journalled["rejected"]:],
             "warnings": stream.warnings[journalled["warnings"]:],
             "sops": stream.sops[journalled["sops"]:], "dups": stream.dups[journalled["dups"]:]}
    work.append(entry)
    journalled.update(index=len(index), rejected=len(stream.rejected),
                      warnings=len(stream.warnings), sops=len(stream.sops),
                      dups=len(stream.dups), shards=writer.finished, time=time.monotonic())


def _run(plan, dicom_dir, work, options, workers, classes, has_mask, folds, seed,
         records_per_shard, progress, parallel, settings):
    from tqdm import tqdm

    class Bar(tqdm):
        monitor_interval = 0  # no monitor thread: workers may then be forked (one thread)

    class_index = {c: i for i, c in enumerate(classes)}
    stream = RecordStream(dicom_dir, class_index, has_mask)
    n_inputs = sum(len(p.files) for p in plan)
    index = []
    totals = [0.0, 0.0, 0]  # sum, sum of squares and number of stored pixel values
    domain = DomainAccumulator()  # like totals: cumulative, journalled whole, restored on resume
    tmp = work.path
    state, writer = resume.merge(work.journal()), None
    if state is not None:  # a killed run of this same ingest: check its shards, then go on
        try:
            writer = records.ShardWriter(tmp / "shards", records_per_shard,
                                         resume_from=state["writer"])
        except (InputError, OSError) as exc:
            print(f"medzoo ingest: the unfinished ingest in {tmp} cannot be resumed ({exc}); "
                  "starting again", file=sys.stderr)
            state = None
    if writer is None:
        work.reset()
        writer = records.ShardWriter(tmp / "shards", records_per_shard)
    done = {"rows": 0, "files": 0}
    if state is not None:
        stream.restore(state)
        index = [dict(rec, _sort=tuple(rec["_sort"])) for rec in state["index"]]
        totals = list(state["totals"])
        domain = DomainAccumulator(state.get("domain"))
        done = {"rows": state["rows"], "files": state["files"]}
        print(f"medzoo ingest: resuming: {done['files']} of {n_inputs} input files already "
              f"ingested ({state['writer']['shards']} shards checked)", file=sys.stderr)
    bar = Bar(total=n_inputs, initial=done["files"], unit="file", file=sys.stderr,
              disable=None if progress is None else not progress, desc="ingest")
    run_stats: dict = {}
    journalled = {"index": len(index), "rejected": len(stream.rejected),
                  "warnings": len(stream.warnings), "sops": len(stream.sops),
                  "dups": len(stream.dups), "shards": writer.finished,
                  "time": time.monotonic()}

    def row_done(n_files):
        bar.update(n_files)
        done["rows"] += 1
        done["files"] += n_files
        if (writer.finished > journalled["shards"]
                or time.monotonic() - journalled["time"] > CHECKPOINT_SECONDS):
            _checkpoint(work, writer, stream, index, totals, done, journalled, domain)

    with writer:
        for record_id, row, payload in iter_plan_records(plan[done["rows"]:], stream, options,
                                                         workers, parallel, row_done, run_stats):
            names = manifest.split_label(row.label)
            image, label = payload["image"], class_index[names[0]]  # first class: compatibility
            labels = manifest.multi_hot(row.label, classes) if settings["multi_label"] else None
            writer.write(records.record_features(record_id, image, label, payload["mask"],
                                                 spacing=payload["spacing"], labels=labels))
            totals[0] += float(image.sum(dtype=np.float64))
            totals[1] += float(np.square(image, dtype=np.float64).sum())
            totals[2] += image.size
            domain.add(payload.get("domain"))
            index.append({
                "record_id": record_id, "row": row.row, "patient": payload["patient"],
                "study": payload["study"], "series": payload["series"], "label": label,
                "modality": payload["modality"], "window_center": payload["window_center"],
                "window_width": payload["window_width"], "photometric": payload["photometric"],
                "has_mask": int(payload["has_own_mask"]), "voi": payload["voi"],
                "slices": payload["slices"], "_names": names,
                "_sort": (payload["position"] is None, payload["position"] or 0.0,
                          payload["instance"] if payload["instance"] is not None else 0,
                          payload["frame_no"], len(index)),
            })
    total, total_sq, n_pixels = totals
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

    cols = manifest.INDEX_COLUMNS + manifest.INDEX_EXTRA_COLUMNS
    _write_text(tmp / "index.csv", _csv_text(cols, (
        [rec[c] if c not in ("window_center", "window_width") else _num(rec[c]) for c in cols]
        for rec in index)))
    _write_text(tmp / "rejected.csv", _csv_text(("row", "path", "reason"), sorted(
        stream.rejected, key=lambda x: (x[0], x[1]))))
    _write_text(tmp / "warnings.csv", _csv_text(("row", "path", "reason"), sorted(
        stream.warnings, key=lambda x: (x[0], x[1]))))

    n_rejected = len(stream.rejected)
    loaded = n_inputs - n_rejected
    per_class = {c: 0 for c in classes}
    per_fold = {str(f): 0 for f in range(folds)}
    for rec in index:
        for name in rec["_names"]:  # multi-label: every finding of the record counts
            per_class[name] += 1
        per_fold[str(rec["fold"])] += 1
    by_reason = collections.Counter(reason for _, _, reason in stream.rejected)
    mean = total / n_pixels
    std = math.sqrt(max(0.0, total_sq / n_pixels - mean * mean))
    counts = {"inputs": n_inputs, "loaded": loaded, "rejected": n_rejected,
              "records": len(index), "per_class": per_class, "per_fold": per_fold,
              "patients": len(by_patient), "rejected_by_reason": dict(sorted(by_reason.items())),
              "warnings": len(stream.warnings)}
    info = {
        "schema_version": SCHEMA_VERSION,
        "task": "classification",
        "kind": settings["kind"],
        "image_size": settings["image_size"],
        "channels": settings["channels"],
        "classes": classes,
        "has_mask": has_mask,
        "window": settings["window"],
        "folds": folds,
        "seed": seed,
        "counts": counts,
        "modalities": dict(sorted(collections.Counter(r["modality"] for r in index).items())),
        "pixel_stats": {"mean": round(mean, 6), "std": round(std, 6)},
        "domain": domain.summary(),
        "key_fingerprint": deid.key_fingerprint(options.key),
        "input_columns": settings["inputs"],
        "windows": settings["windows"],
        "window_preset": settings["window_preset"],
        "color": settings["color"],
        "preprocessing": settings["preprocessing"],
        "series_issues": settings["series_issues"],
    }
    if settings["multi_label"]:
        info["multi_label"] = True
    if settings.get("plan"):
        info["plan"] = settings["plan"]
    _write_text(tmp / "dataset.json", json.dumps(info, indent=2) + "\n")
    return dict(counts, workers_started=run_stats.get("workers_started", 0),
                resumed_files=state["files"] if state is not None else 0)
