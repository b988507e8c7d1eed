"""The DICOM folder ``predict`` reads: which files are inputs, each file's header scanned into a
:class:`Source` (UIDs in memory only), and the sources grouped into studies → series → objects.

``medzoo predict --send`` re-reads a predict run's folder through the same functions, so that
both see the same files, rejections, duplicates and grouping.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from medzoo.datasets import dicom
from medzoo.datasets.domain import header_facts
from medzoo.errors import InputError

__all__ = ["Source", "NOT_DICOM_SUFFIXES", "discover", "input_files", "scan", "scan_files",
           "group"]

NOT_DICOM_SUFFIXES = frozenset({
    ".csv", ".tsv", ".txt", ".json", ".md", ".html", ".xml", ".yaml", ".yml", ".log", ".pdf",
    ".npy", ".npz", ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".nii", ".gz",
    ".zip", ".tar", ".py", ".key",
})
"""Suffixes of files that live beside DICOM files (labels, masks, notes) and are not inputs."""


@dataclasses.dataclass
class Source:
    """One DICOM object that passed the header checks. Holds UIDs in memory only."""

    path: Path
    rel: str
    study_uid: str
    series_uid: str
    sop_uid: str
    position: float | None
    instance: int | None
    rows: int
    columns: int
    frames: int
    order: int
    facts: dict | None = None  # what kind of image (medzoo.datasets.domain), no identifiers
    modality: str = ""
    frame_of_reference: str = ""  # fusion exports pair series within one frame of reference


def discover(dicom_dir: Path, skip: Path | None = None) -> tuple[list[Path], int]:
    """Input files under ``dicom_dir`` (recursive, sorted) and the number of files ignored.

    Hidden files and folders, ``DICOMDIR`` and files with a :data:`NOT_DICOM_SUFFIXES` suffix are
    ignored; so is ``skip`` (the out dir, when it lies inside ``dicom_dir``).
    """
    files, ignored = [], 0
    skip = skip.resolve() if skip is not None else None
    for folder, dirs, names in os.walk(dicom_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (skip is None or (Path(folder) / d).resolve() != skip))
        for name in sorted(names):
            path = Path(folder) / name
            if (name.startswith(".") or name.upper() == "DICOMDIR"
                    or path.suffix.lower() in NOT_DICOM_SUFFIXES or not path.is_file()):
                ignored += 1
                continue
            files.append(path)
    return files, ignored


def input_files(dicom_dir: Path, skip: Path | None = None) -> tuple[list[Path], int]:
    """:func:`discover`, raising :class:`InputError` when it finds no input file."""
    files, ignored = discover(dicom_dir, skip=skip)
    if not files:
        raise InputError(f"DICOM dir {dicom_dir}: expected DICOM files. Received: none "
                         f"({ignored} other files ignored)")
    return files, ignored


def scan(path: Path, rel: str, order: int) -> Source:
    """The header of one DICOM file as a :class:`Source` (``order``: its place in the walk).

    Raises
    ------
    medzoo.datasets.dicom.DicomRejected
        Not a usable DICOM image (its reason is PHI-free); other exceptions for unreadable files.
    """
    with dicom.pydicom_quiet():
        ds = dicom.read_dataset(path)
        dicom.check_header(ds)
        instance = ds.get("InstanceNumber")
        try:
            instance = int(instance)
        except (TypeError, ValueError):
            instance = None
        return Source(
            path=path, rel=rel, study_uid=str(ds.get("StudyInstanceUID", "") or ""),
            series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
            sop_uid=str(ds.get("SOPInstanceUID", "") or ""), position=dicom.slice_position(ds),
            instance=instance, rows=int(ds.Rows), columns=int(ds.Columns),
            frames=int(ds.get("NumberOfFrames", 1) or 1), order=order,
            modality=str(ds.get("Modality", "") or "").strip().upper(),
            frame_of_reference=str(ds.get("FrameOfReferenceUID", "") or ""),
            facts=header_facts(ds))


def scan_files(files: list[Path], dicom_dir: Path):
    """Scan every file's header; yield ``(rel, source, None)`` for a usable one and ``(rel, None,
    reason)`` for one to reject: unreadable (``cannot read header`` unless the reader names the
    reason) or a repeat of an earlier file's SOPInstanceUID (``duplicate SOPInstanceUID``).
    ``rel`` is the file's path relative to ``dicom_dir``."""
    seen_sop = set()
    for order, path in enumerate(files):
        rel = os.path.relpath(path, dicom_dir)
        try:
            src = scan(path, rel, order)
        except dicom.DicomRejected as exc:
            yield rel, None, exc.reason
            continue
        except Exception:
            yield rel, None, "cannot read header"
            continue
        if src.sop_uid and src.sop_uid in seen_sop:
            yield rel, None, "duplicate SOPInstanceUID"
            continue
        seen_sop.add(src.sop_uid)
        yield rel, src, None


def group(sources: list[Source]) -> list[list[list[Source]]]:
    """Studies → series → objects; studies and series in order of first appearance, objects
    sorted along the slice normal (then instance number, then file order), as ingest does."""
    studies: dict[str, dict[str, list[Source]]] = {}
    for src in sources:
        study = src.study_uid or f"file:{src.path}"
        series = src.series_uid or f"file:{src.path}"
        studies.setdefault(study, {}).setdefault(series, []).append(src)
    return [[sorted(objs, key=lambda s: (s.position is None, s.position or 0.0,
                                         s.instance if s.instance is not None else 0, s.order))
             for objs in series.values()] for series in studies.values()]
