"""The writing side of ingest: records into shards, then index.csv, rejected.csv, dataset.json.

:func:`write_dataset` streams the records of a plan, in input order, into TFRecord shards in the
hidden work folder of :class:`medzoo.datasets.resume.WorkDir`, journalling the work done after
every finished shard (and at least every :data:`CHECKPOINT_SECONDS`) so that a killed ingest
resumes; then it numbers frames along each series, assigns patient-grouped folds and writes
index.csv, rejected.csv, warnings.csv and dataset.json (counts, classes, pixel statistics).
"""

from __future__ import annotations

import collections
import csv
import io
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from medzoo.datasets import deid, manifest, records, resume, splits
from medzoo.datasets.domain import DomainAccumulator
from medzoo.datasets.ingest_rows import RecordStream, iter_plan_records
from medzoo.errors import InputError


SCHEMA_VERSION = 1
"""dataset.json ``schema_version`` of the dataset dirs ingest writes."""

CHECKPOINT_SECONDS = 60.0
"""Journal the work done at least this often (and after every finished shard)."""


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


def write_dataset(plan, dicom_dir, work, options, workers, classes, has_mask, folds, seed,
                  records_per_shard, progress, parallel, settings):
    """Decode a plan and write the whole dataset dir into ``work.path``.

    Parameters
    ----------
    plan : list of PlannedRow
        :func:`medzoo.datasets.ingest_rows.plan_rows` of the labels file.
    dicom_dir : Path
        Folder rejected.csv and warnings.csv paths are relative to.
    work : medzoo.datasets.resume.WorkDir
        The hidden work folder; its journal, when it holds one, is resumed from.
    options : Options
        What the decoding processes are given.
    workers : int
        Up to this many decoding processes (:func:`~medzoo.datasets.ingest_schedule.iter_outcomes`).
    classes : list of str
        Class names in label order.
    has_mask : bool
        Any row has a mask: rows without one get an empty mask.
    folds, seed : int
        Patient-grouped, label-stratified folds.
    records_per_shard : int
        Records per TFRecord shard.
    progress : bool or None
        Progress bar on stderr; None: only on a terminal.
    parallel : {"auto", "always", "never"}
        When worker processes start.
    settings : dict
        What dataset.json records of the options (kind, image_size, channels, windows, …).

    Returns
    -------
    dict
        The counts of dataset.json, ``workers_started`` and ``resumed_files``.

    Raises
    ------
    InputError
        Every input file rejected.
    """
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
