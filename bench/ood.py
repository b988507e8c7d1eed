"""OOD benchmark: does the export's feature-distance score tell other modalities from CT?

A CT model is trained and exported on phantom chest CTs (``medzoo data synth``, ingest, train,
export: the export fits ``ood.json`` on the training folds and sets its threshold on the
validation fold). Then ``medzoo predict --allow-out-of-domain`` scores, with the same export:

* held-out in-domain images: CT patients generated with another seed (never trained on);
* other modalities: MR, CR and US phantoms of the same anatomy (``synth --modality``).

Printed: the AUROC of the OOD score (Mahalanobis distance of penultimate features) for
"other modality" against held-out CT, overall and per modality; the share of images flagged
at the export's threshold; and, as the baseline measured in the same run, the AUROC of the
maximum-softmax-probability score (1 − max p), the usual OOD baseline. Nothing is asserted.

    python bench/ood.py                               # 40 patients, 64 px, 4 epochs
    python bench/ood.py --patients 60 --size 64 --epochs 8 --model resnet
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

OTHER = ("mr", "cr", "us")


def _msp(row) -> float:
    """1 − max softmax probability of a binary classifier's row (score = p(positive))."""
    p = float(row["score"])
    return 1.0 - max(p, 1.0 - p)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--workdir", help="keep the data, run and export here")
    args = parser.parse_args(argv)

    import numpy as np

    from medzoo import fsio
    from medzoo.datasets.ingest import ingest
    from medzoo.datasets.synth import write_synthetic
    from medzoo.deploy.predict import predict
    from scipy.stats import mannwhitneyu
    from medzoo.export.exporter import export_run
    from medzoo.training.fit import train

    def roc_auc(positive, scores) -> float:  # Mann–Whitney U / (n_pos × n_neg)
        positive = np.asarray(positive, bool)
        u = mannwhitneyu(scores[positive], scores[~positive]).statistic
        return float(u) / (positive.sum() * (~positive).sum())

    work = Path(args.workdir or tempfile.mkdtemp(prefix="medzoo-ood-"))
    n, size = args.patients, args.size
    write_synthetic(work / "train", patients=n, size=size, slices=2, seed=0)
    ingest(work / "train", work / "train" / "labels.csv", work / "ds", size=size, folds=5,
           seed=0, progress=False)
    train(args.model, work / "ds", work / "run", epochs=args.epochs, batch_size=16, seed=0,
          verbose=0)
    export = export_run(work / "run", work / "models")
    test = work / "test"
    write_synthetic(test / "ct", patients=n // 2, size=size, slices=2, seed=101)
    for k, modality in enumerate(OTHER):
        write_synthetic(test / modality, patients=n // 2, modality=modality, size=size,
                        slices=2, seed=102 + k)
    predict(export, test, work / "predictions", progress=False, allow_out_of_domain=True)
    rows = fsio.read_csv(work / "predictions" / "predictions.csv")
    card = fsio.read_json(export / "model_card.json")
    modality_of = {}
    for r in rows:  # which folder a row came from: its out_of_domain reason names the modality
        reason = r["out_of_domain"]
        modality_of[r["image"]] = next((m.upper() for m in OTHER
                                        if f"modality {m.upper()}" in reason), "CT")
    ood = np.array([float(r["ood_score"]) for r in rows])
    msp = np.array([_msp(r) for r in rows])
    flag = np.array([int(r["ood_flag"]) for r in rows])
    kind = np.array([modality_of[r["image"]] for r in rows])
    other = (kind != "CT").astype(int)
    print(f"model {args.model}, {n} training patients, {size} px, {args.epochs} epochs; "
          f"OOD threshold {card['ood']['threshold']:.3g} ({card['ood']['threshold_rule']}, "
          f"{card['ood']['n_fit']} images fitted, {card['ood']['components']} components)")
    print(f"held-out CT images: {int((other == 0).sum())}; other-modality images: "
          f"{int(other.sum())}")
    print(f"{'':24s} {'OOD distance':>13s} {'MSP baseline':>13s} {'flagged':>8s}")
    auc_ood, auc_msp = roc_auc(other, ood), roc_auc(other, msp)
    print(f"{'all other vs CT':24s} {auc_ood:13.3f} {auc_msp:13.3f} "
          f"{flag[other == 1].mean():8.1%}")
    for modality in OTHER:
        pick = (kind == modality.upper()) | (kind == "CT")
        y = (kind[pick] != "CT").astype(int)
        print(f"{modality.upper() + ' vs CT':24s} {roc_auc(y, ood[pick]):13.3f} "
              f"{roc_auc(y, msp[pick]):13.3f} {flag[kind == modality.upper()].mean():8.1%}")
    print(f"{'CT (false flags)':24s} {'':13s} {'':13s} {flag[other == 0].mean():8.1%}")
    above = (f"{(auc_ood - 0.5) / (auc_msp - 0.5):.2f}x the baseline's margin over chance"
             if auc_msp > 0.5 else "the baseline is no better than chance")
    print(f"AUROC of the OOD distance: {auc_ood:.3f} vs {auc_msp:.3f} for the MSP baseline "
          f"({above})")
    print(f"work dir: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
