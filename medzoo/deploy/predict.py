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

The run reads the folder (:mod:`medzoo.deploy.sources`), loads the export
(:mod:`medzoo.deploy.exported`) into a runtime (:mod:`medzoo.deploy.runtimes`), turns each file
into the raw signature's feeds (:mod:`medzoo.deploy.feeds`), scores them in batches
(:mod:`medzoo.deploy.scoring`, :mod:`medzoo.deploy.collect`; fusion exports:
:mod:`medzoo.deploy.fused`) and writes the out dir (:mod:`medzoo.deploy.outputs`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from medzoo.datasets import deid
from medzoo.deploy import screening
from medzoo.deploy.collect import Batches, Collector
from medzoo.deploy.exported import ExportedModel, load_export
from medzoo.deploy.feeds import read_raw_feeds
from medzoo.deploy.outputs import check_new_out_dir, staged_out_dir, write_outputs
from medzoo.deploy.runtimes import RUNTIMES, runner
from medzoo.deploy.sources import group, input_files, scan_files
from medzoo.errors import InputError

__all__ = ["predict"]


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
                               batch_size=min(int(batch_size), 4), progress=progress,
                               allow_out_of_domain=allow_out_of_domain)
    model = load_export(export_dir, threshold)
    dicom_dir, out = Path(dicom_dir), Path(out_dir)
    if not dicom_dir.is_dir():
        raise InputError(f"DICOM dir {dicom_dir}: expected a folder. Received: no such folder")
    check_new_out_dir(out)
    key = None
    if key_file is not None:
        if not Path(key_file).expanduser().is_file():
            raise InputError(f"Pseudonym key file {key_file}: expected an existing key (the one "
                             "ingest used). Received: no such file")
        key = deid.load_or_create_key(key_file)
    files, ignored = input_files(dicom_dir, skip=out)
    run = runner(runtime, model.version_dir)
    with staged_out_dir(out) as staging:
        summary = _predict(model, run, files, dicom_dir, staging, int(batch_size), key, progress,
                           explain, allow_out_of_domain)
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
    sources = []
    for rel, src, reason in scan_files(files, dicom_dir):
        if src is None:
            reject(rel, reason)
            bar.update(2)
            continue
        sources.append(src)
        bar.update(1)

    studies = group(sources)
    state = Collector(model, out, reject, key, explain_with=run if explain else None)
    state.screen = screening.Screen(model.version_dir, allow_out_of_domain)
    if len(model.inputs) > 1:  # a fusion export: each study's series paired by modality
        from medzoo.deploy.fused import score_fused

        score_fused(model, run, studies, state, batch_size, bar)
    else:
        _score(model, run, studies, state, batch_size, bar, allow_out_of_domain)
    bar.close()
    if not state.has_results and not state.not_analysed:
        raise InputError(f"No readable input: all {len(files)} input files were rejected "
                         "(see the lines above)")
    return write_outputs(state, rejected, n_inputs=len(files))


def _score(model: ExportedModel, run, studies, state: Collector, batch_size: int, bar,
           allow_out_of_domain: bool) -> None:
    """Read, screen, batch and score every object of ``studies`` (one input per image)."""
    screen = state.screen
    for study_no, series_list in enumerate(studies, start=1):
        for objects in series_list:
            state.open_series(study_no, objects, out_of_domain=screen.series_reasons(objects))
    batches = Batches(lambda feeds: screen.add_ood(run(feeds), feeds), state, batch_size)
    for src, series_key in state.objects_in_order():
        if state.series[series_key].get("skip"):  # out of domain: listed, not scored
            state.object_done(series_key)
            bar.update(1)
            continue
        feeds = read_raw_feeds(src.path, model.window, colour_as_grey=allow_out_of_domain)
        if isinstance(feeds, str):  # why it could not be read
            state.drop(series_key, src, feeds)
            bar.update(1)
            continue
        if state.screen_image(series_key, src, feeds):  # its intensities are far off: not scored
            state.object_done(series_key)
            bar.update(1)
            continue
        for f in range(feeds["pixels"].shape[0]):
            batches.add(series_key, src, f, {k: v[f] for k, v in feeds.items()})
        state.object_done(series_key)
        bar.update(1)
    batches.flush()
