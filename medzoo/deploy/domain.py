"""Is a new series like the data the model was trained on? The domain check of ``medzoo predict``.

Pure functions: the export's training domain (``model_card.json`` ``domain``, written from the
dataset's ``dataset.json`` by ingest — :mod:`medzoo.datasets.domain`) and the facts of one series
go in; the reasons it lies outside come out (empty: inside). ``predict`` does not score a series
with reasons unless ``--allow-out-of-domain`` is given, and then marks every finding from it.

The rules and their tolerances (docs/domain.md):

* **modality** — the series' Modality must be one the model was trained on;
* **not a diagnostic image** — RT Dose, RT Structure Set, RT Plan, segmentations, structured
  reports, presentation states, raw data and encapsulated documents are never images to score
  (objects without pixel data are rejected earlier, as unreadable input);
* **colour** — a colour series (SamplesPerPixel 3, or a colour photometric interpretation) for
  a model trained on greyscale images, and the other way round;
* **pixel spacing** — outside ``[min / 2, max × 2]`` of the training range (:data:`SPACING_FACTOR`);
  for a volume export also the **slice spacing** (distance between slice centres along the
  normal, from the series geometry) against the training ``slice_spacing_mm``, same factor;
* **image size** — rows or columns outside ``[min / 4, max × 4]`` (:data:`SIZE_FACTOR`);
* **intensity** — the median modality value (after rescale slope/intercept; a grid sample of
  the middle frame) of the series' first decoded image outside the training images' 1st–99th
  percentile of modality values, widened by 5 % of that range on each side
  (:data:`INTENSITY_MARGIN`). The other rules need only the headers and are checked before any
  pixel is decoded; this one on the first image read for scoring, so no image is decoded twice.

A fact the series does not carry (no PixelSpacing, say) or the domain does not record is not
checked. An export whose training data recorded no domain (``"unknown"``: an older dataset) is
not checked at all; predict warns once.
"""

from __future__ import annotations

import math

SPACING_FACTOR = 2.0
SIZE_FACTOR = 4.0
INTENSITY_MARGIN = 0.05
INTENSITY_PERCENTILES = ("p1", "p99")

NON_DIAGNOSTIC_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.481.2": "RT Dose",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT Structure Set",
    "1.2.840.10008.5.1.4.1.1.481.5": "RT Plan",
    "1.2.840.10008.5.1.4.1.1.481.8": "RT Ion Plan",
    "1.2.840.10008.5.1.4.1.1.66": "Raw Data",
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation",
    "1.2.840.10008.5.1.4.1.1.66.7": "Labelmap Segmentation",
}
"""SOP classes that hold pixels but are not images of the patient to be read (exact UIDs)."""
NON_DIAGNOSTIC_PREFIXES = {
    "1.2.840.10008.5.1.4.1.1.88.": "Structured Report",
    "1.2.840.10008.5.1.4.1.1.11.": "Presentation State",
    "1.2.840.10008.5.1.4.1.1.104.": "Encapsulated Document",
    "1.2.840.10008.5.1.4.1.1.481.": "Radiotherapy object",
}
NON_DIAGNOSTIC_MODALITIES = {"RTDOSE": "RT Dose", "RTSTRUCT": "RT Structure Set",
                             "RTPLAN": "RT Plan", "SEG": "Segmentation",
                             "SR": "Structured Report", "PR": "Presentation State",
                             "KO": "Key Object Selection", "REG": "Registration"}
COLOUR_PHOTOMETRIC = ("RGB", "YBR", "PALETTE")


def is_known(domain) -> bool:
    """True when ``domain`` is a recorded domain (not ``"unknown"`` or missing).

    A domain with images but no modality (a NIfTI dataset whose channel names map to none) is
    known: its spacing, size and intensity rules still apply; the modality rule is skipped.
    """
    return isinstance(domain, dict) and bool(domain.get("modalities") or domain.get("images"))


def series_facts(object_facts: list[dict], median: float | None = None) -> dict:
    """The facts of one series from the header facts of its objects
    (:func:`medzoo.datasets.domain.header_facts`) and the median modality value of one image.

    Returns
    -------
    dict
        ``modalities, photometric, sop_classes, samples`` (sorted lists), ``pixel_spacing``,
        ``rows``, ``columns``, ``slice_spacing`` ([min, max] or None) and ``median``.
    """
    def values(key):
        return sorted({f[key] for f in object_facts if f.get(key) not in (None, "")})

    def span(key):
        found = [float(v) for f in object_facts
                 for v in (f.get(key) if isinstance(f.get(key), list) else [f.get(key)])
                 if v is not None]
        return [min(found), max(found)] if found else None

    return {"modalities": values("modality"), "photometric": values("photometric"),
            "sop_classes": values("sop_class"), "samples": values("samples"),
            "pixel_spacing": span("pixel_spacing"), "rows": span("rows"),
            "columns": span("columns"), "slice_spacing": span("slice_spacing"),
            "median": median}


def _is_colour(photometric: str, samples) -> bool:
    return (samples not in (None, 1)) or str(photometric).upper().startswith(COLOUR_PHOTOMETRIC)


def _non_diagnostic(facts: dict) -> str | None:
    for uid in facts.get("sop_classes") or []:
        if uid in NON_DIAGNOSTIC_SOP_CLASSES:
            return NON_DIAGNOSTIC_SOP_CLASSES[uid]
        for prefix, kind in NON_DIAGNOSTIC_PREFIXES.items():
            if uid.startswith(prefix):
                return kind
    for modality in facts.get("modalities") or []:
        if modality in NON_DIAGNOSTIC_MODALITIES:
            return NON_DIAGNOSTIC_MODALITIES[modality]
    return None


def _g(value: float) -> str:
    return f"{value:.4g}"


def _outside(span, allowed) -> bool:
    return span is not None and (span[0] < allowed[0] or span[1] > allowed[1])


def _range_text(span) -> str:
    lo, hi = span
    return _g(lo) if lo == hi else f"{_g(lo)}–{_g(hi)}"


def reasons(domain, facts: dict) -> list[str]:
    """Why a series (``facts`` from :func:`series_facts`) lies outside ``domain``.

    Parameters
    ----------
    domain : dict or "unknown"
        The model card's ``domain``.
    facts : dict

    Returns
    -------
    list of str
        One short reason per rule broken, e.g. ``"modality MR (trained on CT)"``; empty when the
        series is inside the domain or the domain is unknown.
    """
    if not is_known(domain):
        return []
    out = []
    kind = _non_diagnostic(facts)
    if kind:
        out.append(f"not a diagnostic image ({kind})")
    trained = sorted(domain.get("modalities") or {})
    other = [m for m in facts.get("modalities") or [] if m not in trained]
    if other and trained:
        out.append(f"modality {', '.join(other)} (trained on {', '.join(trained)})")
    trained_photometric = sorted(domain.get("photometric_interpretations") or {})
    trained_colour = any(_is_colour(p, None) for p in trained_photometric) or any(
        s != 1 for s in domain.get("samples_per_pixel") or [])
    series_colour = any(_is_colour(p, None) for p in facts.get("photometric") or []) or any(
        s != 1 for s in facts.get("samples") or [])
    if series_colour and not trained_colour:
        out.append(f"colour image ({', '.join(facts.get('photometric') or ['colour'])}; "
                   f"trained on greyscale {', '.join(trained_photometric)})")
    elif trained_colour and not series_colour and facts.get("photometric"):
        out.append(f"greyscale image ({', '.join(facts['photometric'])}; trained on colour)")
    # grid rules: the series' range must lie within the training range widened by a factor
    for what, trained_key, fact_key, factor, unit in (
            ("pixel spacing", "pixel_spacing_mm", "pixel_spacing", SPACING_FACTOR, " mm"),
            ("slice spacing", "slice_spacing_mm", "slice_spacing", SPACING_FACTOR, " mm"),
            ("rows", "rows", "rows", SIZE_FACTOR, ""),
            ("columns", "columns", "columns", SIZE_FACTOR, "")):
        trained = domain.get(trained_key)
        if trained and facts.get(fact_key):
            allowed = (trained[0] / factor, trained[1] * factor)
            if _outside(facts[fact_key], allowed):
                out.append(f"{what} {_range_text(facts[fact_key])}{unit} outside "
                           f"{_g(allowed[0])}–{_g(allowed[1])}{unit} (training "
                           f"{_range_text(trained)}{unit}, ÷/× {factor:g})")
    intensity = domain.get("intensity") or {}
    median = facts.get("median")
    lo, hi = (intensity.get(p) for p in INTENSITY_PERCENTILES)
    if (median is not None and math.isfinite(median) and lo is not None and hi is not None
            and not series_colour):
        margin = INTENSITY_MARGIN * (hi - lo)
        if not (lo - margin <= median <= hi + margin):
            out.append(f"median intensity {_g(median)} outside the training images' "
                       f"1st–99th percentile {_g(lo)}–{_g(hi)} (modality values, ±"
                       f"{INTENSITY_MARGIN:.0%} of that range)")
    return out
