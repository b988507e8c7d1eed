"""``medzoo data pull``: copy studies from a PACS into a DICOM folder that ingest and predict read.

Layout of the out dir (names never hold a patient name, ID or UID — folder names leak into
listings, logs and labels files; the files themselves are the original DICOM objects)::

    OUT/study-0001/series-001/IM00001.dcm     counters, in the order the server listed them
    OUT/study-<pseudonym>/series-<pseudonym>/IM00001.dcm   with a key file: the keyed pseudonyms
                                              that ``data ingest --key-file`` writes to index.csv
    OUT/study-0001/series-001.seg-1.dcm       with --annotations: a SEG / RTSTRUCT that references
    OUT/study-0001/series-001.rtstruct-1.dcm  the series, beside (not inside) its folder
    OUT/series.csv                            path,label,modality,instances[,mask]: one row per
                                              series folder; fill in `label` and pass it to ingest
                                              (`mask`, with --annotations: the series' SEG, else
                                              its RTSTRUCT, relative to OUT)
    OUT/pull.json                             counts of the last run (no identifiers)

Resumable: on start every ``IM*.dcm`` already under OUT is parsed; a complete one is skipped
(its UIDs tell which study/series folder it belongs to, so no identifier has to be kept in a
state file), an unreadable or incomplete one (pixel data cut short) is deleted and fetched
again, left-over temporary files are removed. Every instance is written to a hidden temporary name beside its target and renamed, so a
file under its final name is always complete.

Fetches run in a small thread pool. A fetch that fails in a way that may pass (HTTP 5xx, 408,
429, timeout, dropped connection) is retried with exponential backoff, a bounded number of times;
once the server itself stays unreachable the remaining fetches are not attempted and count as
failed — run the same command again to resume.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import re
import sys
import threading
import time
import warnings
from pathlib import Path

from medzoo import __version__, fsio
from medzoo.datasets.annotations import referenced_series
from medzoo.datasets.dicom import non_image_kind
from medzoo.errors import InputError
from medzoo.pacs.client import InstanceFailed, PacsError, TransientError

__all__ = ["pull", "PullSummary"]

_FILE = re.compile(r"^IM(\d{5,})\.dcm$")
_ANNOTATION_FILE = re.compile(r"^(?P<series>series-[^.]+)\.(?P<kind>seg|rtstruct)-(?P<n>\d+)\.dcm$")
#: Annotation objects `--annotations` fetches: modality → file kind.
ANNOTATION_MODALITIES = {"SEG": "seg", "RTSTRUCT": "rtstruct"}
_ANNOTATION_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4": "seg",
                       "1.2.840.10008.5.1.4.1.1.481.3": "rtstruct"}
_MAX_BACKOFF = 30.0

# Objects in a study that are not images: a result filed back by `predict --send` (SEG, SR), key
# objects, presentation states, RT plans and structures, documents. Ingest and predict would read
# a SEG's mask as if it were an image, so they are left on the server (and counted).
NON_IMAGE_MODALITIES = frozenset({"SEG", "SR", "KO", "PR", "DOC", "REG", "FID", "RTSTRUCT",
                                  "RTPLAN", "RTRECORD", "PLAN", "RWV", "AU", "ECG", "HD"})



@contextlib.contextmanager
def _silenced():
    """pydicom/highdicom warnings off: they quote element values, which may be PHI (UIDs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def is_image(ref) -> bool:
    """Whether an instance is an image that ingest and predict can read (by modality and class,
    :func:`medzoo.datasets.dicom.non_image_kind`)."""
    if (ref.modality or "").upper() in NON_IMAGE_MODALITIES:
        return False
    return non_image_kind(ref.sop_class or "") is None


@dataclasses.dataclass
class PullSummary:
    """Counts only (no identifiers): safe to print and to write into pull.json."""

    studies: int = 0
    series: int = 0
    found: int = 0
    fetched: int = 0
    skipped: int = 0
    failed: int = 0
    replaced: int = 0  # files on disk that were incomplete and are fetched again
    not_images: int = 0  # SEG, SR, … found in the studies and left on the server
    annotations: int = 0  # --annotations: SEG / RTSTRUCT stored beside the series they reference
    annotations_unmatched: int = 0  # ... that reference no pulled series (left on the server)
    failed_by_reason: dict = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class _Layout:
    """Where each instance goes; rebuilt from the files on disk on every run."""

    def __init__(self, out: Path, key: bytes | None):
        self.out, self.key = out, key
        self.studies: dict[str, str] = {}  # study UID → folder name
        self.series: dict[tuple[str, str], str] = {}  # (study, series) UID → folder name
        self.on_disk: dict[str, Path] = {}  # SOP UID → complete file
        self.used: dict[Path, set[int]] = {}  # series dir → file numbers taken
        self.annotations: dict[str, Path] = {}  # SOP UID → annotation file beside a series
        self.replaced = 0

    def scan(self) -> None:
        import pydicom

        from medzoo.datasets.dicom import pydicom_quiet

        for study_dir in sorted(p for p in self.out.iterdir() if p.is_dir()
                                and p.name.startswith("study-")):
            for path in sorted(p for p in study_dir.iterdir() if p.is_file()
                               and _ANNOTATION_FILE.match(p.name)):
                try:
                    with _silenced():
                        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
                    self.annotations[str(ds.SOPInstanceUID)] = path
                except Exception:
                    path.unlink(missing_ok=True)  # cut short: fetched again
                    self.replaced += 1
            for series_dir in sorted(p for p in study_dir.iterdir() if p.is_dir()
                                     and p.name.startswith("series-")):
                for path in sorted(series_dir.iterdir()):
                    if path.name.startswith(".IM") and ".partial" in path.name:
                        path.unlink(missing_ok=True)  # a fetch that never finished
                        continue
                    match = _FILE.match(path.name)
                    if not match:
                        continue
                    try:
                        with pydicom_quiet():
                            ds = pydicom.dcmread(str(path))
                            complete = _is_complete(ds)
                        uids = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                                str(ds.SOPInstanceUID))
                    except Exception:
                        complete = False
                    if not complete:
                        path.unlink(missing_ok=True)
                        self.replaced += 1
                        continue
                    self.studies.setdefault(uids[0], study_dir.name)
                    self.series.setdefault(uids[:2], series_dir.name)
                    self.on_disk[uids[2]] = path
                    self.used.setdefault(series_dir, set()).add(int(match.group(1)))

    def _name(self, kind: str, uid: str, taken) -> str:
        if self.key is not None:
            from medzoo.datasets.deid import pseudonym

            return f"{kind}-{pseudonym(self.key, kind, uid)}"
        width = 4 if kind == "study" else 3
        numbers = [int(n.split("-", 1)[1]) for n in taken if n.split("-", 1)[1].isdigit()]
        return f"{kind}-{max(numbers, default=0) + 1:0{width}d}"

    def target(self, ref) -> Path:
        study = self.studies.get(ref.study_uid)
        if study is None:
            study = self.studies[ref.study_uid] = self._name("study", ref.study_uid,
                                                             self.studies.values())
        skey = (ref.study_uid, ref.series_uid)
        series = self.series.get(skey)
        if series is None:
            taken = [v for (st, _), v in self.series.items() if st == ref.study_uid]
            series = self.series[skey] = self._name("series", ref.series_uid, taken)
        folder = self.out / study / series
        used = self.used.setdefault(folder, set())
        number = next(n for n in range(1, len(used) + 2) if n not in used)
        used.add(number)
        return folder / f"IM{number:05d}.dcm"


def _is_complete(ds) -> bool:
    """Whether a parsed file holds all of its pixel data.

    pydicom reads a file cut inside native pixel data without complaint (the value is just
    short), and gives ``None`` for encapsulated pixel data that lost its end.
    """
    if "PixelData" not in ds:
        return True
    data = ds.PixelData
    if data is None:
        return False
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        return True
    bits = (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
            * int(ds.get("NumberOfFrames", 1) or 1) * int(ds.BitsAllocated))
    return len(data) >= (bits + 7) // 8


def pull(client, out, *, query: dict | None = None, study_uids=(), workers: int = 4,
         retries: int = 4, backoff: float = 1.0, key_file=None, progress: bool | None = None,
         on_fetched=None, annotations: bool = False) -> dict:
    """Find studies on a PACS and copy their instances into ``out`` (resumable).

    Parameters
    ----------
    client : DicomWebClient or DimseClient
        From :func:`medzoo.pacs.client.connect`.
    out : path-like
        DICOM folder to create or resume (see the module docstring for its layout).
    query : dict, optional
        Study-level matching keys by DICOM keyword (QIDO-RS search filters / C-FIND identifier),
        e.g. ``{"ModalitiesInStudy": "CT", "StudyDate": "20240101-20240131"}``.
    study_uids : sequence of str, optional
        Only these studies (each combined with ``query``).
    workers : int
        Concurrent fetches (threads; one HTTP session or DICOM association each).
    retries : int
        Further attempts per instance after a transient failure; waits ``backoff * 2**k`` s.
    key_file : path-like, optional
        Pseudonym key: name folders by keyed pseudonyms instead of counters.
    progress : bool, optional
        tqdm bar on stderr; None → only on a terminal.
    on_fetched : callable, optional
        Called with the running :class:`PullSummary` after each instance (tests use it).
    annotations : bool
        Also fetch the SEG and RTSTRUCT objects of the studies that reference a pulled series
        (by Referenced Series Sequence or referenced SOP Instance UIDs), store each beside its
        series folder and name it in series.csv's ``mask`` column.

    Returns
    -------
    dict
        :class:`PullSummary` counts plus ``out``; ``found == fetched + skipped + failed`` counts
        images only: objects that are not (:func:`is_image`: SEG, SR, presentation states, …)
        are counted in ``not_images`` and not fetched.

    Raises
    ------
    PacsError
        The server cannot be used (unreachable, credentials refused, search refused).
    InputError
        Bad options, or ``out`` is a file.
    """
    from tqdm import tqdm

    for name, value, low in (("workers", workers, 1), ("retries", retries, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"Argument `{name}` must be an integer >= {low}. "
                             f"Received: {name}={value!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"Output {out}: expected a folder. Received: a file")
    key = None
    if key_file is not None:
        from medzoo.datasets.deid import load_or_create_key

        key = load_or_create_key(key_file)

    found = _in_order(client.find_instances(query or {}, list(study_uids or ())))
    refs = [r for r in found if is_image(r)]
    out.mkdir(parents=True, exist_ok=True)
    layout = _Layout(out, key)
    layout.scan()

    wanted = [r for r in found if annotations and _annotation_kind(r)]
    summary = PullSummary(found=len(refs), replaced=layout.replaced,
                          not_images=len(found) - len(refs) - len(wanted),
                          studies=len({r.study_uid for r in refs}),
                          series=len({(r.study_uid, r.series_uid) for r in refs}))
    todo = []
    for ref in refs:
        if ref.sop_uid in layout.on_disk:
            summary.skipped += 1
        else:
            todo.append((ref, layout.target(ref)))

    lock = threading.Lock()
    server_down = threading.Event()
    bar = tqdm(total=len(refs), initial=summary.skipped, unit="instance", file=sys.stderr,
               desc="pull", disable=None if progress is None else not progress)

    def fetch_one(ref, path: Path):
        if server_down.is_set():
            return "server unreachable"
        for attempt in range(retries + 1):
            try:
                data = client.fetch(ref)
                break
            except TransientError as err:
                if attempt == retries:
                    if err.connection:
                        server_down.set()
                    return err.reason
                time.sleep(min(_MAX_BACKOFF, backoff * 2 ** attempt))
                if server_down.is_set():
                    return "server unreachable"
            except InstanceFailed as err:
                return err.reason
            except PacsError:
                server_down.set()
                return "credentials refused"
        with fsio.atomic_path(path, suffix=".partial") as tmp:
            tmp.write_bytes(data)
        return None

    def done(reason):
        with lock:
            if reason is None:
                summary.fetched += 1
            else:
                summary.failed += 1
                summary.failed_by_reason[reason] = summary.failed_by_reason.get(reason, 0) + 1
            bar.update(1)
            if on_fetched is not None:
                on_fetched(summary)

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(fetch_one, ref, path) for ref, path in todo]
        for future in concurrent.futures.as_completed(futures):
            try:
                done(future.result())
            except OSError:
                raise
            except Exception as exc:  # a bug or an odd file: count it, name no UID
                done(type(exc).__name__)
    finally:
        server_down.set()  # on Ctrl-C or a full disk: fetches still queued return at once
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        close = getattr(client, "close", None)
        if close is not None:
            close()
    if wanted:
        _pull_annotations(client, wanted, refs, layout, summary, retries, backoff)
    _write_series_csv(out, refs, layout, annotations)
    result = {**summary.as_dict(), "source": client.kind, "medzoo_version": __version__,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    fsio.write_json(out / "pull.json", result)
    return {**result, "out": str(out)}


def _in_order(refs) -> list:
    """One ref per SOP UID; studies and series in the server's order, instances by number."""
    unique = list({r.sop_uid: r for r in refs}.values())
    studies = {u: i for i, u in enumerate(dict.fromkeys(r.study_uid for r in unique))}
    series = {u: i for i, u in enumerate(dict.fromkeys(r.series_uid for r in unique))}
    return sorted(unique, key=lambda r: (studies[r.study_uid], series[r.series_uid],
                                         r.number is None, r.number or 0))


def _annotation_kind(ref) -> str | None:
    return (ANNOTATION_MODALITIES.get((ref.modality or "").upper())
            or _ANNOTATION_CLASSES.get(ref.sop_class or ""))


def _pull_annotations(client, wanted, refs, layout: _Layout, summary: PullSummary, retries: int,
                      backoff: float) -> None:
    """Fetch each SEG / RTSTRUCT, keep those that reference a pulled series, beside it."""
    import io

    import pydicom

    series_of_sop = {r.sop_uid: r.series_uid for r in refs}
    for ref in wanted:
        if ref.sop_uid in layout.annotations:
            summary.annotations += 1
            continue
        data, reason = None, None
        for attempt in range(retries + 1):
            try:
                data = client.fetch(ref)
                break
            except TransientError as err:
                reason = err.reason
                if attempt < retries:
                    time.sleep(min(_MAX_BACKOFF, backoff * 2 ** attempt))
            except (InstanceFailed, PacsError) as err:
                reason = getattr(err, "reason", None) or type(err).__name__
                break
        if data is None:
            summary.failed += 1
            summary.failed_by_reason[reason] = summary.failed_by_reason.get(reason, 0) + 1
            continue
        try:
            with _silenced():
                ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            targets = sorted(layout.series[(ref.study_uid, s)]
                             for s in referenced_series(ds, series_of_sop)
                             if (ref.study_uid, s) in layout.series)
        except Exception:  # an unreadable object references nothing we can tell
            targets = []
        if not targets:
            summary.annotations_unmatched += 1
            continue
        kind = _annotation_kind(ref)
        folder = layout.out / layout.studies[ref.study_uid]
        n = 1
        while (folder / f"{targets[0]}.{kind}-{n}.dcm").exists():
            n += 1
        path = folder / f"{targets[0]}.{kind}-{n}.dcm"
        with fsio.atomic_path(path, suffix=".partial") as tmp:
            tmp.write_bytes(data)
        layout.annotations[ref.sop_uid] = path
        summary.annotations += 1


def _series_mask(out: Path, study_dir: Path, series_name: str) -> str:
    """The series' annotation for series.csv: its first SEG, else its first RTSTRUCT."""
    found = sorted((m["kind"] != "seg", int(m["n"]), p.name) for p in study_dir.iterdir()
                   if (m := _ANNOTATION_FILE.match(p.name)) and m["series"] == series_name)
    return f"{study_dir.name}/{found[0][2]}" if found else ""


def _write_series_csv(out: Path, refs, layout: _Layout, annotations: bool = False) -> None:
    """series.csv: one row per series folder; keeps labels the user already filled in."""
    path = out / "series.csv"
    labels = {}
    if path.is_file():
        try:
            labels = {r["path"]: r.get("label", "") for r in fsio.read_csv(path)}
        except (OSError, KeyError, ValueError):
            labels = {}
    modality = {}
    for ref in refs:
        series = layout.series.get((ref.study_uid, ref.series_uid))
        folder = f"{layout.studies.get(ref.study_uid)}/{series}"
        modality.setdefault(folder, ref.modality)
    rows = []
    for study_dir in sorted(p for p in out.iterdir() if p.is_dir() and p.name.startswith("study-")):
        for series_dir in sorted(p for p in study_dir.iterdir() if p.is_dir()):
            rel = f"{study_dir.name}/{series_dir.name}"
            count = sum(1 for f in series_dir.iterdir() if _FILE.match(f.name))
            if count:
                rows.append({"path": rel, "label": labels.get(rel, ""),
                             "modality": modality.get(rel, ""), "instances": count})
                if annotations:
                    rows[-1]["mask"] = _series_mask(out, study_dir, series_dir.name)
    fsio.write_csv(path, rows, ("path", "label", "modality", "instances")
                   + (("mask",) if annotations else ()))


def describe(summary: dict) -> str:
    """The one line the command prints (counts only)."""
    line = (f"pulled {summary['studies']} studies ({summary['series']} series): found "
            f"{summary['found']} instances, fetched {summary['fetched']}, skipped "
            f"{summary['skipped']} already on disk, failed {summary['failed']}")
    if summary.get("replaced"):
        line += f" ({summary['replaced']} incomplete files fetched again)"
    if summary.get("annotations") or summary.get("annotations_unmatched"):
        line += f"; {summary['annotations']} annotations (SEG/RTSTRUCT) stored beside their series"
        if summary.get("annotations_unmatched"):
            line += f", {summary['annotations_unmatched']} referencing no pulled series left"
    if summary.get("not_images"):
        line += f"; left {summary['not_images']} non-image objects (SEG, SR, …) on the server"
    return line + f" → {summary['out']}"

