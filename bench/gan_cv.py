"""Does the GAN augmenter help when data is scarce? CNN with and without ``--gan``, per fold.

A small phantom set (default 20 patients) is split into K patient-grouped folds. For every test
fold T: a GAN is trained on T's training folds only, then the CNN is trained twice (with and
without generated images), exported and scored on fold T with onnxruntime. The per-fold
differences are tested with the paired t-test and the Nadeau–Bengio corrected t-test. Whatever
it shows is what it shows: the test set is never tuned.

    python bench/gan_cv.py --patients 20 --folds 5 --out /tmp/gan-cv

``--difficulty medium`` (issue 19's re-measurement, where the classifiers do not score AUC 1.000)
generates the harder phantoms; ``--score keras`` scores each arm's Keras model on its held-out
fold directly instead of exporting it (cheaper; the same probabilities up to parity) and adds
DeLong and McNemar on the pooled out-of-fold predictions of the two arms (same records):

    PYTHONPATH=$PWD nice -n 10 python bench/gan_cv.py --difficulty medium --size 64 \\
        --patients 24 --slices 2 --folds 4 --model resnet --epochs 15 --gan-epochs 4 \\
        --score keras --out /tmp/remeasure/gan
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--gan-epochs", type=int, default=15)
    parser.add_argument("--gan-ratio", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--difficulty", default="easy", choices=("easy", "medium", "hard"))
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--epochs", type=int, default=None, help="classifier epochs")
    parser.add_argument("--gan-steps", type=int, default=100, help="GAN steps per epoch")
    parser.add_argument("--score", default="export", choices=("export", "keras"))
    args = parser.parse_args()

    from medzoo.datasets.ingest import ingest
    from medzoo.datasets.synth import write_synthetic
    from medzoo.evaluation import stats
    from medzoo.evaluation.evaluate import evaluate
    from medzoo.export.exporter import export_run
    from medzoo.training.fit import train
    from medzoo.training.gan import train_gan

    out = Path(args.out)
    write_synthetic(out / "dicom", patients=args.patients, size=args.size, slices=args.slices,
                    seed=args.seed, difficulty=args.difficulty)
    ds = out / "ds"
    ingest(out / "dicom", out / "dicom" / "labels.csv", ds, size=args.size, folds=args.folds,
           seed=args.seed, key_file=out / "pseudonym.key")
    rows, pooled = [], {"y": [], "plain": [], "gan": []}
    for fold in range(args.folds):
        gan_run = out / f"fold-{fold}" / "gan-run"
        train_gan(ds, gan_run, epochs=args.gan_epochs, test_fold=fold, seed=args.seed,
                  steps_per_epoch=args.gan_steps, verbose=0)
        row = {"fold": fold}
        for arm, gan in (("plain", None), ("gan", gan_run)):
            run = out / f"fold-{fold}" / arm
            train(args.model, ds, run, epochs=args.epochs, test_fold=fold, seed=args.seed,
                  gan=gan, gan_ratio=args.gan_ratio, verbose=0)
            if args.score == "keras":
                y, scores = _held_out_scores(run, ds)
                metrics = {"accuracy": float(np.mean((scores >= 0.5) == (y == 1))),
                           "auc": stats.delong_roc_variance(y, scores)["auc"]}
                if arm == "plain":
                    pooled["y"] += y.tolist()
                pooled[arm] += scores.tolist()
            else:
                version = export_run(run, out / f"fold-{fold}" / "models", name=arm,
                                     evaluator=evaluate)
                metrics = evaluate(version, ds, out / f"fold-{fold}" / f"eval-{arm}",
                                   charts=False)["metrics"]
            row.update({f"{arm}_accuracy": metrics["accuracy"], f"{arm}_auc": metrics["auc"]})
        rows.append(row)
        print(json.dumps(row), flush=True)
    from medzoo.datasets import splits

    fold_of = splits.fold_assignment(ds, args.folds, args.seed)
    n_test = [sum(1 for f in fold_of.values() if f == fold) for fold in range(args.folds)]
    n_train = [len(fold_of) - n for n in n_test]
    result = {"rows": rows}
    for metric in ("accuracy", "auc"):
        plain = [r[f"plain_{metric}"] for r in rows]
        with_gan = [r[f"gan_{metric}"] for r in rows]
        result[metric] = {
            "plain_mean": sum(plain) / len(plain), "gan_mean": sum(with_gan) / len(with_gan),
            "paired_ttest": stats.paired_ttest(with_gan, plain),
            "corrected_resampled_ttest": stats.corrected_resampled_ttest(
                with_gan, plain, n_train, n_test),
        }
        print(f"{metric}: plain {result[metric]['plain_mean']:.3f}, with GAN "
              f"{result[metric]['gan_mean']:.3f}; paired t: "
              f"{stats.describe(result[metric]['paired_ttest'])}; corrected: "
              f"{stats.describe(result[metric]['corrected_resampled_ttest'])}")
    if pooled["y"]:
        y = np.array(pooled["y"])
        plain, with_gan = np.array(pooled["plain"]), np.array(pooled["gan"])
        result["pooled"] = {
            "n": int(y.size), "n_positive": int(y.sum()),
            "delong": stats.delong_test(y, with_gan, plain),
            "mcnemar": stats.mcnemar(y, (with_gan >= 0.5).astype(int), (plain >= 0.5).astype(int)),
        }
        print(f"pooled out-of-fold ({y.size} records): AUC plain "
              f"{result['pooled']['delong']['auc_b']:.3f}, with GAN "
              f"{result['pooled']['delong']['auc_a']:.3f}; DeLong: "
              f"{stats.describe(result['pooled']['delong'])}; McNemar: "
              f"{stats.describe(result['pooled']['mcnemar'])}")
    (out / "gan_cv.json").write_text(json.dumps(result, indent=2, default=float))


def _held_out_scores(run, ds):
    """(labels, class-1 probabilities) of a run's Keras model on its own test fold."""
    from medzoo.datasets import records, splits
    from medzoo.training.fit import read_config
    from medzoo.zoo import saving

    config = read_config(run)
    fold_of = splits.fold_assignment(ds, config["folds"], config["split_seed"])
    recs = list(records.read_records(
        ds, sorted(r for r, f in fold_of.items() if f == config["test_fold"])))
    probs = np.asarray(saving.load_model(Path(run) / "model.keras").predict(
        np.stack([r["image"] for r in recs]), verbose=0))
    return np.array([int(r["label"]) for r in recs]), probs[:, 1].astype(np.float64)


if __name__ == "__main__":
    main()
