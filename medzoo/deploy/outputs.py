"""What ``predict`` writes into its out dir once every series is scored (see
:mod:`medzoo.deploy.predict` for the folder): ``predictions.csv``, ``studies.json``,
``not_analysed.csv``, ``rejected.csv`` and ``findings/study-NNN.md``; and, as they are made,
``seg/series-NNN.dcm`` of segmenters and ``explain/study-NNN.png`` occlusion maps.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from medzoo import __version__, fsio
from medzoo.datasets import deid
from medzoo.deploy import findings, screening
from medzoo.deploy.feeds import display, raw_feeds
from medzoo.deploy.scoring import predicted_class, scores
from medzoo.errors import InputError

__all__ = ["check_new_out_dir", "staged_out_dir", "write_outputs", "write_series_segs",
           "explain_image", "PREDICTION_COLUMNS", "NOT_ANALYSED_COLUMNS"]

NOT_ANALYSED_COLUMNS = ("study", "series", "files", "images", "modality", "reason")
"""``not_analysed.csv``: one row per series (or slice) that was read but not scored."""
PREDICTION_COLUMNS = ("image", "study", "series", "study_image", "slice", "frame", "rows",
                      "columns", "score", "predicted")


def check_new_out_dir(out: Path) -> None:
    """Raise :class:`InputError` unless ``out`` is absent or an empty folder (never overwrite)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"Output {out}: expected a new or empty folder. Received: it holds "
                         "files; refusing to overwrite")


@contextlib.contextmanager
def staged_out_dir(out: Path):
    """A hidden sibling folder to write into, renamed to ``out`` when the block succeeds (so the
    out dir appears complete or not at all) and removed when it fails."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield staging
        if out.exists():
            out.rmdir()
        os.rename(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def write_outputs(state, rejected: list[tuple[str, str]], *, n_inputs: int) -> dict:
    """Number studies, write predictions.csv, studies.json, not_analysed.csv, findings/ and
    rejected.csv.

    Parameters
    ----------
    state : medzoo.deploy.collect.Collector
        The run's closed series (scores, SEG names) and series not analysed.
    rejected : list of (str, str)
        ``(relative path, reason)`` per input file rejected.
    n_inputs : int
        Input files found; ``predicted = n_inputs - rejected - files not analysed``.

    Returns
    -------
    dict
        The counts of ``studies.json`` and ``threshold, threshold_source, model, version,
        seg_files``.
    """
    model, threshold = state.model, state.model.threshold
    by_study: dict[int, list[dict]] = {}
    for entry in state.closed:
        by_study.setdefault(entry["study"], []).append(entry)
    rows, studies = [], []
    # studies numbered in input order, those with nothing analysed among them
    order = sorted(set(by_study) | {item["study"] for item in state.not_analysed})
    number_of = {original: n for n, original in enumerate(order, start=1)}
    not_analysed = [{**item, "study": number_of[item["study"]]} for item in state.not_analysed]
    not_analysed.sort(key=lambda item: (item["study"], item["series"]))  # in input order
    for study_no, original in enumerate(order, start=1):
        entries = by_study.get(original)
        skipped = [item for item in not_analysed if item["study"] == study_no]
        if not entries:  # no series of the study could be analysed
            studies.append(_not_analysed_study(model, state.out, study_no, skipped))
            continue
        study, study_rows = _analysed_study(state, study_no, entries, skipped,
                                            first_image=len(rows) + 1)
        rows.extend(study_rows)
        studies.append(study)

    columns = (PREDICTION_COLUMNS
               + (("lesion_pixels",) if model.task == "segmentation" else ())
               + (tuple(c for c in rows[0] if c.startswith("score_")) + ("findings",)
                  if model.per_finding and rows else ())
               + (("study_pseudonym", "series_pseudonym") if state.key is not None else ())
               + screening.PREDICTION_COLUMNS)
    fsio.write_csv(state.out / "predictions.csv", rows, columns)
    fsio.write_csv(state.out / "not_analysed.csv", not_analysed, NOT_ANALYSED_COLUMNS)
    fsio.write_csv(state.out / "rejected.csv",
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
        **state.screen.document(),
    }
    if model.per_finding:
        document["findings"] = list(model.findings)
    if len(model.inputs) > 1:  # one image = one pair, counted on the lead (first) input
        document["inputs"] = list(model.inputs)
    counts["not_analysed_studies"] = sum(1 for s in studies if s.get("analysed") is False)
    fsio.write_json(state.out / "studies.json", document)
    if model.per_finding:  # e.g. "ground_glass p >= 0.42, nodule p >= 0.5"
        counts["decision"] = ", ".join(
            f"{r['name']} p >= {r['threshold']:g}" if r["rule"] == "threshold"
            else f"{r['name']} most probable" for r in model.findings)
    return {**counts, "threshold": threshold, "threshold_source": model.threshold_source,
            "model": model.name, "version": model.version, "seg_files": list(state.seg_files)}


def _analysed_study(state, study_no: int, entries: list[dict], skipped: list[dict], *,
                    first_image: int) -> tuple[dict, list[dict]]:
    """The studies.json entry and predictions.csv rows of a study with scored series
    (``entries``, closed series in order; ``skipped``: its not-analysed rows); writes its
    findings report (and explanation map). ``first_image``: the number of its first row."""
    model, threshold = state.model, state.model.threshold
    label = findings.model_label(model.name, model.version)
    study_rows, series_entries, study_results = [], [], []
    for entry in entries:
        series_rows = []
        study_results.extend(entry["results"])
        per_image = _image_findings(model, entry["results"])
        for i, r in enumerate(entry["results"]):
            row = {"image": first_image + len(study_rows), "study": study_no,
                   "series": entry["number"], "study_image": len(study_rows) + 1,
                   "slice": r["slice"], "frame": r["frame"], "rows": r["source"].rows,
                   "columns": r["source"].columns, "score": f"{r['score']:.6f}",
                   "predicted": predicted_class(model, r["score"]),
                   **_pseudonyms(state.key, r["source"]),
                   **state.screen.row(r, entry["out_of_domain"])}
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
                "predicted": predicted_class(model, s["max_score"]),
                "model": model.name, "version": model.version,
                **{k: v for k, v in series_rows[0].items() if k == "series_pseudonym"},
                **screening.series_flags(series_rows, entry["out_of_domain"])}
        if per_image:
            item.update(_group_findings(model, entry["results"], series_rows))
        if model.task == "segmentation":
            item["lesion_pixels"] = sum(r["lesion_pixels"] for r in series_rows)
            segs = entry.get("seg") or []
            item["seg"] = segs[0] if len(segs) == 1 else (segs or None)
        series_entries.append(item)
    study_positive = [r["findings"] != "" for r in study_rows] if model.per_finding else None
    s = findings.summarise([r["score"] for e in entries for r in e["results"]], threshold,
                           study_positive)
    study = {"study": study_no, **_without_index(s),
             "max_image": study_rows[s["max_index"]]["study_image"],
             "predicted": predicted_class(model, s["max_score"]),
             "model": model.name, "version": model.version,
             **{k: v for k, v in study_rows[0].items() if k == "study_pseudonym"}}
    study["finding"] = findings.finding_sentence(
        s, finding=model.finding, model=label, max_image=study["max_image"])
    if model.per_finding:
        study.update(_group_findings(model, study_results, study_rows))
        study["finding"] = findings.findings_sentence(study["findings"], model=label)
    study.update(report=f"findings/study-{study_no:03d}.md", series=series_entries)
    if skipped:
        study["not_analysed"] = skipped
    screening.mark_study(study)
    if state.explain_with is not None:
        study["explanation"] = explain_image(model, state.explain_with, state.out, study_no,
                                             study["max_image"], study_results[s["max_index"]])
    fsio.write_text(state.out / study["report"], findings.render_study_report(
        study, study_rows, model=model.describe(), threshold=threshold,
        finding=model.finding, medzoo_version=__version__))
    return study, study_rows


def _not_analysed_study(model, out: Path, study_no: int, skipped: list[dict]) -> dict:
    """The studies.json entry and findings report of a study none of whose images could be
    analysed (e.g. every series outside the model's training domain, or a fusion export given a
    study without one of its modalities)."""
    label = findings.model_label(model.name, model.version)
    study = {"study": study_no, "images": 0, "analysed": False, "positive": False,
             "model": model.name, "version": model.version,
             "finding": f"Not analysed: {skipped[0]['reason']} — model {label}",
             "report": f"findings/study-{study_no:03d}.md", "series": [],
             "not_analysed": skipped}
    fsio.write_text(out / study["report"], findings.render_not_analysed_report(
        study_no, skipped, model=model.describe(), medzoo_version=__version__))
    return study


def _image_findings(model, results: list[dict]) -> list[dict] | None:
    """Per image, a score and a decision per finding (multi-class, multi-label); else None."""
    if not model.per_finding:
        return None
    return findings.image_findings(np.stack([r["probabilities"] for r in results]),
                                   list(model.findings), model.classes,
                                   multi_label=model.multi_label)


def _group_findings(model, results: list[dict], rows: list[dict]) -> dict:
    """``findings`` (each present or absent, with its highest p and image) and ``predicted``
    of a series or study."""
    per_finding = findings.summarise_findings(
        np.stack([r["probabilities"] for r in results]), list(model.findings))
    for f in per_finding:
        f["max_image"] = rows[f.pop("max_index")]["study_image"]
    present = [f["finding"] for f in per_finding if f["present"]]
    return {"findings": per_finding,
            "predicted": "|".join(present) or model.classes[0]}


def _pseudonyms(key: bytes | None, src) -> dict:
    """The keyed study/series pseudonyms of index.csv, when a key file was given."""
    if key is None:
        return {}
    return {"study_pseudonym": deid.pseudonym(key, "study",
                                              src.study_uid or f"file:{src.path}"),
            "series_pseudonym": deid.pseudonym(key, "series",
                                               src.series_uid or f"file:{src.path}")}


def write_series_segs(model, out: Path, key: int, results: list[dict]) -> list[str]:
    """The DICOM SEG(s) of closed series ``key`` → ``seg/series-NNN.dcm`` names written.

    Single-frame images of one size make one SEG, a multi-frame file its own; several SEGs are
    numbered ``series-NNN-K.dcm``. A SEG that cannot be written is skipped with one stderr line
    saying why (the scores stand).

    Parameters
    ----------
    model : medzoo.deploy.exported.ExportedModel
    out : Path
        The (staging) out dir.
    key : int
        The series number in ``predictions.csv``.
    results : list of dict
        The series' scored images, each with its ``source`` and full-size boolean ``mask``.
    """
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
            seg = dicom_seg.write_segmentation(out / "seg" / name, paths, masks,
                                               model_name=model.name,
                                               model_version=model.version,
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
    return written


def explain_image(model, run, out: Path, study_no: int, image_no: int,
                  result: dict) -> str | None:
    """Occlusion map of one image on its raw stored pixels → ``explain/study-NNN.png``.

    ``run`` is the runtime that scored it (model-agnostic: no gradients needed). Returns the
    PNG's name in the out dir, or None (one stderr line) when the image no longer reads.
    """
    from medzoo.evaluation.explain import occlusion, overlay_png

    try:
        feeds = raw_feeds(result["source"].path, model.window)
    except Exception:  # scored moments ago; if it no longer reads, say so and go on
        print(f"medzoo predict: no explanation for study {study_no:03d}: its image could "
              "not be read again", file=sys.stderr)
        return None
    frame = {k: v[result["frame"] - 1:result["frame"]] for k, v in feeds.items()}

    def two_class(pixels: np.ndarray) -> np.ndarray:
        n = len(pixels)
        run_feeds = {k: (pixels.astype(np.int32) if k == "pixels" else np.repeat(v, n))
                     for k, v in frame.items()}
        score = scores(model, run(run_feeds))[0]
        return np.stack([1.0 - score, score], axis=1)

    pixels = frame["pixels"]
    heat = occlusion(two_class, pixels, 1, patch=max(4, min(pixels.shape[1:]) // 8),
                     fill=float(np.median(pixels)))[0]
    name = f"explain/study-{study_no:03d}.png"
    overlay_png(display(frame), {"occlusion sensitivity": heat}, out / name,
                title=f"study {study_no:03d}, image {image_no}: "
                      f"p({model.finding}) = {result['score']:.2f}")
    return name


def _positive(per_image: list[dict] | None):
    return None if per_image is None else [f["positive"] for f in per_image]


def _without_index(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "max_index"}
