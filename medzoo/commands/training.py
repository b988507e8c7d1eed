"""``medzoo models``, ``train`` and ``gan``: the zoo and training (TensorFlow, imported late)."""

from __future__ import annotations

import json
import os

from medzoo.commands.arguments import add_command
from medzoo.errors import MedzooError


def add_models(sub) -> None:
    """``medzoo models [NAME]``."""
    p = add_command(sub, "models", "list the zoo: name, task, inputs, outputs, parameters; "
                    "with NAME: its options, their defaults and types, and presets",
                    "medzoo models unet")
    p.add_argument("name", nargs="?", metavar="NAME", help="one model: its options and presets")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--size", type=int, default=64, help="input size for parameter counts")


def cmd_models(args) -> int:
    """``medzoo models [NAME]``: the zoo, or one model's options; returns 0."""
    from medzoo.zoo import describe, options

    if args.name:
        try:
            info = options.describe_options(args.name)
        except KeyError as exc:
            raise MedzooError(str(exc.args[0])) from None
        print(json.dumps(info, indent=2) if args.json else options.render_options(info))
        return 0
    rows = describe.describe_all(size=args.size)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['name']:<18} {row['task']:<15} {row['parameters']:>10,}  {row['description']}")
    return 0


def add_train(sub) -> None:
    """``medzoo train MODEL``."""
    p = add_command(sub, "train", "train a zoo model with Keras fit → run dir",
                    "medzoo train cnn --data ds --out runs/cnn --epochs 12 --test-fold 0")
    p.add_argument("model")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--test-fold", type=int, default=0)
    p.add_argument("--learning-rate", type=float,
                   help="default 1e-3; 3e-3 for 2D segmenters")
    p.add_argument("--schedule", default="cosine", choices=["cosine", "constant"],
                   help="cosine (default): 1-epoch warm-up then cosine decay; constant: the seed's")
    p.add_argument("--augment", action="store_true")
    p.add_argument("--init-from", help="earlier run dir to start matching layers from")
    p.add_argument("--freeze-encoder", action="store_true",
                   help="keep the encoder's weights fixed (fine-tune the rest)")
    p.add_argument("--gan", help="GAN run whose samples join the training folds only")
    p.add_argument("--gan-ratio", type=float, default=1.0,
                   help="generated images per real training image (default 1.0)")
    p.add_argument("--balance", choices=["weights", "sample"],
                   help="class imbalance: loss weights from the training part, or balanced sampling")
    p.add_argument("--loss", default="ce", choices=["ce", "focal"],
                   help="cross-entropy (default) or focal loss")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="builder option (repeatable; `medzoo models MODEL` lists them), e.g. "
                        "widths=16,32,64 or preset=large")
    p.add_argument("--threshold", metavar="RULE",
                   help="decision threshold chosen on validation: youden, sens:0.95 or spec:0.95 "
                        "(stored in config.json and the model card)")
    p.add_argument("--target-sensitivity", type=float, metavar="X",
                   help="same as --threshold sens:X: the highest threshold reaching sensitivity X")
    p.add_argument("--strategy", default="default", choices=["default", "mirrored", "multiworker"],
                   help="tf.distribute strategy; multiworker reads TF_CONFIG (one process per "
                        "worker; --batch-size is the global batch; the chief writes --out)")
    p.add_argument("--seed", type=int, default=0)


def _threshold_rule(args) -> str | None:
    if args.target_sensitivity is None:
        return args.threshold
    if args.threshold:
        raise MedzooError("give --threshold or --target-sensitivity, not both. "
                          f"Received: --threshold {args.threshold} --target-sensitivity "
                          f"{args.target_sensitivity}")
    return f"sens:{args.target_sensitivity}"


def _auto_model(ds_dir) -> str:
    """``train auto``: the model the plan's data calls for (see docs/difficulty.md)."""
    try:
        with open(os.path.join(ds_dir, "dataset.json"), encoding="utf-8") as handle:
            info = json.load(handle)
    except (OSError, ValueError):
        raise MedzooError(f"{ds_dir}: expected a dataset dir with dataset.json") from None
    size = info.get("image_size", ["?"])[0]
    if info.get("has_mask") and not info.get("multi_label") and len(info.get("classes", [])) == 2:
        choice = "unet"
        why = ("finding masks exist: a U-Net learns from every lesion pixel and scores the image "
               "by its largest mask probability (medium phantoms: AUC 1.00 where cnn is near chance)")
    else:
        choice = "resnet"
        why = "no finding masks: a residual CNN with batch normalisation"
    print(f"train auto chose {choice} at {size} px (the dataset's plan): {why}")
    return choice


def cmd_train(args) -> int:
    """``medzoo train MODEL`` (``auto``: chosen from the dataset); returns 0."""
    from medzoo.training.fit import train
    from medzoo.zoo.options import parse_pairs

    if args.model == "auto":
        args.model = _auto_model(args.data)
    config = train(args.model, args.data, args.out, epochs=args.epochs,
                   model_options=parse_pairs(args.option, [args.model])[args.model],
                   batch_size=args.batch_size, test_fold=args.test_fold, seed=args.seed,
                   augment=args.augment, learning_rate=args.learning_rate,
                   schedule=args.schedule,
                   init_from=args.init_from, freeze=args.freeze_encoder, gan=args.gan,
                   gan_ratio=args.gan_ratio, balance=args.balance, loss=args.loss,
                   threshold=_threshold_rule(args), strategy=args.strategy)
    last = {k: round(v, 4) for k, v in config.get("history", {}).items() if k != "epoch"}
    print(f"trained {args.model} for {config['epochs_run']} epochs → {args.out}  {last}")
    return 0


def add_gan(sub) -> None:
    """``medzoo gan``: train, quality, sample."""
    gan = add_command(sub, "gan", "train a conditional GAN augmenter, or sample from one",
                      "medzoo gan train --data ds --out runs/gan")
    gan_sub = gan.add_subparsers(dest="gan_command", metavar="STEP", required=True)
    p = add_command(gan_sub, "train", "train the class-conditional GAN on the training folds",
                    "medzoo gan train --data ds --out runs/gan --epochs 40 --test-fold 0")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--steps-per-epoch", type=int, default=100)
    p.add_argument("--classifier", help="run dir of a classifier trained on the real images: "
                                        "logs the Fréchet distance per epoch")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--test-fold", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p = add_command(gan_sub, "quality", "judge samples with a classifier trained on real images",
                    "medzoo gan quality runs/gan --classifier runs/cnn")
    p.add_argument("gan_run")
    p.add_argument("--classifier", required=True)
    p.add_argument("--n", type=int, default=64, help="samples per class")
    p.add_argument("--seed", type=int, default=0)
    p = add_command(gan_sub, "sample", "write N generated images as a (synthetic) dataset dir",
                    "medzoo gan sample runs/gan --n 100 --out generated")
    p.add_argument("gan_run")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)


def cmd_gan(args) -> int:
    """``medzoo gan STEP``: train, quality or sample; returns 0."""
    from medzoo.training import gan

    if args.gan_command == "train":
        config = gan.train_gan(args.data, args.out, epochs=args.epochs,
                               batch_size=args.batch_size, test_fold=args.test_fold,
                               steps_per_epoch=args.steps_per_epoch, seed=args.seed,
                               classifier_run=args.classifier)
        print(f"trained the GAN for {config['epochs_run']} epochs on {config['n_train']} "
              f"training images → {args.out} (samples/, curves.png)")
        return 0
    if args.gan_command == "quality":
        q = gan.gan_quality(args.gan_run, args.classifier, n_per_class=args.n, seed=args.seed)
        for name, row in q["per_class"].items():
            print(f"{name}: classified as {name} {row['classified_as_intended']:.0%}, "
                  f"Fréchet distance {row['frechet_distance']:.3f}")
        t = q["two_sample_test"]
        print(f"real vs synthetic: accuracy {t['accuracy']:.2f} on {t['n_test']}, "
              f"p={t['p_value']:.3g} → {args.gan_run}/quality.json")
        return 0
    info = gan.sample_to_dataset(args.gan_run, args.n, args.out, seed=args.seed)
    print(f"wrote {info['counts']['records']} generated images (synthetic) → {args.out}")
    return 0
