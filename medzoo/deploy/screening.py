"""What ``medzoo predict`` asks of an export before and while it scores: the domain check of each
series (:mod:`medzoo.deploy.domain`) and the model-based OOD score of each image
(:mod:`medzoo.export.ood`, ``features_raw.onnx`` in onnxruntime). No TensorFlow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from medzoo import fsio
from medzoo.datasets import domain as data_domain
from medzoo.deploy import domain as checks
from medzoo.export import ood

PREDICTION_COLUMNS = ("ood_score", "ood_flag", "out_of_domain")
"""Columns ``predict`` adds to ``predictions.csv``: the image's OOD distance, 1 when it is above
the export's threshold, and — for series scored with ``--allow-out-of-domain`` only — the
reasons the series lies outside the training domain."""


class Screen:
    """The domain and OOD side of one ``predict`` run on one export.

    Parameters
    ----------
    version_dir : path-like or None
        The export version dir (``model_card.json``; ``ood.json`` + ``features_raw.onnx`` when
        the export has the OOD score). None: check nothing, score nothing more, say nothing
        (for callers that screen elsewhere).
    allow_out_of_domain : bool
        Score series outside the domain anyway (they are marked).
    """

    def __init__(self, version_dir, allow_out_of_domain: bool = False):
        self.allow = bool(allow_out_of_domain)
        self.domain, self.known, self.stats, self.session = data_domain.UNKNOWN, False, None, None
        if version_dir is None:
            return
        version_dir = Path(version_dir)
        try:
            card = fsio.read_json(version_dir / "model_card.json")
        except (OSError, ValueError):
            card = {}
        self.domain = card.get("domain", data_domain.UNKNOWN)
        self.known = checks.is_known(self.domain)
        if not self.known:
            print("medzoo predict: warning: this export records no training domain (its dataset "
                  "was ingested by an older medzoo); series are not checked against it",
                  file=sys.stderr)
        self.stats = ood.read_stats(version_dir)
        if self.stats is not None:
            import onnxruntime as ort

            self.session = ort.InferenceSession(str(version_dir / ood.FEATURES_FILE),
                                                providers=["CPUExecutionProvider"])

    @property
    def threshold(self) -> float | None:
        return float(self.stats["threshold"]) if self.stats is not None else None

    def series_reasons(self, objects) -> list[str]:
        """Why a series (objects with header ``facts``) lies outside the domain, from the
        headers alone (the intensities: :meth:`image_reasons` on its first decoded image)."""
        if not self.known:
            return []
        facts = [o.facts for o in objects if getattr(o, "facts", None)]
        return checks.reasons(self.domain, checks.series_facts(facts))

    def image_reasons(self, feeds: dict, facts: dict | None) -> list[str]:
        """Why one decoded image (the raw signature's ``feeds``) lies outside the domain's
        intensities: the median modality value of a grid sample of its middle frame."""
        if not self.known or (facts or {}).get("samples", 1) != 1:
            return []
        frame = len(feeds["pixels"]) // 2
        sample = data_domain.sample_grid(feeds["pixels"][frame:frame + 1]).astype(np.float64)
        values = (sample * float(feeds["rescale_slope"][frame])
                  + float(feeds["rescale_intercept"][frame]))
        return checks.reasons(self.domain, {"median": float(np.median(values))})

    def volume_reasons(self, slice_spacing: float, middle_slice: np.ndarray) -> list[str]:
        """Why a volume series lies outside the domain once read (volume exports): its slice
        spacing (mm, from the geometry) and the median of a grid sample of its middle slice's
        modality values (``middle_slice``: rows × cols, after the Modality LUT)."""
        if not self.known:
            return []
        sample = data_domain.sample_grid(np.asarray(middle_slice)[None]).astype(np.float64)
        return checks.reasons(self.domain, {"slice_spacing": [float(slice_spacing)] * 2,
                                            "median": float(np.median(sample))})

    def add_ood(self, outputs: dict, feeds: dict) -> dict:
        """``outputs`` of the model on ``feeds`` plus ``ood_score`` (one per image) when the
        export has OOD statistics."""
        if self.session is None:
            return outputs
        features = self.session.run(["features"], feeds)[0]
        return {**outputs, "ood_score": ood.mahalanobis(self.stats, features)}

    def document(self) -> dict:
        """studies.json fields on the check itself: the training domain, the rule, the OOD score."""
        return {"domain": {"training": data_domain.describe(self.domain), "checked": self.known,
                           "allow_out_of_domain": self.allow,
                           "rules": "docs/domain.md; medzoo.deploy.domain"},
                "ood": ({"threshold": self.threshold, "method": "Mahalanobis distance of "
                         "penultimate features"} if self.stats is not None else None)}

    def row(self, result: dict, reasons) -> dict:
        """The :data:`PREDICTION_COLUMNS` of one scored image."""
        score = result.get("ood_score")
        return {"ood_score": "" if score is None else f"{score:.4f}",
                "ood_flag": "" if score is None else int(score > self.threshold),
                "out_of_domain": "; ".join(reasons or ())}


# --------------------------------------------------------------------------- what predict writes

def series_flags(series_rows: list[dict], reasons) -> dict:
    """studies.json fields of a scored series: its out-of-domain reasons (when scored with
    ``--allow-out-of-domain``), its images above the OOD threshold and its highest OOD score."""
    scores = [float(r["ood_score"]) for r in series_rows if r.get("ood_score") not in (None, "")]
    return {"out_of_domain": list(reasons or ()),
            "ood_flagged_images": sum(int(r["ood_flag"] or 0) for r in series_rows
                                      if r.get("ood_flag") != ""),
            "max_ood_score": round(max(scores), 4) if scores else None}


def mark_study(study: dict) -> None:
    """Add the domain fields to a studies.json study entry (before its report is rendered)."""
    series = study.get("series") or []
    study["analysed"] = True
    study["out_of_domain"] = any(s.get("out_of_domain") for s in series)
    study["ood_flagged_images"] = sum(s.get("ood_flagged_images") or 0 for s in series)
    if study["out_of_domain"]:
        reasons = list(dict.fromkeys(r for s in series for r in s.get("out_of_domain") or ()))
        study["finding"] = (f"OUT OF DOMAIN ({'; '.join(reasons)}; scored only because of "
                            f"--allow-out-of-domain) — {study['finding']}")
