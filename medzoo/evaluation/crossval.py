"""``medzoo cv``: k-fold cross-validation of zoo models on the same patient-grouped folds.

Per model and fold T: train (test fold T, validation (T+1) mod K) → export → evaluate the export
with onnxruntime on fold T. Every step leaves its files, so a re-run skips what is finished.
Then: ``folds.csv``, ``summary.csv``, ``stats.json`` (tests against chance and between models),
``comparison.png`` (the seed's chart 2) and ``report.html``. The only evaluation module that
reaches into training.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from medzoo import fsio
from medzoo.errors import InputError

CHART_METRICS = ("accuracy", "sensitivity", "specificity")
SUMMARY_METRICS = ("accuracy", "sensitivity", "specificity", "auc", "balanced_accuracy", "dice")


def fold_dir(out_dir: Path, model: str, fold: int) -> Path:
    return out_dir / model / f"fold-{fold}"


def run_fold(model: str, ds_dir: Path, out_dir: Path, fold: int, *, folds: int,
             epochs: int | None, seed: int, verbose: int = 0) -> dict:
    """Train, export and evaluate one model on one fold, skipping steps already finished."""
    from medzoo.evaluation.evaluate import evaluate
    from medzoo.export.exporter import export_run
    from medzoo.training.fit import train

    where = fold_dir(out_dir, model, fold)
    run, base, eval_dir = where / "run", where / "export", where / "eval"
    if (eval_dir / "metrics.json").exists():
        return fsio.read_json(eval_dir / "metrics.json")
    if not (run / "model.keras").exists():
        train(model, ds_dir, run, epochs=epochs, test_fold=fold, folds=folds, seed=seed,
              verbose=verbose)
    version_dir = base / model / "1"
    if not version_dir.exists():
        version_dir = export_run(run, base, name=model, version=1, data_dir=ds_dir)
    return evaluate(version_dir, ds_dir, eval_dir, split="test")


def run_cv(models, ds_dir, out_dir, *, folds: int = 5, epochs: int | None = None, seed: int = 0,
           verbose: int = 0) -> dict:
    """Cross-validate ``models`` on ``ds_dir``; write the CV dir; return a summary.

    Returns
    -------
    dict
        ``folds`` (rows of folds.csv), ``summary`` ({model: {metric: [per-fold values]}}),
        ``stats`` (stats.json content) and ``lines`` (a human summary, one line each).

    Raises
    ------
    InputError
        Unknown model name, duplicate models, or fewer patients than folds.
    """
    from medzoo.datasets import manifest, splits
    from medzoo.zoo import registry

    ds_dir, out_dir = Path(ds_dir), Path(out_dir)
    if len(set(models)) != len(models):
        raise InputError(f"each model may be named once. Received: {' '.join(models)}")
    for name in models:
        try:
            registry.get(name)
        except KeyError as exc:
            raise InputError(str(exc.args[0])) from exc
    if folds < 2:
        raise InputError(f"--folds must be at least 2. Received: {folds}")
    info = manifest.read_dataset_info(ds_dir)
    fold_of = splits.fold_assignment(ds_dir, folds, int(info["seed"]))
    fold_sizes = {f: sum(1 for v in fold_of.values() if v == f) for f in range(folds)}
    out_dir.mkdir(parents=True, exist_ok=True)
    fsio.write_json(out_dir / "cv.json", {"models": list(models), "folds": folds, "seed": seed,
                                          "epochs": epochs, "dataset": info.get("counts", {})})
    rows = []
    for model in models:
        for fold in range(folds):
            result = run_fold(model, ds_dir, out_dir, fold, folds=folds, epochs=epochs,
                              seed=seed, verbose=verbose)
            n_test = fold_sizes[fold]
            row = {"model": model, "fold": fold, "n_test": n_test,
                   "n_train": len(fold_of) - n_test}
            row.update({k: result["metrics"].get(k) for k in SUMMARY_METRICS
                        if isinstance(result["metrics"].get(k), (int, float))})
            rows.append(row)
    columns = ["model", "fold", "n_test", "n_train"] + [
        m for m in SUMMARY_METRICS if any(m in r for r in rows)]
    fsio.write_csv(out_dir / "folds.csv", rows, columns)
    per_model = {m: {k: [r[k] for r in rows if r["model"] == m and r.get(k) is not None]
                     for k in columns[4:]} for m in models}
    fsio.write_csv(out_dir / "summary.csv", _summary_rows(per_model),
                   ["model", "metric", "mean", "sd", "n_folds", "ci_low", "ci_high"])
    stats = cv_statistics(models, rows, out_dir, ds_dir)
    fsio.write_json(out_dir / "stats.json", stats)
    from medzoo.evaluation import charts, report

    charts.plot_model_comparison(
        {m: {k: v for k, v in per_model[m].items() if k in CHART_METRICS} for m in models},
        out_dir / "comparison.png")
    report.write_report(out_dir)
    return {"folds": rows, "summary": per_model, "stats": stats,
            "lines": _lines(per_model, stats, out_dir)}


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


def _pooled_predictions(out_dir: Path, model: str, folds: list[int]) -> dict[str, tuple]:
    """record_id → (label, score) over every test fold of ``model``."""
    pooled = {}
    for fold in folds:
        for row in fsio.read_csv(fold_dir(out_dir, model, fold) / "eval" / "predictions.csv"):
            pooled[row["record_id"]] = (int(row["label"]), float(row["score"]))
    return pooled


def cv_statistics(models, rows: list[dict], out_dir: Path, ds_dir: Path) -> dict:
    """Tests against chance per model and metric, and between every pair of models."""
    from medzoo.evaluation import stats

    folds = sorted({r["fold"] for r in rows})
    labels = [label for label, _ in _pooled_predictions(out_dir, models[0], folds).values()]
    prevalence = float(np.mean(np.asarray(labels) == 1)) if labels else None
    result = {"prevalence": prevalence, "vs_chance": {}, "between_models": []}
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        result["vs_chance"][model] = {}
        for metric in ("accuracy", "sensitivity", "specificity", "auc"):
            values = [r[metric] for r in mine if r.get(metric) is not None]
            if len(values) < 2:
                continue
            chance = stats.chance_level(metric, prevalence)
            result["vs_chance"][model][metric] = stats.one_sample_ttest(values, chance)
    pairs = list(itertools.combinations(models, 2))
    for a, b in pairs:
        ra = sorted((r for r in rows if r["model"] == a), key=lambda r: r["fold"])
        rb = sorted((r for r in rows if r["model"] == b), key=lambda r: r["fold"])
        acc_a, acc_b = [r["accuracy"] for r in ra], [r["accuracy"] for r in rb]
        n_train = [r["n_train"] for r in ra]
        n_test = [r["n_test"] for r in ra]
        pa, pb = _pooled_predictions(out_dir, a, folds), _pooled_predictions(out_dir, b, folds)
        ids = sorted(set(pa) & set(pb))
        y = np.array([pa[i][0] for i in ids])
        sa, sb = np.array([pa[i][1] for i in ids]), np.array([pb[i][1] for i in ids])
        entry = {"a": a, "b": b, "metric": "accuracy",
                 "paired_ttest": stats.paired_ttest(acc_a, acc_b),
                 "corrected_resampled_ttest": stats.corrected_resampled_ttest(
                     acc_a, acc_b, n_train, n_test),
                 "wilcoxon": _safe(stats.wilcoxon_signed_rank, acc_a, acc_b),
                 "mcnemar": stats.mcnemar(y, sa >= 0.5, sb >= 0.5),
                 "delong": _safe(stats.delong_test, y, sa, sb)}
        result["between_models"].append(entry)
    if len(pairs) > 1:
        p_values = [e["corrected_resampled_ttest"]["p_value"] for e in result["between_models"]]
        result["holm_corrected_resampled_ttest"] = stats.holm(p_values)
    return result


def _safe(test, *args) -> dict:
    """Run a test that is undefined on some inputs (all differences zero, one class only)."""
    try:
        return test(*args)
    except (ValueError, ZeroDivisionError) as exc:
        return {"test": getattr(test, "__name__", "test"), "p_value": None,
                "note": f"not defined here: {exc}"}


def _lines(per_model: dict, stats: dict, out_dir: Path) -> list[str]:
    from medzoo.evaluation.stats import describe

    lines = []
    for model, metrics in per_model.items():
        shown = ", ".join(f"{k} {np.mean(v):.3f}±{np.std(v, ddof=1) if len(v) > 1 else 0:.3f}"
                          for k, v in metrics.items() if v)
        lines.append(f"{model}: {shown}")
        test = stats["vs_chance"].get(model, {}).get("accuracy")
        if test:
            lines.append(f"  accuracy vs chance: {describe(test)}")
    for entry in stats["between_models"]:
        lines.append(f"{entry['a']} vs {entry['b']}: "
                     f"{describe(entry['corrected_resampled_ttest'])}")
    lines.append(f"→ {out_dir}/report.html, {out_dir}/comparison.png")
    return lines
