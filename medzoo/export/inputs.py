"""What an export takes and what it reports: its declared inputs and its findings.

``inputs`` — one entry per input column of the training dataset (``path``, ``path_mr``, …: one
modality each, stacked as channels), so that deployment can feed each modality its own raw
pixels::

    [{"name": "ct", "modality": "CT", "channels": [0], "window": "auto"},
     {"name": "mr", "modality": "MR", "channels": [1], "window": "auto"}]

``findings`` — what a classifier reports per image: one entry per class it scores, with the
decision rule (``threshold`` per finding for binary and multi-label heads, ``argmax`` for a
multi-class softmax head). Both are written into the model card and the ONNX metadata
(``medzoo.inputs``, ``medzoo.findings``) and read back by :mod:`medzoo.deploy.predict`.
Pure functions of the run config and ``dataset.json`` (no TensorFlow).
"""

from __future__ import annotations

import math
import re

from medzoo.datasets.manifest import NEGATIVE_NAMES

__all__ = ["declared_inputs", "declared_findings", "raw_input_names", "raw_feeds_per_input",
           "render_markdown", "RAW_FIELDS",
           "DICOM_MODALITIES", "DEFAULT_THRESHOLD"]

RAW_FIELDS = ("pixels", "rescale_slope", "rescale_intercept", "window_center", "window_width",
              "invert")
"""What the raw serving signature takes per input (prefixed ``<name>_`` when there are several)."""

DEFAULT_THRESHOLD = 0.5

DICOM_MODALITIES = frozenset({
    "CT", "MR", "PT", "NM", "US", "CR", "DX", "MG", "XA", "RF", "OT", "SC", "IO", "PX", "OP",
    "XC", "ES", "SM", "RG", "DG", "BMD", "OCT",
})
"""DICOM Modality (0008,0060) values an input column name ``path_<modality>`` may spell."""


def declared_inputs(info: dict | None, channels: int) -> list[dict]:
    """One entry per input column of the training dataset, in channel order.

    Parameters
    ----------
    info : dict or None
        The training dataset's ``dataset.json`` (``input_columns``, ``windows``, ``modalities``);
        None when the dataset is no longer there (one input is then assumed).
    channels : int
        Channels of the model input (``input_shape[-1]``).

    Returns
    -------
    list of dict
        ``name`` (a lower-case identifier, unique), ``modality`` (the DICOM Modality value, or
        None when the column name does not say), ``channels`` (indices into the model input) and
        ``window`` (``"auto"`` or ``[center, width]``, as ingest applied it).
    """
    info = info or {}
    columns = list(info.get("input_columns") or ["path"])
    windows = list(info.get("windows") or [info.get("window", "auto")] * len(columns))
    if len(windows) != len(columns):
        windows = [windows[0]] * len(columns)
    if len(columns) < 2 or channels % len(columns):
        columns, windows = columns[:1], windows[:1]
    per_input = channels // len(columns)
    leading = _leading_modality(info.get("modalities") or {})
    inputs, used = [], set()
    for i, (column, window) in enumerate(zip(columns, windows)):
        suffix = column[len("path_"):] if column.lower().startswith("path_") else ""
        modality = suffix.upper() if suffix.upper() in DICOM_MODALITIES else None
        if i == 0 and not suffix:
            modality = leading
        name = _identifier(suffix or (modality or "image"))
        if name in used:
            name = f"{name}{i}"
        used.add(name)
        inputs.append({"name": name, "modality": modality,
                       "channels": list(range(i * per_input, (i + 1) * per_input)),
                       "window": window})
    if len(inputs) > 1 and len({d["modality"] for d in inputs}) < len(inputs):
        # two inputs of one modality cannot be told apart by Modality: pair by series order
        for d in inputs:
            d["modality"] = None
    return inputs


def raw_input_names(inputs: list[dict] | None) -> list[str]:
    """Input names of the raw serving signature: :data:`RAW_FIELDS` for one input, else
    ``<name>_<field>`` for every declared input in channel order."""
    if not inputs or len(inputs) < 2:
        return list(RAW_FIELDS)
    return [f"{d['name']}_{field}" for d in inputs for field in RAW_FIELDS]


def declared_findings(config: dict) -> list[dict] | None:
    """Per-class decision rules of a classifier (None for segmenters).

    Binary heads: the positive class with the run's validation-chosen threshold
    (``train --threshold``), else 0.5. Multi-label heads: every class that is not a negative
    name (``normal`` …), each with its own threshold (``threshold.per_class`` of the run when
    trained with one, else 0.5). Multi-class softmax heads: every class but the first, decided by
    argmax.

    Returns
    -------
    list of dict or None
        ``name``, ``index`` (output column), ``rule`` (``"threshold"`` or ``"argmax"``),
        ``threshold`` (float, threshold rules only) and ``threshold_source``.
    """
    if config.get("task") != "classification":
        return None
    classes = list(config.get("classes") or [])
    chosen = config.get("threshold") or {}
    if config.get("multi_label"):
        per_class = chosen.get("per_class") or {}
        found = []
        for k, name in enumerate(classes):
            if name.lower() in NEGATIVE_NAMES:
                continue
            value = per_class.get(name)
            usable = isinstance(value, (int, float)) and math.isfinite(value)
            found.append({"name": name, "index": k, "rule": "threshold",
                          "threshold": float(value) if usable else DEFAULT_THRESHOLD,
                          "threshold_source": (f"validation ({chosen.get('rule')})" if usable
                                               else f"default {DEFAULT_THRESHOLD}")})
        return found
    if len(classes) > 2:
        return [{"name": name, "index": k, "rule": "argmax"}
                for k, name in enumerate(classes) if k > 0]
    value = chosen.get("value")
    usable = isinstance(value, (int, float)) and math.isfinite(value)
    name = classes[1] if len(classes) == 2 else "lesion"
    return [{"name": name, "index": 1, "rule": "threshold",
             "threshold": float(value) if usable else DEFAULT_THRESHOLD,
             "threshold_source": (f"validation ({chosen.get('rule')})" if usable
                                  else f"default {DEFAULT_THRESHOLD}")}]


def _leading_modality(counts: dict) -> str | None:
    if not counts:
        return None
    modality = max(sorted(counts), key=lambda m: counts[m])
    return str(modality).upper() or None


def _identifier(text: str) -> str:
    name = re.sub(r"[^a-z0-9_]+", "_", text.strip().lower()).strip("_") or "image"
    return f"input_{name}" if name[0].isdigit() else name


def raw_feeds_per_input(feeds: dict, inputs: list[dict] | None) -> dict:
    """Single-input raw feeds (:data:`RAW_FIELDS`) → the feeds of a several-input signature.

    Every input after the first gets the pixels flipped left–right and twice the window width,
    so that a graph which mixed up its inputs would not pass parity by chance.
    """
    if not inputs or len(inputs) < 2:
        return dict(feeds)
    out = {}
    for i, d in enumerate(inputs):
        for field in RAW_FIELDS:
            value = feeds[field]
            if i and field == "pixels":
                value = value[:, :, ::-1].copy()
            elif i and field == "window_width":
                value = value * 2.0
            out[f"{d['name']}_{field}"] = value
    return out


def render_markdown(inputs: list[dict], findings: list[dict] | None) -> str:
    """The model card's "Inputs" and "Findings" sections (appended to ``model_card.md``)."""
    lines = ["", "## Inputs", ""]
    for d in inputs:
        lines.append(f"- `{d['name']}`: modality {d.get('modality') or 'not declared'}, "
                     f"channels {d['channels']}, window {d.get('window')!r}")
    if len(inputs) > 1:
        lines.append("- `medzoo predict` pairs each study's series by modality, frame of "
                     "reference and slice position; a study without one of them is not analysed.")
    if findings:
        lines += ["", "## Findings", ""]
        for f in findings:
            rule = (f"present when p ≥ {f['threshold']:g} ({f['threshold_source']})"
                    if f["rule"] == "threshold" else "present when it is the most probable class")
            lines.append(f"- {f['name']}: {rule}")
    return "\n".join(lines) + "\n"
