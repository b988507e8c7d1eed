"""The bookkeeping of one ``predict`` run while it scores: every series opened in input order,
its objects counted down as they are scored, rejected or left out of the domain check, the
scores (and full-size masks) of each batch filed under their series, and a series closed — its
DICOM SEG written, its masks freed — as soon as its last object is done. What is left at the
end (:attr:`Collector.closed`, :attr:`Collector.not_analysed`) is what
:func:`medzoo.deploy.outputs.write_outputs` writes.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from medzoo.deploy import screening
from medzoo.deploy.outputs import write_series_segs
from medzoo.deploy.scoring import full_size_mask, scores
from medzoo.deploy.sources import Source

__all__ = ["Collector"]


class Collector:
    """Scores and masks per series as batches come back; a series is closed (its SEG written,
    its full-size masks freed) as soon as its last object is scored or rejected.

    Parameters
    ----------
    model : medzoo.deploy.exported.ExportedModel
    out : Path
        The (staging) out dir.
    reject : callable
        ``reject(rel, reason)``: records an input file that could not be used.
    key : bytes, optional
        The pseudonym key (``--key-file``).
    explain_with : callable, optional
        The runtime, for occlusion maps of classifiers (``--explain``).
    """

    def __init__(self, model, out: Path, reject, key: bytes | None = None,
                 explain_with=None):
        self.model, self.out, self.reject, self.key = model, out, reject, key
        # occlusion maps need a classifier's score; a segmenter's SEG already shows where
        self.explain_with = explain_with if model.task == "classification" else None
        if self.explain_with is not None and len(model.inputs) > 1:
            print("medzoo predict: no explanation maps for a several-input (fusion) model; "
                  "scores and findings are complete", file=sys.stderr)
            self.explain_with = None
        self.series: dict[int, dict] = {}
        self.screen = screening.Screen(None)  # domain check and OOD score (set by predict)
        self._opened_in: dict[int, int] = {}  # series per study (numbers not-analysed series)
        self.closed: list[dict] = []  # series with at least one scored image, in order
        self.seg_files: list[str] = []
        self._order: list[tuple[Source, int]] = []
        self._next_key = 0
        self.not_analysed: list[dict] = []  # series (or slices) read but not scored
        self.write_seg = (model.task == "segmentation"
                          and importlib.util.find_spec("highdicom") is not None)
        if model.task == "segmentation" and not self.write_seg:
            print("medzoo predict: no DICOM SEG written: it needs highdicom "
                  "(pip install 'medzoo[seg]'); scores and findings are complete", file=sys.stderr)

    @property
    def has_results(self) -> bool:
        """At least one image was scored."""
        return any(entry["results"] for entry in self.closed)

    # -- bookkeeping

    def open_series(self, study_no: int, objects: list[Source], out_of_domain=()) -> int:
        """Start series ``objects`` of study ``study_no``; returns its key. ``out_of_domain``:
        reasons from the header check (the series is then listed, not scored, unless allowed)."""
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

    def screen_image(self, key: int, src: Source, feeds: dict) -> bool:
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
        modalities = sorted({(o.facts or {}).get("modality", "") for o in objects} - {""})
        self.list_not_analysed(entry["study"], entry["index"] + 1, objects,
                               images=sum(o.frames for o in objects),
                               modality=", ".join(modalities) or None,
                               reason="; ".join(entry["out_of_domain"]))
        return True

    def list_not_analysed(self, study_no: int, series_no: int, files: list[Source], *,
                          images: int, modality: str | None, reason: str):
        """One ``not_analysed.csv`` row (study, and series numbered within the study, in input
        order) and one stderr line naming the first of ``files`` (no files: no line)."""
        if files:  # the user's own relative path, as for rejected files
            more = (f" and {len(files) - 1} more file{'s' if len(files) > 2 else ''}"
                    if len(files) > 1 else "")
            print(f"medzoo predict: not analysed: {files[0].rel}{more}: {reason}",
                  file=sys.stderr)
        self.not_analysed.append({"study": study_no, "series": series_no, "files": len(files),
                                  "images": images, "modality": modality, "reason": reason})

    def objects_in_order(self) -> list[tuple[Source, int]]:
        """``(source, series key)`` of every object opened, study by study, series by series."""
        return list(self._order)

    def queued(self, key: int):
        self.series[key]["in_flight"] += 1

    def drop(self, key: int, src: Source, reason: str):
        self.reject(src.rel, reason)
        self.object_done(key)

    def object_done(self, key: int):
        self.series[key]["objects_left"] -= 1
        self._maybe_close(key)

    def take(self, pending, outputs: dict):
        """File the outputs of one batch: ``pending`` holds ``(series key, source, frame index,
        feeds)`` per image, in the batch's order."""
        batch_scores, masks = scores(self.model, outputs)
        for i, (key, src, frame, _) in enumerate(pending):
            entry = self.series[key]
            result = {"source": src, "frame": frame + 1, "score": float(batch_scores[i]),
                      "slice": entry["slice_of"][id(src)]}
            if "ood_score" in outputs:
                result["ood_score"] = float(outputs["ood_score"][i])
            if masks is not None:
                result["mask"] = full_size_mask(self.model, masks[i], src.rows, src.columns)
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
                entry["seg"] = write_series_segs(self.model, self.out, entry["number"],
                                                 entry["results"])
                self.seg_files.extend(entry["seg"])
            for r in entry["results"]:
                r["lesion_pixels"] = int(np.count_nonzero(r.pop("mask")))
        self.closed.append(entry)



class Batches:
    """Images queued for the model and run ``batch_size`` at a time, their outputs handed to
    :meth:`Collector.take`. A batch holds images of one size only (every ``…pixels`` feed of an
    image the shape of the first image's), so a new size runs what is queued first.

    Parameters
    ----------
    run : callable
        Stacked feeds dict → outputs dict.
    state : Collector
    batch_size : int
    """

    def __init__(self, run, state: Collector, batch_size: int):
        self.run, self.state, self.batch_size = run, state, batch_size
        self.pending: list[tuple] = []  # (series key, source, frame index, feeds of one image)

    def add(self, key: int, src: Source, frame: int, feeds: dict):
        """Queue one image (``frame`` of ``src``, of series ``key``) with its feeds."""
        if self.pending and _pixel_shapes(self.pending[0][3]) != _pixel_shapes(feeds):
            self.flush()
        self.pending.append((key, src, frame, feeds))
        self.state.queued(key)
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self):
        """Run what is queued."""
        if self.pending:
            feeds = {k: np.stack([item[3][k] for item in self.pending])
                     for k in self.pending[0][3]}
            self.state.take(self.pending, self.run(feeds))
            self.pending.clear()


def _pixel_shapes(feeds: dict) -> list[tuple]:
    return [v.shape for k, v in feeds.items() if k.endswith("pixels")]
