"""``medzoo evaluate``: score an exported ONNX model on a dataset dir with onnxruntime (no TensorFlow).

Writes into the eval dir, each file atomically:

* ``metrics.json`` — ``task``, ``model``, ``classes``, ``split``, ``fold``, ``n``, ``n_patients``,
  ``threshold``, ``metrics`` (flat ``{name: float or null}``), ``ci95`` (``{name: [low, high]}``,
  percentile bootstrap resampling patients), ``confusion``, ``patient_level`` and, for segmenters,
  ``segmentation`` (Dice, IoU, HD95 per record summarised);
* ``predictions.csv`` — ``record_id, patient, label, score`` (+ task-specific columns); ``patient``
  is the dataset's pseudonym, nothing else identifies anyone;
* ``roc.png``/``pr.png`` (with patient-bootstrap bands), ``confusion.png``, ``calibration.png`` (+ SVG
  twins) for binary scores.

:func:`evaluate_many` scores several models on several datasets into one ``table.csv``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from medzoo import fsio, roc
from medzoo.errors import InputError
from medzoo.evaluation import metrics as M

__all__ = ["evaluate", "evaluate_many", "model_label", "select_record_ids", "predict_records", "classification_result",
           "multilabel_result", "segmentation_result"]

SCHEMA_VERSION = 1
TASKS = ("classification", "segmentation")
ENGINES = ("local", "ray")  # ray: medzoo.evaluation.ray_engine (optional extra, imported lazily)
CURVE_BAND_BOOT = 200  # resamples for the ROC/PR bands: a smooth band, not a reported number
CI_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1",
              "auc", "pr_auc", "brier")


# --------------------------------------------------------------------------------------------
# record selection


def select_record_ids(index: list[dict], split: str, fold_of: Callable[[int, int], dict] | None,
                      metadata: dict, info: dict) -> tuple[list[str], int | None]:
    """Record ids of ``split``, in index order, and the fold they form (None for "all").

    Parameters
    ----------
    index : rows of index.csv (``record_id``...)
    split : ``"test"`` (the model's held-out ``test_fold``), ``"fold:I"`` or ``"all"``
    fold_of : callable(folds, seed) -> {record_id: fold} (``medzoo.datasets.splits.fold_assignment``
        bound to the dataset dir)
    metadata : the model's ``medzoo.*`` metadata (``test_fold``, ``folds``, ``seed``)
    info : dataset.json (fallback ``folds``/``seed``)

    Raises
    ------
    InputError
        Unknown split, a fold out of range, a "test" split on a model without ``test_fold``, or
        an empty selection.
    """
    if split == "all":
        return [r["record_id"] for r in index], None
    folds = int(metadata.get("folds", info.get("folds", 5)))
    seed = int(metadata.get("seed", info.get("seed", 0)))
    if split == "test":
        if metadata.get("test_fold") is None:
            raise InputError("the model carries no medzoo.test_fold metadata, so its test fold is unknown; "
                             "pass --split fold:I or --split all explicitly")
        fold = int(metadata["test_fold"])
    elif isinstance(split, str) and split.startswith("fold:") and split[5:].strip().isdigit():
        fold = int(split[5:])
    else:
        raise InputError(f"--split must be 'test', 'fold:I' or 'all'. Received: {split!r}")
    if not 0 <= fold < folds:
        raise InputError(f"--split {split}: fold must be in 0..{folds - 1} ({folds} folds). Received: {fold}")
    assignment = fold_of(folds, seed)
    ids = [r["record_id"] for r in index if assignment.get(r["record_id"]) == fold]
    if not ids:
        raise InputError(f"--split {split}: no record of the dataset is in fold {fold}")
    return ids, fold


# --------------------------------------------------------------------------------------------
# streaming prediction


def predict_records(model, records, *, task: str, batch_size: int = 32,
                    progress: Callable[[int], None] | None = None) -> dict:
    """Run ``model`` over dataset records in batches, keeping only scores (not images).

    Parameters
    ----------
    model : :class:`medzoo.evaluation.runtime.OnnxModel`
    records : iterable of dicts from ``medzoo.datasets.records.read_records``
    task : "classification" or "segmentation"
    progress : callable(n_done), optional — called after each batch

    Returns
    -------
    dict of lists: ``record_id``, ``label``, ``output`` (classification: probability rows;
    segmentation: max of the mask), and for segmentation ``dice``, ``iou``, ``hausdorff95_px``
    (``nan`` where the record has no mask).
    """
    out = {"record_id": [], "label": [], "labels": [], "output": [], "dice": [], "iou": [],
           "hausdorff95_px": []}
    batch: list[dict] = []

    def flush():
        images = np.stack([r["image"] for r in batch]).astype(np.float32)
        pred = next(iter(model.predict_batches(images, batch_size=len(batch))))
        for rec, p in zip(batch, pred):
            out["record_id"].append(rec["record_id"])
            out["label"].append(int(rec["label"]))
            if rec.get("labels") is not None:  # multi-label datasets: the multi-hot vector
                out["labels"].append(np.asarray(rec["labels"], dtype=np.int64).ravel())
            if task == "classification":
                out["output"].append(np.asarray(p, dtype=np.float64).ravel())
                continue
            prob = np.asarray(p, dtype=np.float64).reshape(p.shape[0], p.shape[1])
            out["output"].append(float(prob.max()))
            truth = rec.get("mask")
            if truth is None:
                out["dice"].append(math.nan)
                out["iou"].append(math.nan)
                out["hausdorff95_px"].append(math.nan)
                continue
            pm, tm = prob >= 0.5, np.asarray(truth) > 0
            out["dice"].append(float(M.dice_per_image(pm, tm)[0]))
            out["iou"].append(float(M.iou_per_image(pm, tm)[0]))
            out["hausdorff95_px"].append(M.hausdorff95(pm, tm))
        if progress:
            progress(len(out["record_id"]))
        batch.clear()

    for rec in records:
        batch.append(rec)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return out


# --------------------------------------------------------------------------------------------
# results


def _clean(value):
    """JSON-ready: nan/inf → None, numpy → python."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _binary_block(y, s, groups, threshold, n_boot, seed) -> dict:
    report = M.binary_report(y, s, threshold)
    fns = {name: M.threshold_metric(getattr(M, fn), threshold) for name, fn in (
        ("accuracy", "accuracy"), ("balanced_accuracy", "balanced_accuracy"), ("sensitivity", "sensitivity"),
        ("specificity", "specificity"), ("ppv", "ppv"), ("npv", "npv"), ("f1", "f1_score"))}
    fns.update({"auc": roc.roc_auc, "pr_auc": M.average_precision, "brier": M.brier_score})
    cis = M.bootstrap_metrics(fns, y, s, groups=groups, n_boot=n_boot, seed=seed) if n_boot else {}
    confusion = {k: report.pop(k) for k in ("tp", "fp", "tn", "fn")}
    return {"metrics": report, "ci95": {k: [v["low"], v["high"]] for k, v in cis.items()},
            "confusion": confusion}


def classification_result(y_true, outputs, patients, *, threshold: float = 0.5, n_boot: int = 1000,
                          seed: int = 0) -> dict:
    """Metrics of class probabilities (the part of metrics.json that depends on predictions only).

    Parameters
    ----------
    y_true : (n,) class indices
    outputs : (n, n_classes) probabilities, or (n,) positive-class scores
    patients : (n,) patient keys — bootstrap resamples patients, and ``patient_level`` takes the
        maximum score per patient (positive if any record is)
    threshold : decision threshold on the positive-class score (binary)

    Returns
    -------
    dict with ``metrics`` (floats), ``ci95``, ``confusion`` and, for binary, ``patient_level``;
    ``scores`` (n,) the positive-class score (binary) or the probability of the predicted class.
    """
    y = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(outputs, dtype=np.float64)
    g = np.asarray(patients)
    bootstrap = {"n_boot": n_boot, "seed": seed, "level": 0.95, "unit": "patient", "method": "percentile"}
    if probs.ndim == 1 or probs.shape[1] == 2:
        s = probs if probs.ndim == 1 else probs[:, 1]
        block = _binary_block(y, s, g, threshold, n_boot, seed)
        ids, yp, sp = M.aggregate_by_patient(g, y, s, "max")
        patient = _binary_block(yp, sp, None, threshold, n_boot, seed)
        return {**block, "patient_level": {"aggregation": "max score, positive if any record is",
                                           "n": int(ids.size), **patient},
                "bootstrap": bootstrap, "scores": s}
    report = M.multiclass_report(y, probs)
    fns = {"accuracy": lambda yy, pp: M.multiclass_report(yy, pp)["accuracy"],
           "balanced_accuracy": lambda yy, pp: M.multiclass_report(yy, pp)["balanced_accuracy"],
           "macro_auc": lambda yy, pp: float(np.nanmean(M.one_vs_rest_auc(yy, pp)))
           if np.any(~np.isnan(M.one_vs_rest_auc(yy, pp))) else math.nan}
    cis = M.bootstrap_metrics(fns, y, probs, groups=g, n_boot=n_boot, seed=seed) if n_boot else {}
    k = probs.shape[1]
    pred = probs.argmax(1)
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (y, pred), 1)
    per_class = report.pop("per_class")
    return {"metrics": {**report, "auc": report["macro_auc"]}, "per_class": per_class,
            "ci95": {k_: [v["low"], v["high"]] for k_, v in cis.items()},
            "confusion": {"matrix": matrix.tolist(), "rows": "true class", "columns": "predicted class"},
            "bootstrap": bootstrap, "scores": probs[np.arange(len(y)), pred]}


def multilabel_result(y_multi, probs, patients, *, threshold: float = 0.5, n_boot: int = 1000,
                      seed: int = 0) -> dict:
    """Metrics of independent per-finding probabilities (a sigmoid head, multi-label data).

    Parameters
    ----------
    y_multi : (n, K) multi-hot truth
    probs : (n, K) probabilities, one per class, not summing to one
    patients : (n,) patient keys (bootstrap unit)
    threshold : a finding is called present when its probability >= threshold

    Returns
    -------
    dict with ``metrics`` (``macro_auc`` = ``auc``, ``macro_sensitivity``, ``macro_specificity``,
    ``macro_f1``, ``subset_accuracy``, ``hamming_accuracy``), ``per_class`` (``n``, ``auc``,
    ``sensitivity``, ``specificity``, ``ppv``, ``f1`` per class; AUC ``nan`` for a class with one
    outcome), ``ci95`` (macro AUC, sensitivity, specificity by patient), ``confusion`` (per class
    tp/fp/tn/fn), ``scores`` (n,) the largest probability. Macro = mean over classes where defined,
    which equals scikit-learn's ``roc_auc_score(Y, P, average="macro")`` when every class has both
    outcomes.
    """
    y = np.asarray(y_multi, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 2:
        raise InputError(f"multi-label truth and probabilities must both be (n, K). "
                         f"Received: {y.shape} and {p.shape}")
    per_class, confusion = [], []
    for k in range(p.shape[1]):
        yk, pk = y[:, k], (p[:, k] >= threshold).astype(np.int64)
        counts = M.confusion_counts(yk, pk)
        confusion.append(counts)
        per_class.append({"n": int(yk.sum()), "auc": roc.roc_auc(yk, p[:, k]),
                          "sensitivity": M.sensitivity(yk, pk), "specificity": M.specificity(yk, pk),
                          "ppv": M.ppv(yk, pk), "f1": M.f1_score(yk, pk)})

    def macro(values) -> float:
        values = np.asarray(values, dtype=np.float64)
        return float(np.nanmean(values)) if np.any(~np.isnan(values)) else math.nan

    def per_class_macro(fn):
        def metric(yy, pp):
            return macro([fn(yy[:, k], pp[:, k]) for k in range(pp.shape[1])])
        return metric

    called = (p >= threshold).astype(np.int64)
    fns = {"macro_auc": per_class_macro(roc.roc_auc),
           "macro_sensitivity": per_class_macro(lambda a, b: M.sensitivity(a, (b >= threshold).astype(np.int64))),
           "macro_specificity": per_class_macro(lambda a, b: M.specificity(a, (b >= threshold).astype(np.int64)))}
    metrics = {"n": int(y.shape[0]),
               "macro_auc": macro([c["auc"] for c in per_class]),
               "macro_sensitivity": macro([c["sensitivity"] for c in per_class]),
               "macro_specificity": macro([c["specificity"] for c in per_class]),
               "macro_f1": macro([c["f1"] for c in per_class]),
               "subset_accuracy": float(np.mean(np.all(called == y, axis=1))) if y.size else math.nan,
               "hamming_accuracy": float(np.mean(called == y)) if y.size else math.nan}
    metrics["auc"] = metrics["macro_auc"]
    g = np.asarray(patients)
    cis = M.bootstrap_metrics(fns, y, p, groups=g, n_boot=n_boot, seed=seed) if n_boot else {}
    return {"metrics": metrics, "per_class": per_class,
            "ci95": {k: [v["low"], v["high"]] for k, v in cis.items()},
            "confusion": {"per_class": confusion, "threshold": threshold},
            "bootstrap": {"n_boot": n_boot, "seed": seed, "level": 0.95, "unit": "patient",
                          "method": "percentile"},
            "scores": p.max(axis=1)}


def segmentation_result(y_true, image_scores, dice, iou, hd95, patients, *, threshold: float = 0.5,
                        n_boot: int = 1000, seed: int = 0) -> dict:
    """Segmentation metrics plus the classification metrics of the image-level score (max of mask).

    Dice/IoU/HD95 are averaged over records with a ground-truth mask (``nan`` entries are left
    out); HD95 is in pixels of the stored image (the dataset keeps no physical spacing) and is
    undefined (left out) where exactly one of prediction and truth is empty.

    Returns
    -------
    dict as :func:`classification_result`, with ``dice``, ``iou``, ``hausdorff95_px`` added to
    ``metrics``/``ci95`` and a ``segmentation`` block (counts, positives-only Dice).
    """
    y = np.asarray(y_true, dtype=np.int64)
    result = classification_result(y, np.asarray(image_scores, dtype=np.float64), patients,
                                   threshold=threshold, n_boot=n_boot, seed=seed)
    g = np.asarray(patients)
    d, j, h = (np.asarray(v, dtype=np.float64) for v in (dice, iou, hd95))
    has = ~np.isnan(d)
    seg = {"n_with_mask": int(has.sum()), "threshold": 0.5, "hausdorff_unit": "pixel",
           "empty_rule": "Dice and IoU are 1.0 where prediction and truth are both empty"}
    if has.any():
        mean = lambda _y, v: float(np.nanmean(v)) if np.any(~np.isnan(v)) else math.nan  # noqa: E731
        cis = M.bootstrap_metrics({"dice": mean}, d[has], d[has], groups=g[has], n_boot=n_boot, seed=seed)
        cis.update({"iou": M.bootstrap_metrics({"iou": mean}, j[has], j[has], groups=g[has],
                                               n_boot=n_boot, seed=seed)["iou"]})
        cis.update({"hausdorff95_px": M.bootstrap_metrics({"hausdorff95_px": mean}, h[has], h[has],
                                                          groups=g[has], n_boot=n_boot, seed=seed)["hausdorff95_px"]})
        for name, info in cis.items():
            result["metrics"][name] = info["value"]
            result["ci95"][name] = [info["low"], info["high"]]
        pos = has & (y == 1)
        seg["dice_positive_records"] = float(d[pos].mean()) if pos.any() else math.nan
        seg["n_positive_with_mask"] = int(pos.sum())
    result["segmentation"] = seg
    return result


# --------------------------------------------------------------------------------------------
# the command


def _check_compatible(metadata: dict, info: dict, model_path: Path) -> None:
    size = metadata.get("image_size")
    if size is not None and list(size)[:2] != list(info.get("image_size", size))[:2]:
        raise InputError(f"{model_path}: the model expects images of {list(size)[:2]} pixels; "
                         f"the dataset holds {info.get('image_size')}. Re-ingest with --size {size[0]}")
    classes = metadata.get("classes")
    if classes is not None and info.get("classes") is not None and list(classes) != list(info["classes"]):
        raise InputError(f"{model_path}: the model was trained on classes {list(classes)}; "
                         f"the dataset has {list(info['classes'])}")


def evaluate(model_path, ds_dir, out_dir, *, split: str = "test", batch_size: int = 32,
             threshold: float | None = None, n_boot: int = 1000, seed: int = 0,
             threads: int | None = None, charts: bool = True,
             progress: Callable[[int], None] | None = None,
             threshold_source: str | None = None,
             engine: str = "local", address: str | None = None) -> dict:
    """Evaluate an exported model on a dataset dir with onnxruntime and write the eval dir.

    Parameters
    ----------
    model_path : export version dir ``BASE/NAME/VERSION`` or a ``.onnx`` file carrying ``medzoo.*``
        metadata (task, classes, test_fold, folds, seed)
    ds_dir : dataset dir (``medzoo data ingest``)
    out_dir : eval dir to write (created; files in it are replaced)
    split : ``"test"`` (default: the fold the model never saw), ``"fold:I"`` or ``"all"``
    batch_size : images per onnxruntime call
    threshold : decision threshold on the positive-class score; default: the one the model card
        of an export version dir holds when it was chosen on validation data (``medzoo train
        --threshold``), else 0.5 (a threshold tuned on the test records would flatter the model;
        ``youden_threshold`` is reported for reference)
    threshold_source : words for ``metrics.json`` saying where a given ``threshold`` came from
    n_boot, seed : bootstrap resamples (0 to skip intervals) and their seed
    threads : onnxruntime intra-op threads
    engine : ``"local"`` (this process) or ``"ray"`` (Ray Data maps onnxruntime over the shards;
        same predictions and metrics; ``pip install 'medzoo[ray]'``)
    address : Ray cluster address for ``engine="ray"`` (default: a running or new local instance)
    charts : write roc/confusion/calibration charts
    progress : callable(n_done), optional

    Returns
    -------
    dict — the content of ``metrics.json`` (``metrics`` holds floats or None).

    Raises
    ------
    InputError
        Model or dataset unusable, model and dataset disagree (image size, classes), bad split,
        or no record could be read.
    """
    from medzoo.datasets import manifest, records, splits
    from medzoo.evaluation.runtime import OnnxModel

    ds_dir, out_dir = Path(ds_dir), Path(out_dir)
    model = OnnxModel(model_path, threads=threads)
    meta = model.metadata
    if meta.get("volume"):  # a 3D patch-trained segmenter: sliding window, metrics in mm
        from medzoo.evaluation.volume_eval import evaluate_volumes

        return evaluate_volumes(model, ds_dir, out_dir, split=split,
                                batch_size=max(1, min(int(batch_size), 4)), n_boot=n_boot,
                                seed=seed, progress=progress)
    task = meta.get("task")
    if task not in TASKS:
        raise InputError(f"{model.path}: expected medzoo.task metadata 'classification' or 'segmentation'. "
                         f"Received: {task!r}")
    info = manifest.read_dataset_info(ds_dir)
    index = manifest.read_index(ds_dir)
    _check_compatible(meta, info, model.path)
    classes = list(meta.get("classes") or info.get("classes") or [])
    ids, fold = select_record_ids(index, split, lambda k, s: splits.fold_assignment(ds_dir, k, s), meta, info)
    by_id = {r["record_id"]: r for r in index}
    if engine not in ENGINES:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}. Received: {engine!r}")
    if engine == "ray":
        from medzoo.evaluation.ray_engine import predict_records_ray

        raw = predict_records_ray(model.path, ds_dir, ids, task=task, batch_size=batch_size,
                                  threads=threads, address=address, progress=progress)
    else:
        raw = predict_records(model, records.read_records(ds_dir, ids), task=task,
                              batch_size=batch_size, progress=progress)
    if not raw["record_id"]:
        raise InputError(f"{ds_dir}: none of the {len(ids)} selected records could be read from shards/")
    y = np.array(raw["label"], dtype=np.int64)
    patients = np.array([by_id.get(r, {}).get("patient") or r for r in raw["record_id"]])
    source = "given" if threshold is None or threshold_source is None else threshold_source
    if threshold is None:
        threshold, source = _card_threshold(model.path)
    thr = 0.5 if threshold is None else float(threshold)
    multi_label = bool(meta.get("multi_label") or info.get("multi_label"))
    if task == "classification" and multi_label:
        if len(raw["labels"]) != len(raw["record_id"]):
            raise InputError(f"{ds_dir}: a multi-label model needs the records' multi-hot `labels`; "
                             "re-ingest the dataset with this medzoo version")
        result = multilabel_result(np.stack(raw["labels"]), np.stack(raw["output"]), patients,
                                   threshold=thr, n_boot=n_boot, seed=seed)
    elif task == "classification":
        outputs = np.stack(raw["output"])
        if outputs.shape[1] != max(2, len(classes)) and classes:
            raise InputError(f"{model.path}: expected {len(classes)} class probabilities per image. "
                             f"Received: {outputs.shape[1]}")
        result = classification_result(y, outputs, patients, threshold=thr, n_boot=n_boot, seed=seed)
    else:
        if np.any(y > 1):
            raise InputError(f"{ds_dir}: segmentation scores are binary (lesion or not); the dataset has "
                             f"{len(classes)} classes")
        keep = np.array([bool(by_id.get(r, {}).get("has_mask", True)) or lab == 0
                         for r, lab in zip(raw["record_id"], raw["label"])])
        nan_out = lambda v: np.where(keep, np.asarray(v, dtype=np.float64), np.nan)  # noqa: E731
        result = segmentation_result(y, raw["output"], nan_out(raw["dice"]), nan_out(raw["iou"]),
                                     nan_out(raw["hausdorff95_px"]), patients, threshold=thr,
                                     n_boot=n_boot, seed=seed)
    scores = result.pop("scores")
    summary = {
        "schema_version": SCHEMA_VERSION, "task": task, "model": meta.get("model"), "classes": classes,
        "split": split, "fold": fold, "n": int(y.size), "n_patients": int(np.unique(patients).size),
        "n_selected": len(ids), "n_missing": len(ids) - int(y.size), "threshold": thr,
        "threshold_source": "default 0.5" if threshold is None else source, **result,
    }
    if multi_label:
        summary["multi_label"] = True
    summary = _clean(summary)
    _write_predictions(out_dir / "predictions.csv", raw, patients, y, scores, task, classes)
    if charts and multi_label:
        _write_multilabel_charts(out_dir, np.stack(raw["labels"]), np.stack(raw["output"]), classes,
                                 summary)
    elif charts:
        _write_charts(out_dir, y, scores, summary, classes,
                      np.stack(raw["output"]) if task == "classification" else None, patients,
                      n_boot=min(n_boot, CURVE_BAND_BOOT), seed=seed)
    fsio.write_json(out_dir / "metrics.json", summary)
    return summary


def _card_threshold(model_path: Path) -> tuple[float | None, str]:
    """The threshold of an export's model card when it was chosen on validation data."""
    card_path = model_path.parent / "model_card.json"
    if model_path.name not in ("model.onnx", "model.int8.onnx", "model.fp16.onnx") or not card_path.is_file():
        return None, "default 0.5"
    card_metrics = fsio.read_json(card_path).get("metrics") or {}
    value, source = card_metrics.get("threshold"), str(card_metrics.get("threshold_source") or "")
    if isinstance(value, (int, float)) and math.isfinite(value) and source.startswith("validation"):
        return float(value), f"model card ({source})"
    return None, "default 0.5"


def _write_multilabel_charts(out_dir: Path, y_multi, probs, classes: list, summary: dict) -> None:
    from medzoo.evaluation import charts

    split = summary["split"] if summary.get("fold") is None else f"{summary['split']} (fold {summary['fold']})"
    names = classes if len(classes) == probs.shape[1] else [str(k) for k in range(probs.shape[1])]
    curves = {name: (y_multi[:, k], probs[:, k]) for k, name in enumerate(names)
              if 0 < y_multi[:, k].sum() < len(y_multi)}
    if curves:
        charts.plot_roc(curves, out_dir / "roc.png", title=f"Per-finding ROC, {split}")


def _write_predictions(path: Path, raw: dict, patients, y, scores, task: str, classes: list) -> None:
    columns = ["record_id", "patient", "label", "score"]
    rows = []
    outputs = raw["output"]
    multiclass = task == "classification" and len(outputs) and np.asarray(outputs[0]).size > 2
    multi_label = task == "classification" and len(raw.get("labels") or []) == len(outputs)
    if multi_label:
        columns.append("labels")
    if multiclass:
        columns += ["predicted"] + [f"score_{k}" for k in range(np.asarray(outputs[0]).size)]
    if task == "segmentation":
        columns += ["dice", "iou", "hausdorff95_px"]
    for i, rid in enumerate(raw["record_id"]):
        row = {"record_id": rid, "patient": patients[i], "label": int(y[i]), "score": f"{scores[i]:.6g}"}
        if multi_label:
            row["labels"] = "|".join(str(int(v)) for v in raw["labels"][i])
        if multiclass:
            p = np.asarray(outputs[i])
            row["predicted"] = int(p.argmax())
            row.update({f"score_{k}": f"{v:.6g}" for k, v in enumerate(p)})
        if task == "segmentation":
            row.update({k: ("" if math.isnan(raw[k][i]) else f"{raw[k][i]:.6g}")
                        for k in ("dice", "iou", "hausdorff95_px")})
        rows.append(row)
    fsio.write_csv(path, rows, columns)


def _write_charts(out_dir: Path, y, scores, summary: dict, classes: list, probs, patients, *,
                  n_boot: int, seed: int) -> None:
    from medzoo.evaluation import charts

    name = summary.get("model") or "model"
    split = summary["split"] if summary.get("fold") is None else f"{summary['split']} (fold {summary['fold']})"
    binary = "matrix" not in summary["confusion"]
    if binary:
        c = summary["confusion"]
        matrix = [[c["tn"], c["fp"]], [c["fn"], c["tp"]]]
        names = classes if len(classes) == 2 else ["negative", "positive"]
        if 0 < y.sum() < y.size:
            curve = {name: (y, scores, patients)}
            charts.plot_roc(curve, out_dir / "roc.png", title=f"ROC, {split}", n_boot=n_boot, seed=seed)
            charts.plot_pr(curve, out_dir / "pr.png", title=f"Precision–recall, {split}", n_boot=n_boot,
                           seed=seed)
        if np.all((scores >= 0) & (scores <= 1)):
            charts.plot_calibration(y, scores, out_dir / "calibration.png", title=f"Calibration, {split}")
        charts.plot_confusion(matrix, names, out_dir / "confusion.png", title=f"Confusion, {split}",
                              threshold=summary["threshold"])
    else:
        matrix = summary["confusion"]["matrix"]
        names = classes if len(classes) == len(matrix) else [str(k) for k in range(len(matrix))]
        charts.plot_confusion(matrix, names, out_dir / "confusion.png", title=f"Confusion, {split}")
        curves = {f"{name} vs rest": ((y == k).astype(np.int64), probs[:, k]) for k, name in enumerate(names)
                  if 0 < np.sum(y == k) < y.size}
        if curves:
            charts.plot_roc(curves, out_dir / "roc.png", title=f"One-vs-rest ROC, {split}")


# --------------------------------------------------------------------------------------------
# several models × several datasets


TABLE_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "auc", "pr_auc", "brier",
                 "dice")
TABLE_COLUMNS = (["model", "dataset", "folder", "status", "task", "split", "fold", "n", "n_patients"]
                 + [c for m in TABLE_METRICS for c in (m, f"{m}_ci_low", f"{m}_ci_high")] + ["reason"])


def model_label(model_path) -> str:
    """A short, path-free name for a model: ``NAME-VERSION`` for ``BASE/NAME/VERSION`` (or its
    ``model.onnx``), the file stem for any other ``.onnx``."""
    p = Path(model_path)
    version_dir = p.parent if p.name == "model.onnx" else None if p.suffix.lower() == ".onnx" else p
    if version_dir is not None and version_dir.name.isdigit() and version_dir.parent.name:
        return f"{version_dir.parent.name}-{version_dir.name}"
    return (version_dir or p.with_suffix("")).name or "model"


def _unique(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}-{seen[label]}")
    return out


def _table_row(model: str, dataset: str, folder: str, result: dict | None, reason: str = "") -> dict:
    row = {"model": model, "dataset": dataset, "folder": folder, "status": "ok" if result else "failed",
           "reason": reason}
    if not result:
        return row
    row.update({k: result.get(k) for k in ("task", "split", "fold", "n", "n_patients")})
    for m in TABLE_METRICS:
        row[m] = result["metrics"].get(m)
        low, high = (result.get("ci95") or {}).get(m) or (None, None)
        row[f"{m}_ci_low"], row[f"{m}_ci_high"] = low, high
    return {k: ("" if v is None else round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}


def evaluate_many(models, datasets, out_dir, *, split: str = "test", batch_size: int = 32,
                  threshold: float | None = None, n_boot: int = 1000, seed: int = 0,
                  threads: int | None = None, charts: bool = True,
                  progress: Callable[[str], None] | None = None, engine: str = "local",
                  address: str | None = None) -> dict:
    """Evaluate every model on every dataset; one eval dir per pair and one ``table.csv``.

    With one model and one dataset the eval dir is ``out_dir`` itself (as :func:`evaluate`) and any
    error is raised. Otherwise pair ``(M, D)`` goes to ``out_dir/<model label>/<dataset label>/``
    (labels from :func:`model_label` and the dataset dir's name, made unique), a pair that cannot
    be evaluated (e.g. image size or classes differ) is recorded as ``failed`` with its reason and
    the others go on. ``table.csv`` holds one row per pair, no paths: model, dataset, folder,
    status, task, split, fold, n, n_patients, each metric of :data:`TABLE_METRICS` with its 95% CI,
    reason. ``engine`` and ``address`` choose where predictions run, as for :func:`evaluate`.

    Returns
    -------
    dict with ``rows`` (table.csv), ``results`` (metrics.json per evaluated pair, in row order, None
    for a failed pair), ``evaluated`` and ``failed`` counts, ``table`` (its path).

    Raises
    ------
    InputError
        No model or dataset given, or (several pairs) every pair failed; the one pair's error
        otherwise.
    """
    models, datasets = [Path(m) for m in models], [Path(d) for d in datasets]
    if not models or not datasets:
        raise InputError(f"expected at least one model and one dataset. Received: {len(models)} models, "
                         f"{len(datasets)} datasets")
    out_dir = Path(out_dir)
    m_labels = _unique([model_label(m) for m in models])
    d_labels = _unique([d.resolve().name or "dataset" for d in datasets])
    single = len(models) == 1 and len(datasets) == 1
    rows, results = [], []
    for model, m_label in zip(models, m_labels):
        for ds, d_label in zip(datasets, d_labels):
            folder = out_dir if single else out_dir / m_label / d_label
            if progress:
                progress(f"{m_label} on {d_label}")
            try:
                result = evaluate(model, ds, folder, split=split, batch_size=batch_size, threshold=threshold,
                                  n_boot=n_boot, seed=seed, threads=threads, charts=charts,
                                  engine=engine, address=address)
            except InputError as exc:
                if single:
                    raise
                # the table is written beside results: paths (which may name people) stay out of it
                reason = str(exc).replace(str(model), m_label).replace(str(ds), d_label)
                rows.append(_table_row(m_label, d_label, folder.relative_to(out_dir).as_posix(), None, reason))
                results.append(None)
                continue
            rows.append(_table_row(m_label, d_label, "." if single else folder.relative_to(out_dir).as_posix(),
                                   result))
            results.append(result)
    failed = sum(r is None for r in results)
    if failed == len(results):
        raise InputError(f"none of the {len(results)} model/dataset pairs could be evaluated; first: "
                         f"{rows[0]['model']} on {rows[0]['dataset']}: {rows[0]['reason']}")
    table = out_dir / "table.csv"
    fsio.write_csv(table, rows, TABLE_COLUMNS)
    return {"rows": rows, "results": results, "evaluated": len(results) - failed, "failed": failed,
            "table": table}
