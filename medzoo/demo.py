"""``medzoo demo``: the whole chain on generated data (synth → ingest → train → export →
evaluate → cv → report), printing where each artefact is and the headline metrics.

The phantoms are ``medium`` difficulty (small low-contrast lesions among vessel-like dots, noise,
anatomy and scanner variation) at 64 px, so the models do not all score 1.000: the folds differ,
the t-tests against chance and between models are defined, and the verdict says something.
"""

from __future__ import annotations

import time
from pathlib import Path

from medzoo.errors import InputError


# The recommended model when finding masks exist (what `medzoo train auto` picks): on the medium
# phantoms the seed's CNN stays near chance while the U-Net, taught by every lesion pixel, does not.
DEMO_MODEL = "unet"


def run_demo(out, *, patients: int = 60, seed: int = 0, cv_folds: int = 3,
             cv_models=("cnn", "unet"), cv_epochs: int = 12, difficulty: str = "medium",
             size: int = 64, model: str = DEMO_MODEL) -> dict:
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

    step(f"1/6 synthesising {difficulty} phantom CT studies (real DICOM files with planted fake PHI)")
    summary = write_synthetic(out / "dicom", patients=patients, seed=seed, size=size,
                              difficulty=difficulty)
    step(f"      {summary['files']} files, {summary['patients']} patients → {out / 'dicom'}")
    step("2/6 ingesting: pixel chain, pseudonyms, patient-grouped folds → TFRecord shards")
    counts = ingest(out / "dicom", out / "dicom" / "labels.csv", out / "dataset", size="auto",
                    key_file=out / "keys" / "pseudonym.key", seed=seed)
    import json

    plan = json.loads((out / "dataset" / "dataset.json").read_text()).get("plan") or {}
    if plan:
        step(f"      --size auto: {plan['reason']}")
    step(f"      loaded {counts['loaded']} / {counts['inputs']}, rejected {counts['rejected']}"
         f" → {out / 'dataset'}")
    step(f"3/6 training {model} with Keras fit (test fold 0 held out)")
    # 15 epochs (not the 2D segmenters' default 40) keep the whole demo under 5 min on 2 cores
    config = train(model, out / "dataset", out / "runs" / model, epochs=15, seed=seed, verbose=0)
    step(f"      {config['epochs_run']} epochs in {config['train_seconds']:.0f}s → "
         f"{out / 'runs' / model} (curves.png)")
    step("4/6 exporting: SavedModel + ONNX, parity check, model card, blessing (default rule: "
         "the validation AUC or Dice must beat chance with 95% confidence)")
    version_dir = export_run(out / "runs" / model, out / "models", evaluator=evaluate)
    parity = (version_dir / "parity.json").read_text()
    status = "BLESSED" if (version_dir / "BLESSED").exists() else "NOT_BLESSED"
    step(f"      {version_dir} ({status}: "
         f"{(version_dir / status).read_text().strip().splitlines()[-1]})")
    step("5/6 evaluating the export with onnxruntime on the held-out patients")
    result = evaluate(version_dir, out / "dataset", out / "eval", split="test")
    metrics = result["metrics"]
    step("      " + ", ".join(f"{k}={metrics[k]:.3f}" for k in
                               ("accuracy", "sensitivity", "specificity", "auc", "dice")
                               if isinstance(metrics.get(k), float)))
    from medzoo.evaluation.report import write_report
    from medzoo.evaluation.explain import explain_dataset

    # Grad-CAM explains classifiers; a segmenter's mask is its own explanation
    explained = (explain_dataset(out / "runs" / model, out / "dataset", out / "eval" / "explain")
                 if config["task"] == "classification" else {})
    games = explained.get("pointing_game") or {}
    if games:
        step("      explanations: heat-map maximum inside the lesion for "
             + ", ".join(f"{g['hit_rate']:.0%} ({k.replace('_', ' ')})" for k, g in games.items())
             + f" of {next(iter(games.values()))['n']} correctly called lesions")
    step(f"      {write_report(out / 'eval')} (metrics, charts"
         f"{', Grad-CAM overlays' if explained else ''})")
    step(f"6/6 {cv_folds}-fold cross-validation of {', '.join(cv_models)} with statistics")
    cv = run_cv(list(cv_models), out / "dataset", out / "cv", folds=cv_folds, seed=seed,
                epochs=cv_epochs)
    for line in cv["lines"]:
        step("      " + line)
    from medzoo.evaluation.report import verdict_sentences

    verdict = verdict_sentences(cv["stats"]) if cv.get("stats") else []
    for line in verdict:
        step("      verdict: " + line)
    step(f"done in {time.monotonic() - started:.0f}s. Open {out / 'cv' / 'report.html'}")
    return {"test_metrics": metrics, "parity": parity, "cv": cv["summary"], "verdict": verdict,
            "seconds": time.monotonic() - started}
