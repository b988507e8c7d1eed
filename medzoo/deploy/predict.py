"""``medzoo predict``: an export version dir on new, unlabelled DICOM studies → findings.

The model runs on what the scanner wrote: raw stored pixels plus rescale slope/intercept, window
and a MONOCHROME1 flag go to the export's ``model_raw.onnx`` (or the SavedModel's
``serving_default``), whose graph repeats the training pixel chain. The window is chosen exactly
as ingest chose it for the training images (:func:`medzoo.datasets.dicom.choose_window` with the
training window from the model card): a fixed training window wins, else the file's first VOI
window, else the modality preset, else min–max of the image.

Out dir (built in a hidden sibling folder and renamed into place, so it appears complete or not
at all):

* ``predictions.csv`` — ``image, study, series, study_image, slice, frame, rows, columns, score,
  predicted`` (+ ``lesion_pixels`` for segmenters; + ``study_pseudonym, series_pseudonym``, the
  keyed pseudonyms of index.csv, when a key file is given). No UID, name or input path.
* ``studies.json`` — per study and per series: image count, max/mean score, images at or above
  the threshold, the predicted class, and the model name/version that said so.
* ``findings/study-NNN.md`` — the readable report of each study (:mod:`medzoo.deploy.findings`).
* ``seg/series-NNN.dcm`` — segmenters only: a DICOM SEG per series
  (:mod:`medzoo.deploy.dicom_seg`), the one output that carries the source study's identifiers,
  by design: a SEG must, to be attached to its study. Sources without a frame of reference or
  positions get ``seg/series-NNN-K.dcm``, one per image.
* ``rejected.csv`` — ``path, reason`` per input file that could not be used (DESIGN.md: the
  user's own relative paths may appear here and on the terminal, nowhere else).
* ``not_analysed.csv`` — ``study, series, files, images, modality, reason`` per series outside
  the training domain, not scored (:mod:`medzoo.deploy.domain`; ``--allow-out-of-domain``
  scores them, marked in the ``out_of_domain`` column). ``predictions.csv`` also carries each
  image's ``ood_score`` and ``ood_flag`` (:mod:`medzoo.export.ood`).

Every input file ends in ``predictions.csv`` (one row per frame), ``rejected.csv`` or
``not_analysed.csv``. Files whose
name marks them as something else (``.csv``, ``.npy``, ``.png``, …, ``DICOMDIR``) and hidden
files are not inputs; they are counted as ``ignored``.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from medzoo import __version__, fsio
from medzoo.datasets import deid, dicom
from medzoo.errors import InputError
from medzoo.deploy import findings
from medzoo.deploy import screening
from medzoo.datasets.domain import header_facts

__all__ = ["predict", "load_export", "ExportedModel", "discover", "raw_feeds", "RUNTIMES",
           "NOT_DICOM_SUFFIXES"]

RUNTIMES = ("onnx", "savedmodel")
DEFAULT_THRESHOLD = 0.5
NOT_DICOM_SUFFIXES = frozenset({
    ".csv", ".tsv", ".txt", ".json", ".md", ".html", ".xml", ".yaml", ".yml", ".log", ".pdf",
    ".npy", ".npz", ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".nii", ".gz",
    ".zip", ".tar", ".py", ".key",
})
"""Suffixes of files that live beside DICOM files (labels, masks, notes) and are not inputs."""

NOT_ANALYSED_COLUMNS = ("study", "series", "files", "images", "modality", "reason")
"""``not_analysed.csv``: one row per series (or slice) that was read but not scored."""
PREDICTION_COLUMNS = ("image", "study", "series", "study_image", "slice", "frame", "rows",
                      "columns", "score", "predicted")
_INT32_MAX = np.iinfo(np.int32).max
_INT32_MIN = np.iinfo(np.int32).min


# --------------------------------------------------------------------------- the export


@dataclasses.dataclass(frozen=True)
class ExportedModel:
    """What ``predict`` needs from a version dir ``BASE/NAME/VERSION``."""

    version_dir: Path
    name: str
    version: int
    architecture: str
    task: str
    classes: tuple[str, ...]
    image_size: tuple[int, int]
    window: object  # "auto" or (center, width): the training window, as ingest applied it
    threshold: float
    threshold_source: str
    inputs: tuple = ()  # declared inputs (export/inputs.py); several: a fusion export
    findings: tuple = ()  # per-finding decision rules of classifiers (export/inputs.py)
    multi_label: bool = False

    @property
    def per_finding(self) -> bool:
        """Multi-class and multi-label classifiers: a score and a decision per finding."""
        return self.task == "classification" and (self.multi_label or len(self.classes) > 2)

    @property
    def finding(self) -> str:
        """What a positive image shows: the positive class name (``"lesion"`` for segmenters)."""
        if self.task == "segmentation" or len(self.classes) < 2:
            return "lesion"
        return self.classes[1] if len(self.classes) == 2 else "finding"

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "architecture": self.architecture,
                "task": self.task, "classes": list(self.classes),
                "image_size": list(self.image_size)}


def load_export(export_dir, threshold: float | None = None) -> ExportedModel:
    """Read ``model_card.json`` and the ``model_raw.onnx`` metadata of an export version dir.

    Parameters
    ----------
    export_dir : path-like
        ``BASE/NAME/VERSION`` written by ``medzoo export``.
    threshold : float, optional
        Decision threshold in [0, 1]; default: the card's (``metrics.threshold``), else 0.5.

    Raises
    ------
    InputError
        Not a version dir (no ``model_card.json`` or ``model_raw.onnx``), an unreadable card,
        an unknown task or a threshold outside [0, 1].
    """
    from medzoo.datasets.ingest import parse_window

    version_dir = Path(export_dir)
    card_path, raw_path = version_dir / "model_card.json", version_dir / "model_raw.onnx"
    missing = [p.name for p in (card_path, raw_path) if not p.is_file()]
    if not version_dir.is_dir() or missing:
        found = "no such folder" if not version_dir.is_dir() else "no " + ", ".join(missing)
        raise InputError(f"{version_dir}: expected an export version dir BASE/NAME/VERSION holding "
                         f"model_card.json and model_raw.onnx. Received: {found}")
    try:
        card = fsio.read_json(card_path)
        model = card["model"]
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{card_path}: expected a medzoo model card (JSON with a `model` "
                         "section). Received: unreadable or incomplete file") from None
    card_input = card.get("input") or {}
    needed = {"task": model.get("task"), "window": card_input.get("window"),
              "image_size": card_input.get("image_size"), "classes": model.get("classes")}
    metadata = _onnx_metadata(raw_path) if None in needed.values() else {}  # an older card
    task = needed["task"] or metadata.get("task")
    if task not in ("classification", "segmentation"):
        raise InputError(f"{card_path}: expected task 'classification' or 'segmentation'. "
                         f"Received: task={task!r}")
    try:
        window = parse_window(needed["window"] or metadata.get("window") or "auto")
    except InputError as exc:
        raise InputError(f"{card_path}: input.window is not usable: {exc}") from None
    if threshold is not None:
        source = "override"
    else:
        threshold, source = _card_threshold(card)
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        threshold = float("nan")
    if not (0.0 <= threshold <= 1.0):
        raise InputError(f"Threshold must be a number in [0, 1]. Received: threshold={threshold}")
    size = needed["image_size"] or metadata.get("image_size") or [0, 0]
    extra = _declared(card, task, needed["classes"] or metadata.get("classes") or (),
                      raw_path, threshold if source == "override" else None)
    return ExportedModel(
        version_dir=version_dir, name=str(model.get("name") or metadata.get("name")),
        version=int(model.get("version") or metadata.get("version") or 0),
        architecture=str(model.get("architecture") or metadata.get("model")), task=task,
        classes=tuple(needed["classes"] or metadata.get("classes") or ()),
        image_size=(int(size[0]), int(size[1])), window=window, threshold=threshold,
        threshold_source=source, **extra)


def _declared(card: dict, task: str, classes, raw_path: Path, override: float | None) -> dict:
    """``inputs``, ``findings`` and ``multi_label`` of an export: the card's, else the ONNX
    metadata's, else what an export made before they were declared implies (one input; 0.5 per
    finding)."""
    from medzoo.export.inputs import declared_findings

    inputs = (card.get("input") or {}).get("inputs")
    rules = card.get("findings")
    multi_label = (card.get("training") or {}).get("multi_label")
    if inputs is None or (rules is None and task == "classification"):
        metadata = _onnx_metadata(raw_path)
        inputs = inputs if inputs is not None else metadata.get("inputs")
        rules = rules if rules is not None else metadata.get("findings")
        multi_label = multi_label if multi_label is not None else metadata.get("multi_label")
    if rules is None:
        rules = declared_findings({"task": task, "classes": list(classes),
                                   "multi_label": bool(multi_label)}) or []
    if override is not None:  # --threshold applies to every finding decided by a threshold
        rules = [{**r, "threshold": override, "threshold_source": "override"}
                 if r.get("rule") == "threshold" else r for r in rules]
    return {"inputs": tuple(inputs or ()), "findings": tuple(rules or ()),
            "multi_label": bool(multi_label)}


def _card_threshold(card: dict) -> tuple[float, str]:
    for where, value in (("model card threshold", card.get("threshold")),
                         ("model card (validation metrics)",
                          (card.get("metrics") or {}).get("threshold"))):
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value), where
    return DEFAULT_THRESHOLD, f"default {DEFAULT_THRESHOLD}"


def _onnx_metadata(path: Path) -> dict:
    """The ``medzoo.*`` metadata_props of an ONNX file (read through onnxruntime)."""
    import onnxruntime as ort

    from medzoo.evaluation.runtime import read_metadata

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception:
        raise InputError(f"{path}: expected an ONNX model. Received: unreadable file") from None
    return read_metadata(session.get_modelmeta().custom_metadata_map)


# --------------------------------------------------------------------------- runtimes


class _OnnxRaw:
    """``model_raw.onnx`` in onnxruntime (CPU)."""

    def __init__(self, version_dir: Path):
        import onnxruntime as ort

        path = version_dir / "model_raw.onnx"
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise InputError(f"{path}: onnxruntime cannot load this model "
                             f"({type(exc).__name__})") from None
        self.names = [o.name for o in self.session.get_outputs()]

    def __call__(self, feeds: dict) -> dict:
        return dict(zip(self.names, self.session.run(self.names, feeds)))


class _SavedModelRaw:
    """The SavedModel's ``serving_default`` signature (TensorFlow is imported only here)."""

    def __init__(self, version_dir: Path):
        import tensorflow as tf

        if not (version_dir / "saved_model.pb").is_file():
            raise InputError(f"{version_dir}: expected a SavedModel (saved_model.pb) for "
                             "--runtime savedmodel. Received: none")
        self.tf = tf
        self.signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]

    def __call__(self, feeds: dict) -> dict:
        out = self.signature(**{k: self.tf.constant(v) for k, v in feeds.items()})
        return {k: v.numpy() for k, v in out.items()}


def _runner(runtime: str, version_dir: Path):
    if runtime == "onnx":
        return _OnnxRaw(version_dir)
    return _SavedModelRaw(version_dir)


# --------------------------------------------------------------------------- inputs


@dataclasses.dataclass
class _Source:
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


def _scan(path: Path, rel: str, order: int) -> _Source:
    with dicom.pydicom_quiet():
        ds = dicom.read_dataset(path)
        dicom.check_header(ds)
        instance = ds.get("InstanceNumber")
        try:
            instance = int(instance)
        except (TypeError, ValueError):
            instance = None
        return _Source(
            path=path, rel=rel, study_uid=str(ds.get("StudyInstanceUID", "") or ""),
            series_uid=str(ds.get("SeriesInstanceUID", "") or ""),
            sop_uid=str(ds.get("SOPInstanceUID", "") or ""), position=dicom.slice_position(ds),
            instance=instance, rows=int(ds.Rows), columns=int(ds.Columns),
            frames=int(ds.get("NumberOfFrames", 1) or 1), order=order,
            modality=str(ds.get("Modality", "") or "").strip().upper(),
            frame_of_reference=str(ds.get("FrameOfReferenceUID", "") or ""),
            facts=header_facts(ds))


def _group(sources: list[_Source]) -> list[list[list[_Source]]]:
    """Studies → series → objects; studies and series in order of first appearance, objects
    sorted along the slice normal (then instance number, then file order), as ingest does."""
    studies: dict[str, dict[str, list[_Source]]] = {}
    for src in sources:
        study = src.study_uid or f"file:{src.path}"
        series = src.series_uid or f"file:{src.path}"
        studies.setdefault(study, {}).setdefault(series, []).append(src)
    return [[sorted(objs, key=lambda s: (s.position is None, s.position or 0.0,
                                         s.instance if s.instance is not None else 0, s.order))
             for objs in series.values()] for series in studies.values()]


def raw_feeds(path: Path, window, colour_as_grey: bool = False) -> dict:
    """What ``serving_default`` takes for every frame of one DICOM file.

    Returns
    -------
    dict
        ``pixels`` int32 (frames, rows, cols) — the stored values — and float32 (frames,)
        ``rescale_slope``, ``rescale_intercept``, ``window_center``, ``window_width``, ``invert``.

    Raises
    ------
    medzoo.datasets.dicom.DicomRejected
        Unreadable or undecodable files (as ingest), and what the raw signature cannot take:
        colour images (unless ``colour_as_grey``: their luma, in 1/256 steps, for series
        scored with ``--allow-out-of-domain``), float pixel data, a non-linear Modality LUT,
        values beyond int32.
    """
    with dicom.pydicom_quiet():
        ds = dicom.read_dataset(path)
        dicom.check_header(ds)
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1 and colour_as_grey:
            return _colour_as_grey(ds, path)
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise dicom.DicomRejected("colour image (the raw serving signature takes monochrome "
                                      "stored pixels)")
        if "PixelData" not in ds:
            raise dicom.DicomRejected("float pixel data (the raw serving signature takes integer "
                                      "stored pixels)")
        arr = dicom.decode_pixels(ds)
        source = dicom.rescale_source(ds)
        if "ModalityLUTSequence" in source:
            raise dicom.DicomRejected("non-linear Modality LUT (the raw serving signature takes "
                                      "rescale slope and intercept)")
        if "RescaleSlope" in source and "RescaleIntercept" in source:
            try:
                slope, intercept = float(source.RescaleSlope), float(source.RescaleIntercept)
            except (TypeError, ValueError):
                raise dicom.DicomRejected("invalid rescale slope or intercept")
        else:  # pydicom's apply_modality_lut (and so ingest) rescales only when both are present
            slope, intercept = 1.0, 0.0
        try:
            values = dicom.modality_values(ds, arr)
        except Exception:
            raise dicom.DicomRejected("cannot decode")
        center, width = dicom.choose_window(ds, values, window)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if not np.issubdtype(arr.dtype, np.integer):
        raise dicom.DicomRejected("float pixel data (the raw serving signature takes integer "
                                  "stored pixels)")
    pixels = arr.reshape(values.shape)  # (frames, rows, cols)
    if arr.size and (int(arr.max()) > _INT32_MAX or int(arr.min()) < _INT32_MIN):
        raise dicom.DicomRejected("stored values beyond the int32 range")
    n = pixels.shape[0]
    return {"pixels": pixels.astype(np.int32, copy=False),
            "rescale_slope": np.full(n, slope, np.float32),
            "rescale_intercept": np.full(n, intercept, np.float32),
            "window_center": np.full(n, center, np.float32),
            "window_width": np.full(n, width, np.float32),
            "invert": np.full(n, float(photometric == "MONOCHROME1"), np.float32)}


def _colour_as_grey(ds, path: Path) -> dict:
    """A colour object's luma as the raw signature's inputs: stored values of 1/256 of a grey
    level (slope 1/256) and the full-range window ingest gives colour images."""
    rgb = dicom.read_modality_values(path)  # (frames, rows, cols, 3): no LUT for colour
    luma = np.rint(dicom.to_grey(rgb) * 256.0).astype(np.int32)
    center, width = dicom.choose_window(ds, rgb, "auto")
    n = luma.shape[0]
    return {"pixels": luma, "rescale_slope": np.full(n, 1.0 / 256.0, np.float32),
            "rescale_intercept": np.zeros(n, np.float32),
            "window_center": np.full(n, center, np.float32),
            "window_width": np.full(n, width, np.float32), "invert": np.zeros(n, np.float32)}


# --------------------------------------------------------------------------- predict


def predict(export_dir, dicom_dir, out_dir, *, runtime: str = "onnx", batch_size: int = 32,
            threshold: float | None = None, key_file=None, progress: bool | None = None,
            explain: bool = False, allow_out_of_domain: bool = False) -> dict:
    """Run an exported model on new, unlabelled DICOM studies; write findings into ``out_dir``.

    Parameters
    ----------
    export_dir : path-like
        ``BASE/NAME/VERSION`` (``model_raw.onnx`` + ``model_card.json``; ``saved_model.pb`` for
        ``runtime="savedmodel"``).
    dicom_dir : path-like
        Folder of DICOM files, walked recursively; studies and series are grouped by
        StudyInstanceUID / SeriesInstanceUID, never by folder.
    out_dir : path-like
        Folder to create (or an empty one); see the module docstring for what it holds.
    runtime : {"onnx", "savedmodel"}
        onnxruntime on ``model_raw.onnx``, or TensorFlow on the SavedModel's ``serving_default``.
    batch_size : int
        Images per model call; a batch only holds images of one size.
    threshold : float, optional
        Decision threshold in [0, 1] (default: the model card's).
    key_file : path-like, optional
        An existing pseudonym key (``medzoo data ingest --key-file``). When given,
        ``predictions.csv`` and ``studies.json`` also carry the keyed study/series pseudonyms
        that ingest writes into ``index.csv``, so the key holder can link predictions to a
        dataset; without it, outputs hold medzoo's counters only.
    progress : bool, optional
        Progress bar on stderr; None → only on a terminal.
    explain : bool
        Classifiers: an occlusion-sensitivity map of each study's highest-scoring image, made with
        the same runtime on the raw stored pixels (model-agnostic: no gradients needed), written
        as ``explain/study-NNN.png`` and shown in that study's findings report.
    allow_out_of_domain : bool
        Score series outside the training domain (:mod:`medzoo.deploy.domain`) anyway and mark
        them (``out_of_domain`` column, studies.json, findings report). By default they are
        not scored and are listed in ``not_analysed.csv`` with the reason.

    Returns
    -------
    dict
        ``inputs, predicted, rejected, ignored, images, studies, series, positive_studies,
        rejected_by_reason, threshold, threshold_source, model, version, runtime, seg_files,
        out``; ``inputs == predicted + rejected``.

    Raises
    ------
    InputError
        Bad options, not an export version dir, no such DICOM folder, an out dir that holds
        files, or no readable input at all (every file rejected or none found).
    """
    if runtime not in RUNTIMES:
        raise InputError(f"--runtime must be one of {', '.join(RUNTIMES)}. Received: {runtime!r}")
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise InputError(f"Argument `batch_size` must be a positive integer. "
                         f"Received: batch_size={batch_size}")
    from medzoo.deploy.predict_volume import is_volume_export, predict_volumes

    if is_volume_export(export_dir):  # 3D segmenter: series → SEG (deploy/predict_volume.py)
        if runtime != "onnx" or key_file is not None or explain or threshold is not None:
            raise InputError("--runtime savedmodel, --key-file, --explain and --threshold do not "
                             "apply to volume models (sliding window through onnxruntime)")
        return predict_volumes(export_dir, dicom_dir, out_dir,
                               batch_size=min(int(batch_size), 4), progress=progress)
    model = load_export(export_dir, threshold)
    dicom_dir, out = Path(dicom_dir), Path(out_dir)
    if not dicom_dir.is_dir():
        raise InputError(f"DICOM dir {dicom_dir}: expected a folder. Received: no such folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"Output {out}: expected a new or empty folder. Received: it holds "
                         "files; refusing to overwrite")
    key = None
    if key_file is not None:
        if not Path(key_file).expanduser().is_file():
            raise InputError(f"Pseudonym key file {key_file}: expected an existing key (the one "
                             "ingest used). Received: no such file")
        key = deid.load_or_create_key(key_file)
    files, ignored = discover(dicom_dir, skip=out)
    if not files:
        raise InputError(f"DICOM dir {dicom_dir}: expected DICOM files. Received: none "
                         f"({ignored} other files ignored)")
    run = _runner(runtime, model.version_dir)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        summary = _predict(model, run, files, dicom_dir, staging, int(batch_size), key, progress,
                           explain, allow_out_of_domain)
        if out.exists():
            out.rmdir()
        os.rename(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    summary.update(ignored=ignored, runtime=runtime, out=str(out))
    return summary


def _predict(model: ExportedModel, run, files, dicom_dir: Path, out: Path, batch_size: int,
             key: bytes | None, progress, explain: bool = False,
             allow_out_of_domain: bool = False) -> dict:
    from tqdm import tqdm

    rejected: list[tuple[str, str]] = []

    def reject(rel: str, reason: str):
        rejected.append((rel, reason))
        print(f"medzoo predict: rejected {rel}: {reason}", file=sys.stderr)

    bar = tqdm(total=2 * len(files), unit="file", file=sys.stderr, desc="predict",
               disable=None if progress is None else not progress)
    sources, seen_sop = [], set()
    for order, path in enumerate(files):
        rel = os.path.relpath(path, dicom_dir)
        try:
            src = _scan(path, rel, order)
        except dicom.DicomRejected as exc:
            reject(rel, exc.reason)
            bar.update(2)
            continue
        except Exception:
            reject(rel, "cannot read header")
            bar.update(2)
            continue
        if src.sop_uid and src.sop_uid in seen_sop:
            reject(rel, "duplicate SOPInstanceUID")
            bar.update(2)
            continue
        seen_sop.add(src.sop_uid)
        sources.append(src)
        bar.update(1)

    studies = _group(sources)
    state = _Collector(model, out, reject, key, explain_with=run if explain else None)
    state.screen = screen = screening.Screen(model.version_dir, allow_out_of_domain)
    if len(model.inputs) > 1:  # a fusion export: each study's series paired by modality
        from medzoo.deploy.fused import score_fused

        score_fused(model, run, studies, state, batch_size, bar)
        bar.close()
        if not state.has_results and not state.not_analysed:
            raise InputError(f"No readable input: all {len(files)} input files were rejected "
                             "(see the lines above)")
        return state.finish(rejected, n_inputs=len(files))
    for study_no, series_list in enumerate(studies, start=1):
        for objects in series_list:
            state.open_series(study_no, objects, out_of_domain=screen.series_reasons(objects))
    pending: list[tuple] = []  # (series key, source, frame index, feeds of one frame)

    def flush():
        if pending:
            feeds = {k: np.stack([item[3][k] for item in pending]) for k in pending[0][3]}
            state.take(pending, screen.add_ood(run(feeds), feeds))
            pending.clear()

    for src, series_key in state.objects_in_order():
        if state.series[series_key].get("skip"):  # out of domain: listed, not scored
            state.object_done(series_key)
            bar.update(1)
            continue
        try:
            feeds = raw_feeds(src.path, model.window, colour_as_grey=allow_out_of_domain)
        except dicom.DicomRejected as exc:
            state.drop(series_key, src, exc.reason)
            bar.update(1)
            continue
        except MemoryError:
            state.drop(series_key, src, "image too large to decode")
            bar.update(1)
            continue
        except Exception:
            state.drop(series_key, src, "cannot decode")
            bar.update(1)
            continue
        if state.screen_image(series_key, src, feeds):  # its intensities are far off: not scored
            state.object_done(series_key)
            bar.update(1)
            continue
        shape = feeds["pixels"].shape[1:]
        for f in range(feeds["pixels"].shape[0]):
            if pending and pending[0][3]["pixels"].shape != shape:
                flush()
            pending.append((series_key, src, f, {k: v[f] for k, v in feeds.items()}))
            state.queued(series_key)
            if len(pending) >= batch_size:
                flush()
        state.object_done(series_key)
        bar.update(1)
    flush()
    bar.close()
    if not state.has_results and not state.not_analysed:
        raise InputError(f"No readable input: all {len(files)} input files were rejected "
                         "(see the lines above)")
    return state.finish(rejected, n_inputs=len(files))


class _Collector:
    """Scores and masks per series as batches come back; a series is closed (its SEG written,
    its full-size masks freed) as soon as its last object is scored or rejected."""

    def __init__(self, model: ExportedModel, out: Path, reject, key: bytes | None = None,
                 explain_with=None):
        self.model, self.out, self.reject, self.key = model, out, reject, key
        # occlusion maps need a classifier's score; a segmenter's SEG already shows where
        self.explain_with = explain_with if model.task == "classification" else None
        if self.explain_with is not None and len(model.inputs) > 1:
            print("medzoo predict: no explanation maps for a several-input (fusion) model; "
                  "scores and findings are complete", file=sys.stderr)
            self.explain_with = None
        self.series: dict[int, dict] = {}
        self.screen = screening.Screen(None)  # domain check and OOD score (set by _predict)
        self._opened_in: dict[int, int] = {}  # series per study (numbers not-analysed series)
        self.closed: list[dict] = []  # series with at least one scored image, in order
        self.seg_files: list[str] = []
        self._order: list[tuple[_Source, int]] = []
        self._next_key = 0
        self.not_analysed: list[dict] = []  # series (or slices) read but not scored
        self.write_seg = model.task == "segmentation" and _has_highdicom()
        if model.task == "segmentation" and not self.write_seg:
            print("medzoo predict: no DICOM SEG written: it needs highdicom "
                  "(pip install 'medzoo[seg]'); scores and findings are complete", file=sys.stderr)

    @property
    def has_results(self) -> bool:
        return any(entry["results"] for entry in self.closed)

    # -- bookkeeping

    def open_series(self, study_no: int, objects: list[_Source], out_of_domain=()):
        key = self._next_key
        self._next_key += 1
        self.series[key] = {"study": study_no, "objects_left": len(objects), "in_flight": 0,
                            "slice_of": {id(o): i for i, o in enumerate(objects, start=1)},
                            "results": [], "out_of_domain": [], "objects": objects,
                            "index": self._opened_in.get(study_no, 0)}  # within the study
        self._opened_in[study_no] = self._opened_in.get(study_no, 0) + 1
        self._order.extend((o, key) for o in objects)
        self._not_in_domain(key, out_of_domain)
        return key

    def screen_image(self, key: int, src: _Source, feeds: dict) -> bool:
        """Check the first decoded image of a series against the training intensities; True
        when the series is now not to be scored (outside, without --allow-out-of-domain)."""
        entry = self.series[key]
        if entry.get("screened"):
            return False
        entry["screened"] = True
        return self._not_in_domain(key, self.screen.image_reasons(feeds, src.facts))

    def _not_in_domain(self, key: int, reasons) -> bool:
        """Record why series ``key`` lies outside the training domain; unless allowed, list it
        as not analysed (study, series within the study, files, images, modality, reason) and
        mark it to be skipped. True when it is skipped."""
        entry = self.series[key]
        entry["out_of_domain"] += list(reasons)
        if not reasons or self.screen.allow:
            return False
        entry["skip"] = True
        objects = entry["objects"]
        more = (f" and {len(objects) - 1} more file{'s' if len(objects) > 2 else ''}"
                if len(objects) > 1 else "")  # the user's own relative path, as for rejections
        print(f"medzoo predict: not analysed: {objects[0].rel}{more}: "
              f"{'; '.join(entry['out_of_domain'])}", file=sys.stderr)
        modalities = sorted({(o.facts or {}).get("modality", "") for o in objects} - {""})
        self.not_analysed.append({
            "study": entry["study"], "series": entry["index"] + 1, "files": len(objects),
            "images": sum(o.frames for o in objects), "modality": ", ".join(modalities) or None,
            "reason": "; ".join(entry["out_of_domain"])})
        return True

    def objects_in_order(self) -> list[tuple[_Source, int]]:
        return list(self._order)

    def queued(self, key: int):
        self.series[key]["in_flight"] += 1

    def drop(self, key: int, src: _Source, reason: str):
        self.reject(src.rel, reason)
        self.object_done(key)

    def object_done(self, key: int):
        self.series[key]["objects_left"] -= 1
        self._maybe_close(key)

    def take(self, pending, outputs: dict):
        scores, masks = self._scores(outputs)
        for i, (key, src, frame, _) in enumerate(pending):
            entry = self.series[key]
            result = {"source": src, "frame": frame + 1, "score": float(scores[i]),
                      "slice": entry["slice_of"][id(src)]}
            if "ood_score" in outputs:
                result["ood_score"] = float(outputs["ood_score"][i])
            if masks is not None:
                result["mask"] = self._full_size_mask(masks[i], src.rows, src.columns)
            if self.model.per_finding:
                result["probabilities"] = np.asarray(outputs["probabilities"][i], np.float64)
            entry["results"].append(result)
            entry["in_flight"] -= 1
        for key in sorted({item[0] for item in pending}):
            self._maybe_close(key)

    def _maybe_close(self, key: int):
        entry = self.series.get(key)
        if entry is None or entry["objects_left"] or entry["in_flight"]:
            return
        del self.series[key]
        if not entry["results"]:
            return  # every object of the series was rejected, or it lies outside the domain
        entry["number"] = len(self.closed) + 1
        entry["results"].sort(key=lambda r: (r["slice"], r["frame"]))
        if self.model.task == "segmentation":
            if self.write_seg:
                entry["seg"] = self._write_segs(entry["number"], entry["results"])
            for r in entry["results"]:
                r["lesion_pixels"] = int(np.count_nonzero(r.pop("mask")))
        self.closed.append(entry)

    # -- explanations

    def _explain(self, study_no: int, image_no: int, result: dict) -> str | None:
        """Occlusion map of one image on its raw stored pixels → ``explain/study-NNN.png``."""
        from medzoo.evaluation.explain import occlusion, overlay_png

        try:
            feeds = raw_feeds(result["source"].path, self.model.window)
        except Exception:  # scored moments ago; if it no longer reads, say so and go on
            print(f"medzoo predict: no explanation for study {study_no:03d}: its image could "
                  "not be read again", file=sys.stderr)
            return None
        frame = {k: v[result["frame"] - 1:result["frame"]] for k, v in feeds.items()}

        def scores(pixels: np.ndarray) -> np.ndarray:
            n = len(pixels)
            run_feeds = {k: (pixels.astype(np.int32) if k == "pixels" else np.repeat(v, n))
                         for k, v in frame.items()}
            score = self._scores(self.explain_with(run_feeds))[0]
            return np.stack([1.0 - score, score], axis=1)

        pixels = frame["pixels"]
        heat = occlusion(scores, pixels, 1, patch=max(4, min(pixels.shape[1:]) // 8),
                         fill=float(np.median(pixels)))[0]
        name = f"explain/study-{study_no:03d}.png"
        overlay_png(_display(frame), {"occlusion sensitivity": heat}, self.out / name,
                    title=f"study {study_no:03d}, image {image_no}: "
                          f"p({self.model.finding}) = {result['score']:.2f}")
        return name

    # -- model outputs

    def _scores(self, outputs: dict):
        if self.model.task == "segmentation":
            mask = np.asarray(outputs["mask"], np.float32)
            score = outputs.get("score")
            score = (np.asarray(score, np.float32).reshape(-1) if score is not None
                     else mask.reshape(len(mask), -1).max(1))
            return score, mask[..., 0]
        probabilities = np.asarray(outputs["probabilities"], np.float32)
        if self.model.multi_label and self.model.findings:  # the most probable finding
            return probabilities[:, [int(r["index"]) for r in self.model.findings]].max(1), None
        if probabilities.shape[1] == 2:
            return probabilities[:, 1], None
        return 1.0 - probabilities[:, 0], None  # "anything but the first (negative) class"

    def _full_size_mask(self, mask: np.ndarray, rows: int, columns: int) -> np.ndarray:
        full = dicom.resize_bilinear(mask, (rows, columns))
        return full >= self.model.threshold

    def predicted_class(self, score: float) -> str:
        classes, threshold = self.model.classes, self.model.threshold
        if self.model.task == "segmentation" or len(classes) < 2:
            return "lesion" if score >= threshold else "no lesion"
        return classes[1] if score >= threshold else classes[0]

    def _write_segs(self, key: int, results: list[dict]) -> list[str]:
        from medzoo.deploy import dicom_seg

        units: dict[tuple, list[dict]] = collections.OrderedDict()
        for r in results:  # single-frame images of one size together; a multi-frame file alone
            src = r["source"]
            unit = ("file", src.order) if src.frames > 1 else ("size", src.rows, src.columns)
            units.setdefault(unit, []).append(r)
        written = []
        for n, members in enumerate(units.values(), start=1):
            name = f"series-{key:03d}.dcm" if len(units) == 1 else f"series-{key:03d}-{n}.dcm"
            paths = list(dict.fromkeys(r["source"].path for r in members))
            masks = np.stack([r["mask"] for r in members])
            try:
                seg = dicom_seg.write_segmentation(self.out / "seg" / name, paths, masks,
                                                   model_name=self.model.name,
                                                   model_version=self.model.version,
                                                   series_number=key)
            except dicom_seg.SegmentationNotWritable as exc:  # names the missing attribute
                print(f"medzoo predict: no DICOM SEG for series {key}: {exc}", file=sys.stderr)
                continue
            except Exception as exc:  # the scores stand; say why this one SEG is missing
                print(f"medzoo predict: no DICOM SEG for series {key}: {type(exc).__name__}",
                      file=sys.stderr)
                continue
            if seg.missing:
                print(f"medzoo predict: series {key}: the source images lack "
                      f"{', '.join(seg.missing)}; one DICOM SEG per image, without plane "
                      "positions", file=sys.stderr)
            for file in seg.paths:
                written.append(f"seg/{file.name}")
                self.seg_files.append(f"seg/{file.name}")
        return written

    def _not_analysed_study(self, study_no: int, skipped: list[dict]) -> dict:
        """The studies.json entry and findings report of a study none of whose images could be
        analysed (e.g. a fusion export given a study without one of its modalities)."""
        model = self.model
        label = findings.model_label(model.name, model.version)
        study = {"study": study_no, "images": 0, "analysed": False, "positive": False,
                 "model": model.name, "version": model.version,
                 "finding": f"Not analysed: {skipped[0]['reason']} — model {label}",
                 "report": f"findings/study-{study_no:03d}.md", "series": [],
                 "not_analysed": skipped}
        fsio.write_text(self.out / study["report"], findings.render_not_analysed_report(
            study_no, skipped, model=model.describe(), medzoo_version=__version__))
        return study

    # -- one score per finding (multi-class, multi-label)

    def _image_findings(self, results: list[dict]) -> list[dict] | None:
        if not self.model.per_finding:
            return None
        return findings.image_findings(np.stack([r["probabilities"] for r in results]),
                                       list(self.model.findings), self.model.classes,
                                       multi_label=self.model.multi_label)

    def _group_findings(self, results: list[dict], rows: list[dict]) -> dict:
        """``findings`` (each present or absent, with its highest p and image) and ``predicted``
        of a series or study."""
        per_finding = findings.summarise_findings(
            np.stack([r["probabilities"] for r in results]), list(self.model.findings))
        for f in per_finding:
            f["max_image"] = rows[f.pop("max_index")]["study_image"]
        present = [f["finding"] for f in per_finding if f["present"]]
        return {"findings": per_finding,
                "predicted": "|".join(present) or self.model.classes[0]}

    # -- the whole run

    def _pseudonyms(self, src: _Source) -> dict:
        if self.key is None:
            return {}
        return {"study_pseudonym": deid.pseudonym(self.key, "study",
                                                  src.study_uid or f"file:{src.path}"),
                "series_pseudonym": deid.pseudonym(self.key, "series",
                                                   src.series_uid or f"file:{src.path}")}

    def finish(self, rejected, *, n_inputs: int) -> dict:
        """Number studies, write predictions.csv, studies.json, findings/ and rejected.csv."""
        model, threshold = self.model, self.model.threshold
        label = findings.model_label(model.name, model.version)
        by_study: dict[int, list[dict]] = {}
        for entry in self.closed:
            by_study.setdefault(entry["study"], []).append(entry)
        rows, studies = [], []
        # studies numbered in input order, those with nothing analysed among them
        order = sorted(set(by_study) | {item["study"] for item in self.not_analysed})
        number_of = {original: n for n, original in enumerate(order, start=1)}
        not_analysed = [{**item, "study": number_of[item["study"]]} for item in self.not_analysed]
        not_analysed.sort(key=lambda item: (item["study"], item["series"]))  # in input order
        for study_no, original in enumerate(order, start=1):
            entries = by_study.get(original)
            skipped = [item for item in not_analysed if item["study"] == study_no]
            if not entries:  # no series of the study could be analysed
                studies.append(self._not_analysed_study(study_no, skipped))
                continue
            study_rows, series_entries, study_results = [], [], []
            for entry in entries:
                series_rows = []
                study_results.extend(entry["results"])
                per_image = self._image_findings(entry["results"])
                for i, r in enumerate(entry["results"]):
                    row = {"image": len(rows) + len(study_rows) + 1, "study": study_no,
                           "series": entry["number"], "study_image": len(study_rows) + 1,
                           "slice": r["slice"], "frame": r["frame"], "rows": r["source"].rows,
                           "columns": r["source"].columns, "score": f"{r['score']:.6f}",
                           "predicted": self.predicted_class(r["score"]),
                           **self._pseudonyms(r["source"]),
                           **self.screen.row(r, entry["out_of_domain"])}
                    if model.task == "segmentation":
                        row["lesion_pixels"] = r["lesion_pixels"]
                    if per_image:
                        row.update({k: v for k, v in per_image[i].items() if k != "positive"})
                    study_rows.append(row)
                    series_rows.append(row)
                s = findings.summarise([r["score"] for r in entry["results"]], threshold,
                                       _positive(per_image))
                item = {"series": entry["number"], **_without_index(s),
                        "max_image": series_rows[s["max_index"]]["study_image"],
                        "predicted": self.predicted_class(s["max_score"]),
                        "model": model.name, "version": model.version,
                        **{k: v for k, v in series_rows[0].items() if k == "series_pseudonym"},
                        **screening.series_flags(series_rows, entry["out_of_domain"])}
                if per_image:
                    item.update(self._group_findings(entry["results"], series_rows))
                if model.task == "segmentation":
                    item["lesion_pixels"] = sum(r["lesion_pixels"] for r in series_rows)
                    segs = entry.get("seg") or []
                    item["seg"] = segs[0] if len(segs) == 1 else (segs or None)
                series_entries.append(item)
            study_positive = ([r["findings"] != "" for r in study_rows] if model.per_finding
                              else None)
            s = findings.summarise([r["score"] for e in entries for r in e["results"]], threshold,
                                   study_positive)
            study = {"study": study_no, **_without_index(s),
                     "max_image": study_rows[s["max_index"]]["study_image"],
                     "predicted": self.predicted_class(s["max_score"]),
                     "model": model.name, "version": model.version,
                     **{k: v for k, v in study_rows[0].items() if k == "study_pseudonym"}}
            study["finding"] = findings.finding_sentence(
                s, finding=model.finding, model=label, max_image=study["max_image"])
            if model.per_finding:
                study.update(self._group_findings(study_results, study_rows))
                study["finding"] = findings.findings_sentence(study["findings"], model=label)
            study.update(report=f"findings/study-{study_no:03d}.md", series=series_entries)
            if skipped:
                study["not_analysed"] = skipped
            screening.mark_study(study)
            if self.explain_with is not None:
                study["explanation"] = self._explain(study_no, study["max_image"],
                                                     study_results[s["max_index"]])
            fsio.write_text(self.out / study["report"], findings.render_study_report(
                study, study_rows, model=model.describe(), threshold=threshold,
                finding=model.finding, medzoo_version=__version__))
            rows.extend(study_rows)
            studies.append(study)

        columns = (PREDICTION_COLUMNS
                   + (("lesion_pixels",) if model.task == "segmentation" else ())
                   + (tuple(c for c in rows[0] if c.startswith("score_")) + ("findings",)
                      if model.per_finding and rows else ())
                   + (("study_pseudonym", "series_pseudonym") if self.key is not None else ())
                   + screening.PREDICTION_COLUMNS)
        fsio.write_csv(self.out / "predictions.csv", rows, columns)
        fsio.write_csv(self.out / "not_analysed.csv", not_analysed, NOT_ANALYSED_COLUMNS)
        fsio.write_csv(self.out / "rejected.csv",
                       [{"path": p, "reason": r} for p, r in sorted(rejected)], ("path", "reason"))
        by_reason = dict(sorted(collections.Counter(r for _, r in rejected).items()))
        skipped_files = sum(item["files"] for item in not_analysed)
        counts = {"inputs": n_inputs, "predicted": n_inputs - len(rejected) - skipped_files,
                  "rejected": len(rejected), "not_analysed": skipped_files,
                  "not_analysed_series": len(not_analysed),
                  "images": len(rows), "studies": len(studies),
                  "series": sum(len(s["series"]) for s in studies),
                  "positive_studies": sum(1 for s in studies if s["positive"]),
                  "rejected_by_reason": by_reason}
        document = {
            "schema_version": 1, "medzoo_version": __version__, "model": model.describe(),
            "threshold": threshold, "threshold_source": model.threshold_source,
            "disclaimer": findings.DISCLAIMER, "counts": counts, "studies": studies,
            **self.screen.document(),
        }
        if model.per_finding:
            document["findings"] = list(model.findings)
        if len(model.inputs) > 1:  # one image = one pair, counted on the lead (first) input
            document["inputs"] = list(model.inputs)
        counts["not_analysed_studies"] = sum(1 for s in studies if s.get("analysed") is False)
        fsio.write_json(self.out / "studies.json", document)
        if model.per_finding:  # e.g. "ground_glass p >= 0.42, nodule p >= 0.5"
            counts["decision"] = ", ".join(
                f"{r['name']} p >= {r['threshold']:g}" if r["rule"] == "threshold"
                else f"{r['name']} most probable" for r in model.findings)
        return {**counts, "threshold": threshold, "threshold_source": model.threshold_source,
                "model": model.name, "version": model.version, "seg_files": list(self.seg_files)}


    def _not_analysed_study(self, study_no: int, skipped: list[dict]) -> dict:
        """The studies.json entry and findings report of a study none of whose images could be
        analysed (e.g. every series outside the model's training domain)."""
        model = self.model
        label = findings.model_label(model.name, model.version)
        study = {"study": study_no, "images": 0, "analysed": False, "positive": False,
                 "model": model.name, "version": model.version,
                 "finding": f"Not analysed: {skipped[0]['reason']} — model {label}",
                 "report": f"findings/study-{study_no:03d}.md", "series": [],
                 "not_analysed": skipped}
        fsio.write_text(self.out / study["report"], findings.render_not_analysed_report(
            study_no, skipped, model=model.describe(), medzoo_version=__version__))
        return study


def _display(frame: dict) -> np.ndarray:
    """One frame's stored pixels → the windowed grey image in [0, 1] that the model saw."""
    values = (frame["pixels"][0].astype(np.float64) * float(frame["rescale_slope"][0])
              + float(frame["rescale_intercept"][0]))
    grey = dicom.window_linear(values, float(frame["window_center"][0]),
                               max(float(frame["window_width"][0]), 1.0))
    return 1.0 - grey if float(frame["invert"][0]) else grey


def _has_highdicom() -> bool:
    import importlib.util

    return importlib.util.find_spec("highdicom") is not None


def _positive(per_image: list[dict] | None):
    return None if per_image is None else [f["positive"] for f in per_image]


def _without_index(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "max_index"}
