"""labels.csv rows → records, and every rejection on the way (ingest and the TFDS builder).

:func:`plan_rows` checks each row before anything is decoded (inputs exist, label present, mask
usable) and rejects the whole row when it fails; :func:`planned_tasks` turns the rest into
decoding tasks. :class:`RecordStream` turns the decoded outcomes into records in input order,
keeping ``rejected`` and ``warnings`` with paths relative to the DICOM dir (what ingest writes
to rejected.csv and warnings.csv) and dropping repeated SOP Instance UIDs;
:func:`iter_plan_records` runs the two together.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np

from medzoo.datasets import manifest
from medzoo.datasets.ingest_decode import Options
from medzoo.datasets.ingest_schedule import iter_outcomes


@dataclasses.dataclass
class PlannedRow:
    """One labels.csv row with its input files, and why the whole row is rejected (or None)."""

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


def planned_tasks(plan):
    """The decodable rows of a plan as worker tasks, and those rows."""
    tasks, task_rows = [], []
    for p in plan:
        if p.reason is None:
            columns = [(name, [str(f) for f in files], is_dir) for name, files, is_dir in p.columns]
            tasks.append((columns, str(p.row.mask) if p.row.mask else None))
            task_rows.append(p)
    return tasks, task_rows


class RecordStream:
    """Outcomes → records, in input order, with the bookkeeping every consumer needs.

    Keeps ``rejected`` (row, path, reason) and ``warnings`` (row, path, reason) with paths
    relative to ``dicom_dir``, drops repeated SOP Instance UIDs, numbers records ``r000001``….
    Shared by :func:`medzoo.datasets.ingest.ingest` and the TFDS builder so both yield the same records.
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
