"""Does the GAN augmenter help when data is scarce? CNN with and without ``--gan``, per fold.

A small phantom set (default 20 patients) is split into K patient-grouped folds. For every test
fold T: a GAN is trained on T's training folds only, then the CNN is trained twice (with and
without generated images), exported and scored on fold T with onnxruntime. The per-fold
differences are tested with the paired t-test and the Nadeau–Bengio corrected t-test. Whatever
it shows is what it shows: the test set is never tuned.

    python bench/gan_cv.py --patients 20 --folds 5 --out /tmp/gan-cv
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--gan-epochs", type=int, default=15)
    parser.add_argument("--gan-ratio", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from medzoo.datasets.ingest import ingest
    from medzoo.datasets.synth import write_synthetic
    from medzoo.evaluation import stats
    from medzoo.evaluation.evaluate import evaluate
    from medzoo.export.exporter import export_run
    from medzoo.training.fit import train
    from medzoo.training.gan import train_gan

    out = Path(args.out)
    write_synthetic(out / "dicom", patients=args.patients, size=args.size, seed=args.seed)
    ds = out / "ds"
    ingest(out / "dicom", out / "dicom" / "labels.csv", ds, size=args.size, folds=args.folds,
           seed=args.seed, key_file=out / "pseudonym.key")
    rows = []
    for fold in range(args.folds):
        gan_run = out / f"fold-{fold}" / "gan-run"
        train_gan(ds, gan_run, epochs=args.gan_epochs, test_fold=fold, seed=args.seed, verbose=0)
        row = {"fold": fold}
        for arm, gan in (("plain", None), ("gan", gan_run)):
            run = out / f"fold-{fold}" / arm
            train("cnn", ds, run, test_fold=fold, seed=args.seed, gan=gan,
                  gan_ratio=args.gan_ratio, verbose=0)
            version = export_run(run, out / f"fold-{fold}" / "models", name=arm, evaluator=evaluate)
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
    (out / "gan_cv.json").write_text(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
