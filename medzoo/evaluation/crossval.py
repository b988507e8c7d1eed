"""``medzoo cv``: (repeated) k-fold cross-validation of zoo models on the same patient-grouped folds.

Per model, repeat r and fold T: train (test fold T, validation (T+1) mod K) → export → evaluate the
export with onnxruntime on fold T. Every step leaves its files, so a re-run skips what is finished
(a fold whose ``eval/metrics.json`` exists is not touched). Then, in the CV dir:

* ``cv.json`` — the settings (a re-run with other settings is refused) and the split seeds;
* ``folds.csv`` — one row per model × repeat × fold: sizes of the actual train/val/test parts and
  the fold's metrics; ``summary.csv`` — mean, SD and t-based 95% CI over those rows;
* ``stats.json`` — per model, tests against chance (chance from the class balance) and, per pair
  of models, paired t, Nadeau–Bengio corrected t, Wilcoxon, McNemar and DeLong (the last two on
  pooled out-of-fold predictions, binary tasks only), with Holm adjustments for more than 2 models;
* ``comparison.png`` (the seed's chart 2), ``roc.png``/``pr.png`` (pooled out-of-fold curves per
  model with patient-bootstrap bands), ``calibration.png``, ``folds_accuracy.png``/``folds_auc.png``
  (per-fold scatter) and ``report.html`` embedding them.

Repeats: repeat 0 uses the dataset's own folds (split seed = the dataset's seed); repeat r > 0
re-splits the patients with split seed ``dataset seed + r`` (the datasets splitter,
:func:`medzoo.datasets.splits.fold_assignment`). ``medzoo.training.fit.train`` takes its split seed
from ``dataset.json``, so repeat r trains on a *split view* of the dataset: ``CV/splits/seed-S/``
holding a rewritten ``dataset.json`` and ``index.csv`` (same records and pseudonyms, new folds)
and a link to the original shards. Its exports carry seed S, so evaluating them on the original
dataset dir scores exactly the held-out fold.

Native-volume datasets (``kind: "volume"``): each fold's export is evaluated through the sliding
window (:func:`medzoo.evaluation.evaluate.evaluate`); a fold's figure is the mean Dice over the
foreground classes, with per-class Dice and HD95/ASD/NSD beside it in ``folds.csv``; ``stats.json``
compares models on the per-fold Dice (:func:`volume_cv_statistics`); no chance level, no pooled
curves.

The only evaluation module that reaches into training and export.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from medzoo import fsio
from medzoo.errors import InputError

__all__ = ["run_cv", "run_fold", "fold_dir", "split_view", "cv_statistics", "volume_cv_statistics"]

CHART_METRICS = ("accuracy", "sensitivity", "specificity")
SUMMARY_METRICS = ("accuracy", "sensitivity", "specificity", "auc", "balanced_accuracy", "dice")
# native-volume datasets (kind "volume"): a fold's figure is its test volumes' mean Dice over the
# foreground classes; per-class Dice and the mm surface metrics ride along in folds.csv
VOLUME_METRICS = ("dice", "hd95", "asd", "nsd")
CHANCE_METRICS = ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "auc")
BETWEEN_METRIC = "accuracy"
CURVE_BAND_BOOT = 200
# settings that make two CV runs the same run: a re-run with other values would mix results
SETTINGS = ("folds", "seed", "epochs", "batch_size", "model_options")


def fold_dir(out_dir, model: str, fold: int, repeat: int = 0) -> Path:
    """``CV/MODEL/fold-T`` for repeat 0, ``CV/MODEL/repeat-R/fold-T`` for later repeats."""
    base = Path(out_dir) / model
    return (base if repeat == 0 else base / f"repeat-{repeat}") / f"fold-{fold}"


def split_view(ds_dir, view_dir, folds: int, split_seed: int) -> Path:
    """A dataset dir equal to ``ds_dir`` but for its folds: ``(folds, split_seed)``.

    Writes ``dataset.json`` (``folds``, ``seed``, ``counts.per_fold``) and ``index.csv`` (``fold``
    column) into ``view_dir`` and links ``shards`` (copied where links are not allowed). Nothing
    else is copied. Idempotent.

    Returns
    -------
    Path of the view.
    """
    from medzoo.datasets import manifest, splits

    ds_dir, view_dir = Path(ds_dir).resolve(), Path(view_dir)
    info = manifest.read_dataset_info(ds_dir)
    fold_of = splits.fold_assignment(ds_dir, folds, split_seed)
    view_dir.mkdir(parents=True, exist_ok=True)
    shards = view_dir / "shards"
    if not shards.exists():
        try:
            shards.symlink_to(ds_dir / "shards", target_is_directory=True)
        except OSError:  # no symlinks here (some Windows setups): copy instead
            shutil.copytree(ds_dir / "shards", shards)
    with open(ds_dir / "index.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns, rows = list(reader.fieldnames or []), list(reader)
    for row in rows:
        row["fold"] = fold_of[row["record_id"]]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    fsio.write_text(view_dir / "index.csv", buffer.getvalue())
    counts = dict(info.get("counts") or {})
    counts["per_fold"] = {str(f): sum(1 for r in rows if r["fold"] == f) for f in range(folds)}
    fsio.write_json(view_dir / "dataset.json", {**info, "folds": int(folds), "seed": int(split_seed),
                                                "counts": counts})
    return view_dir


def run_fold(model: str, ds_dir, out_dir, fold: int, *, folds: int, epochs: int | None, seed: int,
             repeat: int = 0, train_dir=None, batch_size: int = 16, model_options: dict | None = None,
             verbose: int = 0) -> dict:
    """Train, export and evaluate one model on one fold, skipping steps already finished.

    Parameters
    ----------
    ds_dir : the dataset dir the export is evaluated on
    train_dir : the dataset dir trained on (a :func:`split_view` for repeats > 0; default ``ds_dir``)

    Returns
    -------
    dict — the fold's ``metrics.json`` content, plus ``counts`` (records in the run's train, val
    and test parts, from its ``config.json``).
    """
    from medzoo.evaluation.evaluate import evaluate
    from medzoo.export.exporter import export_run
    from medzoo.training.fit import train

    where = fold_dir(out_dir, model, fold, repeat)
    run, base, eval_dir = where / "run", where / "export", where / "eval"
    train_dir = Path(train_dir or ds_dir)
    if (eval_dir / "metrics.json").exists():
        result = fsio.read_json(eval_dir / "metrics.json")
    else:
        if not (run / "model.keras").exists():
            train(model, train_dir, run, epochs=epochs, batch_size=batch_size, test_fold=fold, folds=folds,
                  seed=seed, model_options=model_options, verbose=verbose)
        version_dir = base / model / "1"
        if not version_dir.exists():
            version_dir = export_run(run, base, name=model, version=1, data_dir=train_dir,
                                     evaluator=evaluate)
        result = evaluate(version_dir, ds_dir, eval_dir, split="test", seed=seed)
    config = fsio.read_json(run / "config.json")
    return {**result, "counts": config["data"]["counts"]}


def _check_settings(out_dir: Path, settings: dict) -> None:
    previous_path = out_dir / "cv.json"
    if not previous_path.exists():
        return
    previous = fsio.read_json(previous_path)
    changed = [k for k in SETTINGS if previous.get(k) != settings.get(k)]
    if changed:
        shown = ", ".join(f"{k}={previous.get(k)!r}→{settings.get(k)!r}" for k in changed)
        raise InputError(f"{out_dir}: holds a CV run with other settings ({shown}); re-run with the same "
                         "settings to resume it, or choose a new --out")


def run_cv(models, ds_dir, out_dir, *, folds: int = 5, epochs: int | None = None, seed: int = 0,
           repeats: int = 1, batch_size: int = 16, model_options: dict | None = None, verbose: int = 0,
           progress: Callable[[str], None] | None = None) -> dict:
    """Cross-validate ``models`` on ``ds_dir`` (``repeats`` times); write the CV dir; return a summary.

    Parameters
    ----------
    models : zoo names, each once
    folds : K (patient-grouped folds; the dataset's own when K equals its ``folds``)
    epochs, batch_size, seed : training settings (seed: weights and shuffling, not the split)
    repeats : R; repeat r > 0 uses split seed ``dataset seed + r`` (see the module docstring)
    model_options : {model: {builder option: value}}, e.g. ``{"unet": {"base_width": 8}}``; values
        may be text and ``preset`` names a preset (:func:`medzoo.zoo.options.resolve`)
    progress : callable(message), optional — told before each fold

    Returns
    -------
    dict
        ``folds`` (rows of folds.csv), ``summary`` ({model: {metric: [per-fold values]}}),
        ``stats`` (stats.json content) and ``lines`` (a human summary, one line each).

    Raises
    ------
    InputError
        Unknown or duplicate model names, folds < 2, repeats < 1, fewer patients than folds, or a
        CV dir holding a run with other settings.
    """
    from medzoo.datasets import manifest, splits
    from medzoo.zoo import options, registry

    models = list(models)
    ds_dir, out_dir = Path(ds_dir), Path(out_dir)
    if not models or len(set(models)) != len(models):
        raise InputError(f"name each model once. Received: {' '.join(models) or 'none'}")
    for name in models:
        try:
            entry = registry.get(name)
        except KeyError as exc:
            raise InputError(str(exc.args[0])) from exc
        if entry.task not in registry.PREDICTOR_TASKS:
            raise InputError(f"Argument `models` must name models of: "
                             f"{', '.join(registry.names(registry.PREDICTOR_TASKS))}. "
                             f"Received: {name!r} (the {entry.task} model)")
        options.resolve(name, (model_options or {}).get(name))  # refused before any fold runs
    if folds < 3:  # each fold's run holds out one test and one validation fold
        raise InputError(f"--folds must be at least 3 (one test fold, one validation fold, the "
                         f"rest for training). Received: {folds}")
    if repeats < 1:
        raise InputError(f"--repeats must be at least 1. Received: {repeats}")
    model_options = {m: dict((model_options or {}).get(m) or {}) for m in models}
    info = manifest.read_dataset_info(ds_dir)
    volume = info.get("kind") == "volume"
    split_seeds = [int(info["seed"]) + r for r in range(repeats)]
    for split_seed in split_seeds:  # fails early on too few patients
        splits.fold_assignment(ds_dir, folds, split_seed)
    settings = {"folds": folds, "seed": seed, "epochs": epochs, "batch_size": batch_size,
                "model_options": model_options}
    _check_settings(out_dir, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    fsio.write_json(out_dir / "cv.json", {
        "models": models, **settings, "repeats": repeats, "split_seeds": split_seeds,
        "classes": info.get("classes"), "dataset": info.get("counts", {})})
    rows = []
    total, done = len(models) * repeats * folds, 0
    for repeat, split_seed in enumerate(split_seeds):
        train_dir = ds_dir if repeat == 0 else split_view(ds_dir, out_dir / "splits" / f"seed-{split_seed}",
                                                          folds, split_seed)
        for model in models:
            for fold in range(folds):
                done += 1
                if progress:
                    progress(f"[{done}/{total}] {model} repeat {repeat} fold {fold}")
                result = run_fold(model, ds_dir, out_dir, fold, folds=folds, epochs=epochs, seed=seed,
                                  repeat=repeat, train_dir=train_dir, batch_size=batch_size,
                                  model_options=model_options[model] or None, verbose=verbose)
                counts = result["counts"]
                row = {"model": model, "repeat": repeat, "split_seed": split_seed, "fold": fold,
                       "n_test": result["n"], "n_train": counts.get("train"), "n_val": counts.get("val"),
                       "n_patients_test": result.get("n_patients")}
                row.update({k: result["metrics"].get(k) for k in _fold_metrics(result, volume)
                            if isinstance(result["metrics"].get(k), (int, float))})
                rows.append(row)
    id_columns = ["model", "repeat", "split_seed", "fold", "n_test", "n_train", "n_val", "n_patients_test"]
    metric_columns = ([m for m in dict.fromkeys(k for r in rows for k in r) if m not in id_columns] if volume
                      else [m for m in SUMMARY_METRICS if any(m in r for r in rows)])
    fsio.write_csv(out_dir / "folds.csv", rows, id_columns + metric_columns)
    per_model = {m: {k: [r[k] for r in rows if r["model"] == m and r.get(k) is not None]
                     for k in metric_columns} for m in models}
    per_model = {m: {k: v for k, v in metrics.items() if v} for m, metrics in per_model.items()}
    fsio.write_csv(out_dir / "summary.csv", _summary_rows(per_model),
                   ["model", "metric", "mean", "sd", "n_folds", "ci_low", "ci_high"])
    classes = list(info.get("classes") or [])
    stats = (volume_cv_statistics(models, rows) if volume
             else cv_statistics(models, rows, out_dir, n_classes=len(classes)))
    fsio.write_json(out_dir / "stats.json", _json_ready(stats))
    _write_charts(out_dir, models, rows, per_model, stats, seed=seed)
    from medzoo.evaluation import report

    report.write_report(out_dir)
    return {"folds": rows, "summary": per_model, "stats": stats,
            "lines": _lines(per_model, stats, out_dir)}


def _fold_metrics(result: dict, volume: bool) -> tuple[str, ...]:
    if not volume:
        return SUMMARY_METRICS
    classes = list(result.get("label_classes") or [])[1:]
    return VOLUME_METRICS + tuple(f"dice_{c}" for c in classes)


def volume_cv_statistics(models, rows: list[dict]) -> dict:
    """Statistics of a CV run on native volumes: per-fold mean Dice between every pair of models.

    There is no chance level for a Dice coefficient and no per-record score to pool, so
    ``vs_chance`` stays empty and McNemar/DeLong are not computed; the per-fold tests (paired t,
    Nadeau–Bengio corrected t, Wilcoxon) compare the folds' mean Dice as they compare accuracy
    for classifiers.
    """
    from medzoo.evaluation import stats

    note = {"p_value": None, "note": "not computed: segmentation of volumes (no per-record score)"}
    result = {"n_records": int(sum(r["n_test"] for r in rows if r["model"] == models[0]
                                   and r["repeat"] == 0)),
              "class_shares": None, "prevalence": None, "chance_levels": {}, "vs_chance": {},
              "vs_chance_corrected": {}, "between_models": [], "volume": True}
    for a, b in itertools.combinations(models, 2):
        ra = sorted((r for r in rows if r["model"] == a), key=lambda r: (r["repeat"], r["fold"]))
        rb = sorted((r for r in rows if r["model"] == b), key=lambda r: (r["repeat"], r["fold"]))
        va, vb = [r.get("dice", math.nan) for r in ra], [r.get("dice", math.nan) for r in rb]
        n_train = [r["n_train"] for r in ra + rb]
        n_test = [r["n_test"] for r in ra + rb]
        result["between_models"].append({
            "a": a, "b": b, "metric": "dice", "n_folds": len(va),
            "paired_ttest": _safe(stats.paired_ttest, va, vb),
            "corrected_resampled_ttest": _safe(stats.corrected_resampled_ttest, va, vb, n_train, n_test),
            "wilcoxon": _safe(stats.wilcoxon_signed_rank, va, vb),
            "mcnemar": {"test": "McNemar's test", **note},
            "delong": {"test": "DeLong test for correlated ROC AUCs", **note}})
    if len(result["between_models"]) > 1:
        for key in ("corrected_resampled_ttest", "paired_ttest", "wilcoxon"):
            p_values = [e[key].get("p_value") for e in result["between_models"]]
            if all(isinstance(p, (int, float)) and math.isfinite(p) for p in p_values):
                result[f"holm_{key}"] = stats.holm(p_values)
    return result


def _summary_rows(per_model: dict) -> list[dict]:
    from scipy import stats as scipy_stats

    rows = []
    for model, metrics in per_model.items():
        for metric, values in metrics.items():
            values = np.asarray(values, float)
            mean = float(values.mean()) if len(values) else float("nan")
            sd = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
            half = (float(scipy_stats.t.ppf(0.975, len(values) - 1) * sd / np.sqrt(len(values)))
                    if len(values) > 1 else float("nan"))
            rows.append({"model": model, "metric": metric, "mean": round(mean, 6),
                         "sd": round(sd, 6), "n_folds": len(values),
                         "ci_low": round(mean - half, 6), "ci_high": round(mean + half, 6)})
    return rows


def pooled_predictions(out_dir, model: str, folds, repeat: int = 0) -> dict[str, tuple]:
    """record_id → (label, score, patient) over every test fold of ``model`` in one repeat: every
    record once, scored by the one model that never saw it."""
    pooled = {}
    for fold in folds:
        for row in fsio.read_csv(fold_dir(out_dir, model, fold, repeat) / "eval" / "predictions.csv"):
            pooled[row["record_id"]] = (int(row["label"]), float(row["score"]), row.get("patient") or "")
    return pooled


def _arrays(pooled: dict, ids=None):
    ids = sorted(pooled) if ids is None else ids
    y = np.array([pooled[i][0] for i in ids], dtype=np.int64)
    s = np.array([pooled[i][1] for i in ids], dtype=np.float64)
    g = np.array([pooled[i][2] for i in ids])
    return y, s, g


def cv_statistics(models, rows: list[dict], out_dir, *, n_classes: int = 2) -> dict:
    """Tests against chance per model and metric, and between every pair of models.

    Chance levels come from the class balance of the pooled out-of-fold labels (binary:
    :func:`medzoo.evaluation.stats.chance_level`; several classes:
    :func:`~medzoo.evaluation.stats.multiclass_chance_level`). Per-fold tests use every
    (repeat, fold) value; the Nadeau–Bengio tests use the mean actual n_train/n_test of the folds.
    McNemar (at threshold 0.5) and DeLong use repeat 0's pooled out-of-fold predictions and are
    skipped for more than two classes; so is ``vs_chance_patients`` (:func:`patient_binomial_test`),
    which stays defined when every fold scores the same.
    """
    from medzoo.evaluation import stats

    out_dir = Path(out_dir)
    folds = sorted({r["fold"] for r in rows})
    pooled = {m: pooled_predictions(out_dir, m, folds) for m in models}
    labels = np.array([v[0] for v in pooled[models[0]].values()], dtype=np.int64)
    k = max(n_classes, int(labels.max()) + 1 if labels.size else 2, 2)
    shares = np.bincount(labels, minlength=k) / max(1, labels.size)
    binary = k == 2
    result = {"n_records": int(labels.size), "class_shares": shares.tolist(),
              "prevalence": float(shares[1]) if binary else None,
              "chance_levels": {}, "vs_chance": {}, "vs_chance_corrected": {}, "between_models": []}
    metrics = CHANCE_METRICS if binary else ("accuracy", "balanced_accuracy", "auc")
    for metric in metrics:
        result["chance_levels"][metric] = (stats.chance_level(metric, float(shares[1])) if binary
                                           else stats.multiclass_chance_level(metric, shares))
    for model in models:
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: (r["repeat"], r["fold"]))
        n_train, n_test = [r["n_train"] for r in mine], [r["n_test"] for r in mine]
        result["vs_chance"][model], result["vs_chance_corrected"][model] = {}, {}
        for metric in metrics:
            values = [r[metric] for r in mine if r.get(metric) is not None]
            if len(values) < 2:
                continue
            chance = result["chance_levels"][metric]
            result["vs_chance"][model][metric] = stats.one_sample_ttest(values, chance)
            result["vs_chance_corrected"][model][metric] = stats.corrected_one_sample_ttest(
                values, chance, n_train, n_test)
        if binary:
            result.setdefault("vs_chance_patients", {})[model] = patient_binomial_test(pooled[model])
    for a, b in itertools.combinations(models, 2):
        ra = sorted((r for r in rows if r["model"] == a), key=lambda r: (r["repeat"], r["fold"]))
        rb = sorted((r for r in rows if r["model"] == b), key=lambda r: (r["repeat"], r["fold"]))
        va, vb = [r[BETWEEN_METRIC] for r in ra], [r[BETWEEN_METRIC] for r in rb]
        n_train = [r["n_train"] for r in ra + rb]
        n_test = [r["n_test"] for r in ra + rb]
        entry = {"a": a, "b": b, "metric": BETWEEN_METRIC, "n_folds": len(va),
                 "paired_ttest": _safe(stats.paired_ttest, va, vb),
                 "corrected_resampled_ttest": _safe(stats.corrected_resampled_ttest, va, vb, n_train, n_test),
                 "wilcoxon": _safe(stats.wilcoxon_signed_rank, va, vb)}
        if binary:
            ids = sorted(set(pooled[a]) & set(pooled[b]))
            y, sa, _ = _arrays(pooled[a], ids)
            _, sb, _ = _arrays(pooled[b], ids)
            entry["mcnemar"] = _safe(stats.mcnemar, y, (sa >= 0.5).astype(np.int64), (sb >= 0.5).astype(np.int64))
            entry["delong"] = _safe(stats.delong_test, y, sa, sb)
        else:
            note = {"p_value": None, "note": f"not computed: {k} classes (binary tasks only)"}
            entry["mcnemar"] = {"test": "McNemar's test", **note}
            entry["delong"] = {"test": "DeLong test for correlated ROC AUCs", **note}
        result["between_models"].append(entry)
    if len(result["between_models"]) > 1:
        for key in ("corrected_resampled_ttest", "paired_ttest", "wilcoxon", "mcnemar", "delong"):
            p_values = [e[key].get("p_value") for e in result["between_models"]]
            if all(isinstance(p, (int, float)) and math.isfinite(p) for p in p_values):
                result[f"holm_{key}"] = stats.holm(p_values)
    return result


def patient_binomial_test(pooled: dict) -> dict:
    """Exact binomial test of patient-level accuracy against chance, on pooled out-of-fold calls.

    A patient is positive when any of its records is, and called positive when any of its
    records scores 0.5 or more (the model that scored it never saw the patient); patients are
    independent, the slices of one patient are not. Chance is the accuracy of always calling the
    larger class of patients (:func:`medzoo.evaluation.stats.chance_level`).
    """
    from medzoo.evaluation import stats

    y, s, g = _arrays(pooled)
    _, patient = np.unique(g, return_inverse=True)  # one pass, not one scan per patient
    truth = np.zeros(patient.max() + 1 if patient.size else 0, np.int64)
    best = np.full(truth.size, -np.inf)
    np.maximum.at(truth, patient, y)
    np.maximum.at(best, patient, s)
    called = best >= 0.5
    prevalence = float(truth.mean()) if truth.size else 0.0
    if not 0.0 < prevalence < 1.0:
        return {"test": "exact binomial test", "p_value": None,
                "note": "not defined: patients of one class only"}
    result = stats.binomial_test(int((called == truth).sum()), truth.size,
                                 stats.chance_level("accuracy", prevalence))
    return dict(result, unit="patient")


def _safe(test, *args) -> dict:
    """Run a test that is undefined on some inputs (all differences zero, one class only)."""
    try:
        return test(*args)
    except (ValueError, ZeroDivisionError) as exc:
        return {"test": getattr(test, "__name__", "test"), "p_value": None,
                "note": f"not defined here: {exc}"}


def _json_ready(value):
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _write_charts(out_dir: Path, models, rows, per_model, stats: dict, *, seed: int) -> None:
    from medzoo.evaluation import charts

    chance = stats["chance_levels"]
    if stats.get("volume"):  # Dice per class, and the folds' mean Dice
        dice = [k for k in dict.fromkeys(k for m in models for k in per_model[m]) if k.startswith("dice")]
        charts.plot_model_comparison(per_model, out_dir / "comparison.png", metrics=dice)
        ordered = sorted(rows, key=lambda r: (r["repeat"], r["fold"]))
        by_model = {m: {"dice": [r.get("dice", math.nan) for r in ordered if r["model"] == m]} for m in models}
        charts.plot_fold_scatter(by_model, out_dir / "folds_dice.png", metric="dice")
        return
    charts.plot_model_comparison(
        {m: {k: v for k, v in per_model[m].items() if k in CHART_METRICS} for m in models},
        out_dir / "comparison.png", chance={k: v for k, v in chance.items() if k in CHART_METRICS})
    ordered = sorted(rows, key=lambda r: (r["repeat"], r["fold"]))
    keys = sorted({(r["repeat"], r["fold"]) for r in rows})
    labels = [f"fold {f}" if len(keys) == len({f for _, f in keys}) else f"repeat {r} fold {f}" for r, f in keys]
    for metric in ("accuracy", "auc"):
        by_model = {m: {metric: [r.get(metric, math.nan) for r in ordered if r["model"] == m]} for m in models}
        if any(not all(math.isnan(v) for v in by_model[m][metric]) for m in models):
            charts.plot_fold_scatter(by_model, out_dir / f"folds_{metric}.png", metric=metric,
                                     chance=chance.get(metric), fold_labels=labels)
    if stats.get("prevalence") is None:  # several classes: no pooled binary curves
        return
    folds = sorted({r["fold"] for r in rows})
    curves = {}
    for m in models:
        y, s, g = _arrays(pooled_predictions(out_dir, m, folds))
        if 0 < y.sum() < y.size:
            curves[m] = (y, s, g)
    if curves:
        where = "pooled out-of-fold predictions"
        charts.plot_roc(curves, out_dir / "roc.png", title=f"ROC, {where}", n_boot=CURVE_BAND_BOOT, seed=seed)
        charts.plot_pr(curves, out_dir / "pr.png", title=f"Precision–recall, {where}", n_boot=CURVE_BAND_BOOT,
                       seed=seed)
        probs = {m: (y, s) for m, (y, s, _) in curves.items() if np.all((s >= 0) & (s <= 1))}
        if probs:
            charts.plot_calibration_models(probs, out_dir / "calibration.png", title=f"Calibration, {where}")


def _lines(per_model: dict, stats: dict, out_dir: Path) -> list[str]:
    from medzoo.evaluation.stats import describe

    lines = []
    for model, metrics in per_model.items():
        shown = ", ".join(f"{k} {np.mean(v):.3f}±{np.std(v, ddof=1) if len(v) > 1 else 0:.3f}"
                          for k, v in metrics.items() if v)
        lines.append(f"{model}: {shown}")
        test = stats["vs_chance_corrected"].get(model, {}).get("accuracy")
        if test:
            lines.append(f"  accuracy vs chance {test['chance']:.3f} (corrected t): {describe(test)}")
        test = stats.get("vs_chance_patients", {}).get(model)
        if test and isinstance(test.get("p_value"), float):
            lines.append(f"  patient-level accuracy {test['mean']:.3f} vs chance {test['chance']:.3f} "
                         f"(exact binomial): {describe(test)}")
    for entry in stats["between_models"]:
        test = entry["corrected_resampled_ttest"]
        shown = describe(test) if isinstance(test.get("p_value"), float) else test.get("note", "")
        lines.append(f"{entry['a']} vs {entry['b']} ({entry['metric']}, corrected t): {shown}")
        pooled = entry.get("mcnemar") or {}
        if isinstance(pooled.get("p_value"), (int, float)):
            lines.append(f"  {entry['a']} vs {entry['b']} (pooled calls, McNemar): "
                         f"{describe(pooled)}")
    lines.append(f"→ {out_dir / 'report.html'}")
    return lines
