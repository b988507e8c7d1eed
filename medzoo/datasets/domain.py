"""The domain of a dataset: what kind of DICOM images it holds, in aggregate, without identifiers.

Ingest records it in ``dataset.json`` (``domain``); export copies it into the model card and the
ONNX metadata; ``medzoo predict`` checks new series against it (:mod:`medzoo.deploy.domain`).

Per object, :func:`object_facts` takes what the header says (modality, photometric
interpretation, SOP class, body part, pixel spacing, slice thickness, rows, columns, bits stored,
samples per pixel) and a histogram of a subsample of its modality values (after the Modality
LUT, before any window). :class:`DomainAccumulator` adds these up; its state is plain JSON, so
a resumed ingest continues from the journal exactly (:mod:`medzoo.datasets.resume`), and
:meth:`DomainAccumulator.summary` turns it into the ``domain`` section:

.. code-block:: json

    {"images": 30, "modalities": {"CT": 30}, "photometric_interpretations": {"MONOCHROME2": 30},
     "sop_classes": {"1.2.840.10008.5.1.4.1.1.2": {"name": "CT Image Storage", "images": 30}},
     "body_parts": {}, "samples_per_pixel": [1], "bits_stored": [12],
     "pixel_spacing_mm": [0.7, 0.7], "slice_thickness_mm": [5.0, 5.0],
     "rows": [32, 32], "columns": [32, 32],
     "intensity": {"unit": "modality value", "p0.5": -1000.0, "p1": ..., "p50": ..., "p99": ...,
                   "p99.5": ..., "image_median": [min, max], "images": 30}}

Intensities are binned on an asinh scale (:data:`BINS_PER_UNIT` bins per unit of asinh): about
1.6 % of the value for large values, 1/64 near zero — fine enough for a domain check, and a
histogram of a whole dataset stays a few hundred numbers.
"""

from __future__ import annotations

import math

import numpy as np

SCHEMA_VERSION = 1
BINS_PER_UNIT = 64
"""Histogram bins per unit of asinh(value)."""
SAMPLE_PIXELS = 1024
"""About this many pixels per frame are sampled for intensities (a regular grid)."""
PERCENTILES = (0.5, 1.0, 5.0, 50.0, 95.0, 99.0, 99.5)
STANDARD_UID_ROOT = "1.2.840.10008."
"""SOP classes defined by the DICOM standard; others are recorded as ``"private"``."""
UNKNOWN = "unknown"
"""What an export records when its training data has no domain (an old dataset)."""


def _number(value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _spacing(ds):
    value = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    values = [v for v in values if math.isfinite(v) and v > 0]
    return values or None


def header_facts(ds) -> dict:
    """What a DICOM header says about the kind of image, without identifiers.

    Parameters
    ----------
    ds : pydicom.Dataset (or anything with ``get``)

    Returns
    -------
    dict
        ``modality, photometric, sop_class, body_part, samples, bits_stored, rows, columns,
        pixel_spacing`` (list of mm or None), ``slice_thickness`` (mm or None).
    """
    def text(keyword, default=""):
        return str(ds.get(keyword, default) or default).strip()

    def integer(keyword, default=None):
        try:
            return int(ds.get(keyword, default))
        except (TypeError, ValueError):
            return default

    thickness = _number(ds.get("SliceThickness"))
    return {"modality": text("Modality", "OT").upper() or "OT",
            "photometric": text("PhotometricInterpretation", "MONOCHROME2").upper(),
            "sop_class": text("SOPClassUID"), "body_part": text("BodyPartExamined").upper(),
            "samples": integer("SamplesPerPixel", 1) or 1,
            "bits_stored": integer("BitsStored"), "rows": integer("Rows"),
            "columns": integer("Columns"), "pixel_spacing": _spacing(ds),
            "slice_thickness": thickness if thickness and thickness > 0 else None}


def sample_grid(raw: np.ndarray, pixels: int = SAMPLE_PIXELS) -> np.ndarray:
    """A regular subsample of ``(frames, rows, cols[, samples])`` stored values (every k-th
    row and column), about ``pixels`` per frame."""
    rows, cols = raw.shape[1], raw.shape[2]
    step = max(1, int(math.sqrt(rows * cols / pixels)))
    return raw[:, ::step, ::step]


def intensity_bins(values: np.ndarray) -> dict:
    """Histogram ``{bin: count}`` of modality values on the asinh scale (finite values only)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {}
    bins = np.rint(np.arcsinh(values) * BINS_PER_UNIT).astype(np.int64)
    low = int(bins.min())
    counts = np.bincount(bins - low)  # no sort: a few hundred bins at most
    used = np.flatnonzero(counts)
    return dict(zip(map(str, (used + low).tolist()), counts[used].tolist()))


def bin_value(key) -> float:
    """The modality value at the centre of histogram bin ``key``."""
    return float(np.sinh(int(key) / BINS_PER_UNIT))


def object_facts(ds, modality_values: np.ndarray | None) -> dict:
    """:func:`header_facts` plus the intensities of one object.

    Parameters
    ----------
    ds : pydicom.Dataset
    modality_values : ndarray or None
        Modality values (after the Modality LUT) of a subsample of the object's pixels
        (:func:`sample_grid`); None for colour objects, whose values are not modality values.
    """
    facts = header_facts(ds)
    if modality_values is not None and facts["samples"] == 1:
        facts.update(intensity_facts(modality_values))
    return facts


def intensity_facts(values) -> dict:
    """``histogram`` (:func:`intensity_bins`) and ``median`` of one image's sampled values
    (finite ones; median None when there are none)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return {"histogram": intensity_bins(finite),
            "median": float(np.median(finite)) if finite.size else None}


def _count(table: dict, key) -> None:
    if key not in (None, ""):
        table[str(key)] = table.get(str(key), 0) + 1


def _widen(pair, values):
    values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])
              if v is not None]
    if not values:
        return pair
    lo, hi = min(values), max(values)
    return [lo, hi] if pair is None else [min(pair[0], lo), max(pair[1], hi)]


class DomainAccumulator:
    """Adds up :func:`object_facts` of many objects; ``state()`` is JSON and round-trips."""

    _COUNTS = ("modality", "photometric", "sop_class", "body_part", "samples", "bits_stored")
    _RANGES = ("pixel_spacing", "slice_thickness", "rows", "columns", "median", "slice_spacing")

    def __init__(self, state: dict | None = None):
        state = state or {}
        self.objects = int(state.get("objects", 0))
        self.counts = {k: dict(state.get("counts", {}).get(k, {})) for k in self._COUNTS}
        self.ranges = {k: state.get("ranges", {}).get(k) for k in self._RANGES}
        self.histogram = dict(state.get("histogram", {}))

    def add(self, facts) -> None:
        """Count one object's facts, or each of a list (the inputs of a paired record); None:
        nothing (e.g. the second frame of an object already counted)."""
        if isinstance(facts, (list, tuple)):
            for item in facts:
                self.add(item)
            return
        if not facts:
            return
        self.objects += 1
        for key in self._COUNTS:
            _count(self.counts[key], facts.get(key))
        for key in self._RANGES:
            self.ranges[key] = _widen(self.ranges[key], facts.get(key))
        for b, c in (facts.get("histogram") or {}).items():
            self.histogram[b] = self.histogram.get(b, 0) + int(c)

    def state(self) -> dict:
        return {"objects": self.objects, "counts": self.counts, "ranges": self.ranges,
                "histogram": self.histogram}

    def summary(self) -> dict:
        """The ``domain`` section of ``dataset.json`` (see the module docstring); volumes
        (objects whose facts carry ``slice_spacing``, mm between slice centres) add
        ``slice_spacing_mm``."""
        import pydicom.uid

        def rounded(pair, digits=4):
            return None if pair is None else [round(float(v), digits) for v in pair]

        sop = {}
        for uid, n in sorted(self.counts["sop_class"].items()):
            if not uid.startswith(STANDARD_UID_ROOT):  # a vendor's own class: keep no UID
                uid, name = "private", "private SOP class"
            else:
                name = pydicom.uid.UID(uid).name
                name = name if name != uid else "unknown SOP class"
            entry = sop.setdefault(uid, {"name": name, "images": 0})
            entry["images"] += n
        out = {
            "schema_version": SCHEMA_VERSION, "images": self.objects,
            "modalities": dict(sorted(self.counts["modality"].items())),
            "photometric_interpretations": dict(sorted(self.counts["photometric"].items())),
            "sop_classes": sop,
            "body_parts": dict(sorted(self.counts["body_part"].items())),
            "samples_per_pixel": sorted(int(k) for k in self.counts["samples"]),
            "bits_stored": sorted(int(k) for k in self.counts["bits_stored"]),
            "pixel_spacing_mm": rounded(self.ranges["pixel_spacing"]),
            "slice_thickness_mm": rounded(self.ranges["slice_thickness"]),
            "rows": rounded(self.ranges["rows"], 0) and [int(v) for v in self.ranges["rows"]],
            "columns": (rounded(self.ranges["columns"], 0)
                        and [int(v) for v in self.ranges["columns"]]),
            "intensity": self._intensity(),
        }
        if self.ranges["slice_spacing"] is not None:  # volumes only: 2D sections stay as they were
            out["slice_spacing_mm"] = rounded(self.ranges["slice_spacing"])
        return out

    def _intensity(self) -> dict | None:
        if not self.histogram:
            return None
        keys = sorted(self.histogram, key=int)
        counts = np.array([self.histogram[k] for k in keys], dtype=np.float64)
        cumulative = np.cumsum(counts) / counts.sum()
        out = {"unit": "modality value (after the Modality LUT, before any window)"}
        for p in PERCENTILES:
            i = min(int(np.searchsorted(cumulative, p / 100.0)), len(keys) - 1)
            out[f"p{p:g}"] = round(bin_value(keys[i]), 3)
        out["image_median"] = [round(v, 3) for v in self.ranges["median"] or []] or None
        out["pixels_sampled"] = int(counts.sum())
        return out


def describe(domain) -> str:
    """One line for people: what the images were, e.g. ``"CT; MONOCHROME2; body part CHEST;
    pixel spacing 0.7–0.9 mm; 512 × 512 px; modality values p1–p99 -1024 – 1100"``."""
    if not isinstance(domain, dict) or not (domain.get("modalities") or domain.get("images")):
        return "unknown (not recorded at ingest)"

    def span(pair, unit=""):
        lo, hi = pair
        return (f"{lo:.4g}" if lo == hi else f"{lo:.4g}–{hi:.4g}") + unit

    parts = [", ".join(domain.get("modalities") or {}) or "modality unknown",
             ", ".join(domain.get("photometric_interpretations") or {})]
    if domain.get("body_parts"):
        parts.append("body part " + ", ".join(domain["body_parts"]))
    if domain.get("pixel_spacing_mm"):
        parts.append(f"pixel spacing {span(domain['pixel_spacing_mm'], ' mm')}")
    if domain.get("slice_spacing_mm"):
        parts.append(f"slice spacing {span(domain['slice_spacing_mm'], ' mm')}")
    if domain.get("rows") and domain.get("columns"):
        parts.append(f"{span(domain['rows'])} × {span(domain['columns'])} px")
    intensity = domain.get("intensity") or {}
    if intensity.get("p1") is not None and intensity.get("p99") is not None:
        parts.append(f"modality values p1–p99 {intensity['p1']:.4g} – {intensity['p99']:.4g}")
    return "; ".join(p for p in parts if p)
