"""``medzoo demo``: the whole chain on generated data (synth → ingest → train → export →
evaluate → cv → report), printing where each artefact is and the headline metrics."""

from __future__ import annotations

import time
from pathlib import Path

from medzoo.errors import InputError


def run_demo(out, *, patients: int = 60, seed: int = 0, cv_folds: int = 3,
             cv_models=("cnn", "unet"), cv_epochs: int = 12) -> dict:
    """Run the chain into ``out`` (which must be new or empty); return the headline figures."""
    from medzoo.datasets.ingest import ingest
    from medzoo.datasets.synth import write_synthetic
    from medzoo.evaluation.crossval import run_cv
    from medzoo.evaluation.evaluate import evaluate
    from medzoo.export.exporter import export_run
    from medzoo.training.fit import train

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out}: exists and is not empty; choose a new --out")
    started = time.monotonic()

    def step(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)

    step("1/6 synthesising phantom CT studies (real DICOM files with planted fake PHI)")
    summary = write_synthetic(out / "dicom", patients=patients, seed=seed)
    step(f"      {summary['files']} files, {summary['patients']} patients → {out / 'dicom'}")
    step("2/6 ingesting: pixel chain, pseudonyms, patient-grouped folds → TFRecord shards")
    counts = ingest(out / "dicom", out / "dicom" / "labels.csv", out / "dataset", size=64,
                    key_file=out / "keys" / "pseudonym.key", seed=seed)
    step(f"      loaded {counts['loaded']} / {counts['inputs']}, rejected {counts['rejected']}"
         f" → {out / 'dataset'}")
    step("3/6 training the CNN classifier with Keras fit (test fold 0 held out)")
    config = train("cnn", out / "dataset", out / "runs" / "cnn", seed=seed, verbose=0)
    step(f"      {config['epochs_run']} epochs in {config['train_seconds']:.0f}s → "
         f"{out / 'runs' / 'cnn'} (curves.png)")
    step("4/6 exporting: SavedModel + ONNX, parity check, model card, blessing")
    version_dir = export_run(out / "runs" / "cnn", out / "models", bless_if=["auc>=0.85"],
                             evaluator=evaluate)
    parity = (version_dir / "parity.json").read_text()
    step(f"      {version_dir} ({'BLESSED' if (version_dir / 'BLESSED').exists() else 'NOT_BLESSED'})")
    step("5/6 evaluating the export with onnxruntime on the held-out patients")
    result = evaluate(version_dir, out / "dataset", out / "eval", split="test")
    metrics = result["metrics"]
    step("      " + ", ".join(f"{k}={metrics[k]:.3f}" for k in
                               ("accuracy", "sensitivity", "specificity", "auc")))
    from medzoo.evaluation.report import write_report
    from medzoo.evaluation.explain import explain_dataset

    explained = explain_dataset(out / "runs" / "cnn", out / "dataset", out / "eval" / "explain")
    games = explained.get("pointing_game") or {}
    if games:
        step("      explanations: heat-map maximum inside the lesion for "
             + ", ".join(f"{g['hit_rate']:.0%} ({k.replace('_', ' ')})" for k, g in games.items())
             + f" of {next(iter(games.values()))['n']} correctly called lesions")
    step(f"      {write_report(out / 'eval')} (metrics, charts, Grad-CAM overlays)")
    step(f"6/6 {cv_folds}-fold cross-validation of {', '.join(cv_models)} with statistics")
    cv = run_cv(list(cv_models), out / "dataset", out / "cv", folds=cv_folds, seed=seed,
                epochs=cv_epochs)
    for line in cv["lines"]:
        step("      " + line)
    step(f"done in {time.monotonic() - started:.0f}s. Open {out / 'cv' / 'report.html'}")
    return {"test_metrics": metrics, "parity": parity, "cv": cv["summary"],
            "seconds": time.monotonic() - started}
