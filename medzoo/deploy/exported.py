"""The export a ``predict`` run uses: an export version dir ``BASE/NAME/VERSION`` read into an
:class:`ExportedModel` (model card, falling back to the ``medzoo.*`` metadata of
``model_raw.onnx`` for exports made before the card held everything predict needs).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from medzoo import fsio
from medzoo.errors import InputError

__all__ = ["ExportedModel", "load_export", "DEFAULT_THRESHOLD"]

DEFAULT_THRESHOLD = 0.5


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
        """``name, version, architecture, task, classes, image_size``: studies.json's ``model``."""
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

