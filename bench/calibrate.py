"""Calibration table: held-out AUC of zoo classifiers per difficulty level, size and seed.

    PYTHONPATH=$PWD python bench/calibrate.py --levels medium --models cnn resnet \
        --seeds 0 1 --patients 48 --slices 2 --out /tmp/calib

Each (level, data seed) gets its own synth + ``ingest --size auto`` (or ``--size N``); each model
is trained with ``medzoo train``'s defaults (unless ``--epochs``) on folds 1.. and scored on the
held-out fold 0 (record-level AUC of the Keras model, the number ``medzoo evaluate`` reports
before export). Prints one markdown row per (level, model, size): mean ± sd over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def held_out_scores(run_dir: Path, ds_dir: Path) -> dict:
    """Held-out AUC (and, for segmenters, mean Dice over records with a mask, as evaluate)."""
    from medzoo.datasets import records, splits
    from medzoo.evaluation.metrics import dice_per_image
    from medzoo.roc import roc_auc
    from medzoo.training.fit import read_config
    from medzoo.zoo import saving

    config = read_config(run_dir)
    fold_of = splits.fold_assignment(ds_dir, config["folds"], config["split_seed"])
    wanted = sorted(r for r, f in fold_of.items() if f == config["test_fold"])
    recs = list(records.read_records(ds_dir, wanted))
    model = saving.load_model(run_dir / "model.keras")
    out = np.asarray(model.predict(np.stack([r["image"] for r in recs]), verbose=0))
    # segmenters: the image's score is the largest mask probability (as medzoo evaluate)
    scores = out.reshape(len(out), -1).max(1) if out.ndim == 4 else out[:, 1]
    result = {"auc": float(roc_auc(np.array([int(r["label"]) for r in recs]), scores))}
    if out.ndim == 4 and all(r.get("mask") is not None for r in recs):
        truth = np.stack([np.asarray(r["mask"]).reshape(out.shape[1:3]) for r in recs]) > 0
        result["dice"] = float(dice_per_image(out[..., 0] >= 0.5, truth).mean())
    return result


def _mean_sd(values) -> str:
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", nargs="+", default=["medium"])
    parser.add_argument("--models", nargs="+", default=["cnn", "resnet"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--patients", type=int, default=48)
    parser.add_argument("--slices", type=int, default=2)
    parser.add_argument("--size", default="auto")
    parser.add_argument("--synth-size", type=int,
                        help="native size of the phantoms (default: the level's, 64/128/192)")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--train-option", action="append", default=[], metavar="KEY=VALUE",
                        help="extra keyword for medzoo.training.fit.train (JSON value)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    from medzoo.datasets.ingest import ingest
    from medzoo.datasets.synth import write_synthetic
    from medzoo.training.fit import train

    extra = {k: json.loads(v) for k, v in (o.split("=", 1) for o in args.train_option)}
    out, results = Path(args.out), {}
    for level in args.levels:
        for seed in args.seeds:
            root = out / f"{level}-s{seed}"
            from medzoo.datasets.difficulty import DEFAULT_SIZE

            if not (root / "ds" / "dataset.json").is_file():  # same level and seed: reuse
                write_synthetic(root / "dicom", patients=args.patients, slices=args.slices,
                                size=args.synth_size or DEFAULT_SIZE[level], seed=seed,
                                difficulty=level)
                ingest(root / "dicom", root / "dicom" / "labels.csv", root / "ds",
                       size=args.size if args.size == "auto" else int(args.size),
                       folds=args.folds, seed=seed, key_file=root / "k.key")
            size = json.loads((root / "ds" / "dataset.json").read_text())["image_size"][0]
            for model in args.models:
                started = time.monotonic()
                config = train(model, root / "ds", root / model, epochs=args.epochs, seed=seed,
                               verbose=0, **extra)
                scores = held_out_scores(root / model, root / "ds")
                print(json.dumps({"level": level, "seed": seed, "model": model, "size": size,
                                  **{k: round(v, 4) for k, v in scores.items()},
                                  "epochs_run": config["epochs_run"],
                                  "seconds": round(time.monotonic() - started, 1)}), flush=True)
                results.setdefault((level, model, size), []).append(scores)
    print("| level | model | size | held-out AUC (mean ± sd) | held-out Dice (mean ± sd) | seeds |")
    print("|---|---|---|---|---|---|")
    for (level, model, size), runs in results.items():
        cells = [_mean_sd([r[k] for r in runs if k in r]) for k in ("auc", "dice")]
        print(f"| {level} | {model} | {size} | {cells[0]} | {cells[1]} | {len(runs)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
