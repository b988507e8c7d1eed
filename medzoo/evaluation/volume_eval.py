"""``medzoo evaluate`` for volume exports: sliding window through onnxruntime, metrics in mm.

An export of a 3D patch-trained segmenter (ONNX metadata ``medzoo.volume = true`` with its
``plan`` and ``label_classes``) is evaluated on a native-volume dataset record by record: the
stored volume (already at the plan's spacing and normalisation) goes through
:func:`medzoo.evaluation.sliding_window.sliding_window_inference` (Gaussian blending), the
argmax label map is scored against the stored label map with
:func:`medzoo.evaluation.surface.volume_metrics` (Dice, HD95, ASD, NSD, volume difference).

Writes ``metrics.json`` (per-class and mean metrics, patient-level bootstrap CIs of the Dice)
and ``predictions.csv`` (one row per volume and class). No TensorFlow.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from medzoo import fsio
from medzoo.errors import InputError
from medzoo.evaluation import metrics as M
from medzoo.evaluation.sliding_window import sliding_window_inference
from medzoo.evaluation.surface import METRICS, summarize, volume_metrics

__all__ = ["evaluate_volumes", "onnx_predictor", "predict_volume_probabilities",
           "DEFAULT_OVERLAP", "DEFAULT_TOLERANCE_MM"]

DEFAULT_OVERLAP = 0.5
DEFAULT_TOLERANCE_MM = 2.0
PREDICTION_COLUMNS = ("record_id", "patient", "class", *METRICS, "volume_pred_ml", "volume_ref_ml")


def onnx_predictor(model, batch_size: int = 2) -> Callable[[np.ndarray], np.ndarray]:
    """``predict(batch) -> probabilities`` over an :class:`~medzoo.evaluation.runtime.OnnxModel`."""
    return lambda batch: model.predict(batch, batch_size=batch_size)


def predict_volume_probabilities(model, image: np.ndarray, *, overlap: float = DEFAULT_OVERLAP,
                                 batch_size: int = 2, mirror_axes=(), dtype="float32") -> np.ndarray:
    """Class probabilities ``(D, H, W, K)`` of one stored volume ``(D, H, W, C)`` through a volume
    export (:class:`OnnxModel`), windows of the plan's patch size."""
    patch = [int(p) for p in model.metadata["plan"]["patch_size"]]
    return sliding_window_inference(image, patch, onnx_predictor(model, batch_size),
                                    overlap=overlap, batch_size=batch_size,
                                    mirror_axes=mirror_axes, dtype=dtype)


def _check_dataset(meta: dict, info: dict, model_path: Path, ds_dir: Path) -> list[str]:
    from medzoo.datasets.volume_records import is_volume_dataset, label_classes

    if not is_volume_dataset(info):
        raise InputError(f"{ds_dir}: a volume model is evaluated on a native-volume dataset "
                         "(ingest --spacing). Received: a dataset without a plan")
    classes = list(meta.get("label_classes") or [])
    theirs = label_classes(info)
    if classes != theirs:
        raise InputError(f"{model_path}: the model segments {classes}; the dataset's label "
                         f"classes are {theirs}")
    mine = [float(v) for v in meta["plan"]["target_spacing"]]
    stored = [float(v) for v in info["plan"]["target_spacing"]]
    if not np.allclose(mine, stored, rtol=1e-3):
        raise InputError(f"{ds_dir}: the model expects volumes at {mine} mm; the dataset is "
                         f"stored at {stored} mm (ingest it with --spacing "
                         f"{','.join(f'{v:g}' for v in mine)})")
    return classes


def evaluate_volumes(model, ds_dir, out_dir, *, split: str = "test", batch_size: int = 2,
                     overlap: float = DEFAULT_OVERLAP, mirror_axes=(),
                     tolerance_mm: float = DEFAULT_TOLERANCE_MM, n_boot: int = 1000,
                     seed: int = 0, progress: Callable[[int], None] | None = None) -> dict:
    """Evaluate a volume export on a native-volume dataset; write ``metrics.json`` and
    ``predictions.csv`` into ``out_dir``.

    Parameters
    ----------
    model : OnnxModel
        A volume export (``medzoo.volume`` metadata).
    ds_dir, out_dir : path-like
    split : ``"test"``, ``"fold:I"`` or ``"all"`` (see ``medzoo evaluate``).
    batch_size : windows per onnxruntime call.
    overlap, mirror_axes : sliding-window overlap and mirroring axes (TTA).
    tolerance_mm : normalised surface Dice tolerance.
    n_boot, seed : patient-level bootstrap of the mean Dice.

    Returns
    -------
    dict: the content of ``metrics.json``.

    Raises
    ------
    InputError
        Not a volume dataset, other classes or spacing than the model's, or no record read.
    """
    from medzoo.datasets import manifest, splits
    from medzoo.datasets.volume_records import read_volume_records
    from medzoo.evaluation.evaluate import SCHEMA_VERSION, select_record_ids

    ds_dir, out_dir = Path(ds_dir), Path(out_dir)
    meta = model.metadata
    info = manifest.read_dataset_info(ds_dir)
    classes = _check_dataset(meta, info, model.path, ds_dir)
    index = manifest.read_index(ds_dir)
    ids, fold = select_record_ids(index, split, lambda k, s: splits.fold_assignment(ds_dir, k, s),
                                  meta, info)
    patient_of = {r["record_id"]: r["patient"] for r in index}
    per_volume, record_ids, seconds, voxels = [], [], 0.0, 0
    for done, rec in enumerate(read_volume_records(ds_dir, ids), start=1):
        started = time.perf_counter()
        probs = predict_volume_probabilities(model, rec["image"], overlap=overlap,
                                             batch_size=batch_size, mirror_axes=mirror_axes)
        labels = np.argmax(probs, axis=-1).astype(np.uint8)
        seconds += time.perf_counter() - started
        voxels += int(labels.size)
        reference = rec["mask"] if rec["mask"] is not None else np.zeros_like(labels)
        per_volume.append(volume_metrics(labels, reference, rec["spacing"], classes,
                                         tolerance_mm=tolerance_mm))
        record_ids.append(rec["record_id"])
        if progress is not None:
            progress(done)
    if not per_volume:
        raise InputError(f"{ds_dir}: none of the {len(ids)} selected volumes could be read from shards/")
    summary_block = summarize(per_volume)
    foreground = classes[1:]
    patients = np.array([patient_of.get(r, r) for r in record_ids])
    dice = np.array([[v[c]["dice"] for c in foreground] for v in per_volume], dtype=np.float64)
    flat = {}
    for metric in METRICS:
        flat[metric] = summary_block["mean"][metric]
        for c in foreground:
            flat[f"{metric}_{c}"] = summary_block["per_class"][c][metric]
    ci = {}
    if n_boot:
        boot = {"dice": lambda _, s: float(np.nanmean(s))}
        for k, c in enumerate(foreground):
            boot[f"dice_{c}"] = lambda _, s, k=k: float(np.nanmean(s[:, k]))
        for name, entry in M.bootstrap_metrics(boot, np.zeros(len(dice)), dice, groups=patients,
                                               n_boot=n_boot, seed=seed).items():
            ci[name] = [entry["low"], entry["high"]]
    summary = {
        "schema_version": SCHEMA_VERSION, "task": "segmentation", "volume": True,
        "model": meta.get("model"), "classes": list(meta.get("classes") or []),
        "label_classes": classes, "split": split, "fold": fold, "n": len(per_volume),
        "n_patients": int(np.unique(patients).size), "n_selected": len(ids),
        "n_missing": len(ids) - len(per_volume), "metrics": flat, "ci95": ci,
        "per_class": summary_block["per_class"],
        "sliding_window": {"patch_size": list(meta["plan"]["patch_size"]), "overlap": overlap,
                           "blending": "gaussian", "sigma_scale": 0.125,
                           "mirror_axes": list(mirror_axes)},
        "tolerance_mm": tolerance_mm,
        "spacing_mm": [float(v) for v in meta["plan"]["target_spacing"]],
        "inference": {"seconds": round(seconds, 3),
                      "voxels_per_second": round(voxels / seconds, 1) if seconds else None},
        "conventions": "Dice 1 and NSD 1 when a class is absent from both; HD95/ASD undefined "
                       "(skipped, counted in n_undefined) when either mask is empty",
    }
    summary = _clean(summary)
    rows = []
    for record_id, patient, volume in zip(record_ids, patients, per_volume):
        for c in foreground:
            rows.append({"record_id": record_id, "patient": patient, "class": c,
                         **{k: _fmt(volume[c][k]) for k in PREDICTION_COLUMNS[3:]}})
    fsio.write_csv(out_dir / "predictions.csv", rows, PREDICTION_COLUMNS)
    fsio.write_json(out_dir / "metrics.json", summary)
    return summary


def _fmt(value: float) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.6g}"


def _clean(value):
    """NaN → None, recursively, so metrics.json is valid JSON."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
