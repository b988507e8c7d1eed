"""Train a zoo model with Keras ``fit`` on a dataset dir, writing a run dir (DESIGN.md).

The run dir holds ``config.json`` (everything needed to rebuild and re-run), ``model.keras``
(best weights by validation loss), ``history.csv``, ``curves.png``, ``checkpoints/``, ``backup/``
(Keras ``BackupAndRestore``: re-running the same command after a crash resumes) and ``logs/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from medzoo import __version__, fsio, roc
from medzoo.datasets import manifest, splits
from medzoo.errors import InputError
from medzoo.training.distribute import make_distribution

CONFIG_KEYS_THAT_MUST_MATCH = ("model", "data", "test_fold", "folds", "seed", "model_options",
                               "epochs", "batch_size", "learning_rate", "augment", "init_from",
                               "freeze_encoder", "gan", "balance", "loss")

BALANCE_MODES = ("weights", "sample")
LOSSES = ("ce", "focal")


# Layer-name prefixes that make up each model's encoder (``--freeze-encoder``).
ENCODER_PREFIXES = {
    "cnn": ("stage",), "resnet": ("stem", "stage"), "unet": ("enc", "bottleneck"),
    "attention_unet": ("enc", "bottleneck"), "unetr_pp": ("stem_", "patch_embed", "down", "stage"),
    "fusion_early": ("encoder_",), "fusion_late": ("modality",),
}


def freeze_encoder(net, model: str) -> list[str]:
    """Make the encoder layers of ``net`` untrainable; return their names."""
    prefixes = ENCODER_PREFIXES.get(model)
    if prefixes is None:
        raise InputError(f"--freeze-encoder: no encoder is defined for model {model!r}; "
                         f"expected one of {', '.join(sorted(ENCODER_PREFIXES))}")
    frozen = [layer.name for layer in net.layers if layer.name.startswith(prefixes)]
    for layer in net.layers:
        if layer.name in frozen:
            layer.trainable = False
    return frozen


def split_record_ids(fold_of: dict, test_fold: int, folds: int) -> dict[str, list[str]]:
    """Record ids of the train, validation and test parts for ``test_fold`` (DESIGN.md Splits).

    The test fold is ``test_fold``; validation is ``(test_fold + 1) mod folds``; training is the rest.
    """
    if not 0 <= test_fold < folds:
        raise InputError(
            f"--test-fold must be in 0..{folds - 1} for {folds} folds. Received: {test_fold}"
        )
    val_fold = (test_fold + 1) % folds
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for record_id, fold in sorted(fold_of.items()):
        key = "test" if fold == test_fold else "val" if fold == val_fold else "train"
        parts[key].append(record_id)
    for key, ids in parts.items():
        if not ids:
            raise InputError(f"the {key} part of fold {test_fold} is empty; use fewer folds")
    return parts


def dataset_fingerprint(ds_dir) -> str:
    """sha256 of ``dataset.json`` and ``index.csv``: which data a model saw, with no PHI."""
    digest = hashlib.sha256()
    for name in ("dataset.json", "index.csv"):
        digest.update(Path(ds_dir, name).read_bytes())
    return digest.hexdigest()


def data_section(ds_dir: Path, info: dict, parts: dict) -> dict:
    """A run config's ``data``: the dataset trained on (folder, fingerprint, ``dataset.json``'s
    window, size, preprocessing, key fingerprint and pixel statistics) and the records per part."""
    return {"dir": str(ds_dir.resolve()), "fingerprint": dataset_fingerprint(ds_dir),
            "window": info.get("window"), "image_size": list(info["image_size"]),
            "preprocessing": info.get("preprocessing") or [],
            "key_fingerprint": info.get("key_fingerprint"),
            "counts": {k: len(v) for k, v in parts.items()},
            "pixel_stats": info.get("pixel_stats")}


def default_epochs(task: str) -> int:
    return 20 if task == "classification" else 15


# 2D segmenters: a few hundred records make ~7 steps an epoch, and at 1e-3 over 15 epochs the
# U-Net was still learning at the end (hard phantoms: held-out Dice 0.67); at 3e-3 over 40
# epochs it converges (Dice 0.9+, docs/difficulty.md). Volumes (patch_fit) keep their own.
SEGMENTATION_2D_EPOCHS = 40
SEGMENTATION_2D_LEARNING_RATE = 3e-3


def default_learning_rate(task: str) -> float:
    return SEGMENTATION_2D_LEARNING_RATE if task == "segmentation" else 1e-3


def train(model: str, ds_dir, run_dir, *, epochs: int | None = None, batch_size: int = 16,
          test_fold: int = 0, folds: int | None = None, seed: int = 0, augment: bool = False,
          learning_rate: float | None = None, patience: int = 6, model_options: dict | None = None,
          init_from=None, freeze: bool = False, gan=None, gan_ratio: float = 1.0,
          balance: str | None = None, loss: str = "ce", threshold: str | None = None,
          strategy: str = "default", verbose: int = 1, schedule: str = "cosine") -> dict:
    """Train zoo model ``model`` on ``ds_dir``; write the run dir; return its config.

    Parameters
    ----------
    model : str
        A registered zoo name (``medzoo models``).
    ds_dir, run_dir : path-like
        Dataset dir from ``medzoo data ingest``; run dir to create (or to resume after a crash).
    epochs, batch_size, learning_rate, patience : training schedule (early stopping on val loss).
        Defaults: 20 epochs at 1e-3 for classifiers, 40 epochs at 3e-3 for 2D segmenters
        (volumes: 15 at 1e-3).
    schedule : {"cosine", "constant"}
        Learning rate over the run: ``cosine`` (default) warms up linearly from a tenth of
        ``learning_rate`` over the first epoch (at most a tenth of the run), then follows a
        cosine down to 5 % of it, so the first large steps of a fresh network do not throw it
        into a dead region and the last epochs settle; ``constant``, the seed's Adam at
        ``learning_rate`` throughout.
    test_fold, folds : the held-out fold and the fold count (default: the dataset's).
    seed : weight initialisation and shuffling.
    augment : random flips/shifts in the input pipeline (image and mask alike).
    model_options : dict
        Options of the zoo builder (``medzoo models NAME`` lists them), as values or as text
        (``{"widths": "16,32"}``); ``"preset"`` names one of the model's presets. Checked by
        :func:`medzoo.zoo.options.resolve`; ``config.json`` stores the resolved ones (preset
        expanded, tuples as lists), which rebuild the same model.
    init_from : path-like, optional
        An earlier run dir; layers with matching names and shapes start from its weights.
    freeze : bool
        Keep the encoder's weights fixed (``--freeze-encoder``; typically with ``init_from``).
    gan, gan_ratio : path-like, float
        A GAN run (``medzoo gan train``) made for the same split; ``gan_ratio`` × n_train
        generated images join the training part only — never validation or test.
    balance : {None, "weights", "sample"}
        Class imbalance: ``weights`` weighs the loss by n / (K · n_class) over the training part;
        ``sample`` draws every class equally often (``tf.data.Dataset.sample_from_datasets``),
        an epoch being as many batches as the training part fills.
    loss : {"ce", "focal"}
        Cross-entropy (binary for multi-label datasets) or focal loss (γ = 2).
    threshold : str, optional
        Decision threshold chosen on the validation fold with the best model: ``youden``
        (maximal sensitivity + specificity − 1) or ``sens:0.95`` / ``spec:0.95`` (the highest
        threshold reaching that sensitivity / specificity). Stored as ``config["threshold"]``;
        ``medzoo export`` writes it into the model card (``metrics.threshold``), which evaluate
        and predict use. Two-class, single-label classifiers only.
    strategy : {"default", "mirrored", "multiworker"}
        ``tf.distribute`` strategy (:mod:`medzoo.training.distribute`); ``multiworker`` reads
        ``TF_CONFIG``, shards the training part across workers and lets only the chief write
        ``run_dir``. ``batch_size`` is the global batch, split across replicas.

    Returns
    -------
    dict
        The run's ``config.json`` content, with ``history`` (last epoch's metrics) added.

    Raises
    ------
    InputError
        Unknown model or option (or an option value of the wrong type), a dataset dir that is
        not one, a task the dataset cannot feed (segmentation without masks), or a run dir that
        already holds a finished, different run.
    """
    import keras

    from medzoo.zoo import options, registry

    try:
        entry = registry.get(model)
    except KeyError as exc:
        raise InputError(str(exc.args[0])) from exc
    if entry.task not in registry.PREDICTOR_TASKS:
        raise InputError(f"Argument `model` must be one of: "
                         f"{', '.join(registry.names(registry.PREDICTOR_TASKS))}. Received: "
                         f"model={model!r} (the {entry.task} model trains with `medzoo gan train`)")
    model_options = options.resolve(model, model_options)  # refused before anything is written
    ds_dir, run_dir = Path(ds_dir), Path(run_dir)
    info = manifest.read_dataset_info(ds_dir)
    if _is_volume_dataset(info):  # native-spacing volumes: 3D patches (training/patch_fit.py)
        from medzoo.training.patch_fit import train_patches

        if gan or balance or loss != "ce" or threshold or strategy != "default":
            raise InputError("--gan, --balance, --loss, --threshold and --strategy do not apply "
                             "to patch training on a native-volume dataset")
        return train_patches(model, ds_dir, run_dir, info=info, epochs=epochs,
                             batch_size=batch_size, test_fold=test_fold, folds=folds, seed=seed,
                             augment=augment, learning_rate=learning_rate or 1e-3,
                             patience=patience,
                             model_options=model_options, init_from=init_from, freeze=freeze,
                             verbose=verbose)
    if entry.task == "segmentation" and not info.get("has_mask"):
        raise InputError(
            f"{ds_dir}: model {model!r} needs lesion masks; the dataset has none "
            "(add a mask column to labels.csv and ingest again)"
        )
    folds = int(folds or info["folds"])
    split_seed = int(info["seed"])
    fold_of = splits.fold_assignment(ds_dir, folds, split_seed)
    parts = split_record_ids(fold_of, test_fold, folds)
    if len(info["image_size"]) != 2:  # volumes: 3D patch training is volumes-model's (issue 16)
        raise InputError(
            f"{ds_dir}: a volume dataset (image_size {info['image_size']}, D x H x W); model "
            f"{model!r} trains on 2D images (H x W). Ingest without --volumes/--spacing for 2D "
            "slices, or train a 3D segmenter on it")
    height, width = info["image_size"]
    input_shape = (height, width, int(info["channels"]))
    classes = list(info["classes"])
    epochs = int(epochs or (SEGMENTATION_2D_EPOCHS if entry.task == "segmentation"
                            else default_epochs(entry.task)))
    learning_rate = float(learning_rate or default_learning_rate(entry.task))
    if schedule not in ("cosine", "constant"):  # before anything is written
        raise InputError(f"--schedule must be cosine or constant. Received: {schedule!r}")
    dist = make_distribution(strategy)  # before any TensorFlow operation runs
    multi_label = bool(info.get("multi_label"))
    _check_imbalance_options(entry.task, classes, multi_label, balance, loss, threshold, gan)
    if multi_label:  # sigmoid head: one independent probability per finding
        model_options = {**(model_options or {}), "multi_label": True}
    config = {
        "medzoo_version": __version__,
        "model": model,
        "task": entry.task,
        "model_options": model_options or {},
        "input_shape": list(input_shape),
        "classes": classes,
        "data": data_section(ds_dir, info, parts),
        "folds": folds, "split_seed": split_seed, "test_fold": test_fold,
        "val_fold": (test_fold + 1) % folds,
        "seed": seed, "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
        "patience": patience, "augment": bool(augment),
        "init_from": str(init_from) if init_from else None,
        "freeze_encoder": bool(freeze),
        "gan": {"run": str(gan), "ratio": gan_ratio} if gan else None,
        "multi_label": multi_label, "balance": balance, "loss": loss,
        "threshold": {"rule": threshold} if threshold else None,
    }
    config["distribution"] = dist.describe()
    keras.utils.set_random_seed(seed)
    try:  # build before writing anything: a shape the model cannot take leaves no run dir behind
        with dist.scope():
            net = registry.build(model, input_shape, len(classes), **(model_options or {}))
    except ValueError as exc:  # a size the model cannot take, or an option value it refuses
        chosen = f" with options {json.dumps(model_options)}" if model_options else ""
        raise InputError(f"{ds_dir}: model {model!r}{chosen} cannot take this dataset's images "
                         f"({exc})") from exc
    except TypeError as exc:
        if not multi_label:
            raise
        raise InputError(f"{ds_dir}: the dataset is multi-label; model {model!r} has no "
                         f"multi-label (sigmoid) head ({exc})") from exc
    run_dir = dist.writable_run_dir(run_dir)  # a temporary folder on non-chief workers
    _prepare_run_dir(run_dir, config)
    target = "mask" if entry.task == "segmentation" else "label"
    train_ds, val_ds = training_datasets(ds_dir, parts, config, target=target)
    if init_from:
        config["init_layers"] = transfer_weights(net, Path(init_from))
    if freeze:
        config["frozen_layers"] = freeze_encoder(net, model)
    rate, config["schedule"] = learning_rate, schedule
    if schedule == "cosine":
        rate, config["lr_schedule"] = lr_schedule(learning_rate, epochs,
                                                  -(-len(parts["train"]) // int(batch_size)))
    _compile(net, entry.task, rate, loss=loss, multi_label=multi_label)
    class_weight = None
    if balance == "weights":
        class_weight = class_weights(ds_dir, parts["train"], len(classes))
        config["class_weight"] = {classes[k]: round(w, 6) for k, w in class_weight.items()}
    started = time.monotonic()
    dist.plan_sharding(ds_dir, config)
    dist.fit(net, train_ds, validation_data=val_ds, epochs=epochs, verbose=verbose, shuffle=False,
             callbacks=_callbacks(run_dir, patience, epochs), class_weight=class_weight)
    config["train_seconds"] = round(time.monotonic() - started, 2)
    if threshold:
        config["threshold"] = validation_threshold(run_dir / "checkpoints" / "best.keras",
                                                   val_ds, threshold, classes=classes)
    _finish(run_dir, config)
    dist.cleanup()
    return config


def _is_volume_dataset(info: dict) -> bool:
    from medzoo.datasets.volume_records import is_volume_dataset

    return is_volume_dataset(info)


def training_datasets(ds_dir, parts: dict, config: dict, *, target: str):
    """The training and validation ``tf.data`` pipelines of a run.

    Generated images (``config["gan"]``) are mixed into the training part only; the validation
    pipeline reads nothing but the validation fold's records. ``config["balance"] == "sample"``
    draws training classes equally often; multi-label datasets feed the multi-hot ``labels``.
    """
    from medzoo.datasets import pipeline

    batch_size, seed = config["batch_size"], config["seed"]
    if target == "label" and config.get("multi_label"):
        target = "labels"
    if config.get("balance") == "sample":
        labels_of = {row["record_id"]: int(row["label"]) for row in manifest.read_index(ds_dir)}
        train_ds = pipeline.make_balanced_dataset(
            ds_dir, parts["train"], [labels_of[r] for r in parts["train"]],
            batch_size=batch_size, seed=seed, augment=config["augment"])
    else:
        train_ds = pipeline.make_dataset(ds_dir, parts["train"], target=target,
                                         batch_size=batch_size, shuffle=True, seed=seed,
                                         augment=config["augment"])
    val_ds = pipeline.make_dataset(ds_dir, parts["val"], target=target, batch_size=batch_size,
                                   shuffle=False, seed=seed)
    if config.get("balance"):
        # Weigh the validation loss by class as well: the best checkpoint and early stopping
        # follow val_loss, and a plain one on a 1:9 fold would pick "always normal" again.
        val_ds = _weigh_by_class(val_ds, class_weights(ds_dir, parts["val"],
                                                       len(config["classes"])))
    if config.get("gan"):
        import tensorflow as tf

        from medzoo.training import gan

        if target != "label":
            raise InputError("--gan: generated images have no masks; use it with classifiers")
        labels_of = {row["record_id"]: int(row["label"]) for row in manifest.read_index(ds_dir)}
        train_labels = np.array([labels_of[r] for r in parts["train"]])
        images, labels = gan.synthetic_training_set(config["gan"]["run"], config, train_labels,
                                                    config["gan"]["ratio"], seed)
        config["gan"]["n_generated"] = int(len(labels))
        generated = tf.data.Dataset.from_tensor_slices((images, labels.astype("int32")))
        total = len(parts["train"]) + len(labels)
        train_ds = (train_ds.unbatch().concatenate(generated)
                    .shuffle(total, seed=seed, reshuffle_each_iteration=True)
                    .batch(batch_size).prefetch(tf.data.AUTOTUNE))
    return train_ds, val_ds


def lr_schedule(learning_rate: float, epochs: int, steps_per_epoch: int):
    """Linear warm-up (one epoch, at most a tenth of the run) then cosine decay to 5 %.

    Returns the Keras schedule and its description for config.json.
    """
    import keras

    total = max(1, int(epochs) * max(1, int(steps_per_epoch)))
    warmup = min(max(1, int(steps_per_epoch)), max(1, total // 10))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=learning_rate / 10.0, decay_steps=max(1, total - warmup), alpha=0.05,
        warmup_target=learning_rate, warmup_steps=warmup)
    return schedule, {"kind": "warmup_cosine", "peak": learning_rate, "warmup_steps": warmup,
                      "total_steps": total, "final_fraction": 0.05}


def _compile(net, task: str, learning_rate, *, loss: str = "ce",
             multi_label: bool = False) -> None:
    import keras

    from medzoo.zoo import losses

    if task == "segmentation":
        objective, metrics = losses.DiceBCELoss(), [losses.DiceScore()]
    elif multi_label:
        objective = (losses.BinaryFocalLoss(alpha=None) if loss == "focal"
                     else keras.losses.BinaryCrossentropy())
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy"),
                   keras.metrics.AUC(multi_label=True, name="auc")]
    else:
        objective = (losses.SparseFocalLoss() if loss == "focal"
                     else keras.losses.SparseCategoricalCrossentropy())
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    net.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=objective, metrics=metrics)


def _check_imbalance_options(task, classes, multi_label, balance, loss, threshold, gan) -> None:
    """Refuse combinations of ``--balance``/``--loss``/``--threshold`` that cannot mean anything."""
    if balance is not None and balance not in BALANCE_MODES:
        raise InputError(f"--balance must be one of {', '.join(BALANCE_MODES)}. Received: {balance!r}")
    if loss not in LOSSES:
        raise InputError(f"--loss must be one of {', '.join(LOSSES)}. Received: {loss!r}")
    if task != "classification" and (balance or loss != "ce" or threshold):
        raise InputError("--balance, --loss and --threshold apply to classifiers; "
                         f"this model's task is {task}")
    if multi_label and balance:
        raise InputError("--balance: a multi-label dataset has no single class per image to "
                         "weigh or sample by; use --loss focal")
    if balance == "sample" and gan:
        raise InputError("--balance sample cannot be combined with --gan (both change the "
                         "training mix); use --balance weights")
    if threshold is not None:
        parse_threshold_rule(threshold)
        if not multi_label and len(classes) != 2:  # multi-label: one cut-off per finding
            raise InputError("--threshold chooses one cut-off on the positive-class score: it "
                             "needs two classes, or a multi-label dataset (one per finding). "
                             f"Received: {len(classes)} single-label classes")


def parse_threshold_rule(rule: str) -> tuple[str, float | None]:
    """``"youden"`` → ``("youden", None)``; ``"sens:0.95"`` → ``("sens", 0.95)`` (also ``spec:``)."""
    text = str(rule).strip().lower()
    if text == "youden":
        return "youden", None
    kind, _, value = text.partition(":")
    try:
        target = float(value)
    except ValueError:
        target = -1.0
    if kind not in ("sens", "spec") or not 0.0 < target <= 1.0:
        raise InputError("--threshold must be youden, sens:X or spec:X with 0 < X <= 1. "
                         f"Received: {rule!r}")
    return kind, target


def choose_threshold(rule: str, y_true, scores) -> float:
    """The decision threshold (positive when ``score >= threshold``) that ``rule`` picks.

    ``youden``: maximal Youden's J on these scores. ``sens:X``: the highest threshold whose
    sensitivity is at least X. ``spec:X``: the lowest threshold whose specificity is at least X.
    Raises ``InputError`` when the scores hold one class only.
    """
    kind, target = parse_threshold_rule(rule)
    y = np.asarray(y_true, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if y.min(initial=1) == y.max(initial=0):
        raise InputError("--threshold: the validation fold holds one class only; no threshold "
                         "can be chosen on it")
    if kind == "youden":
        return float(roc.youden_threshold(y, s))
    if kind == "sens":
        positives = np.sort(s[y == 1])[::-1]
        return float(positives[int(np.ceil(target * positives.size - 1e-9)) - 1])
    negatives = np.sort(s[y == 0])
    k = int(np.ceil(target * negatives.size - 1e-9))  # negatives below the threshold
    return float(np.nextafter(negatives[k - 1], np.inf)) if k else float(negatives[0])


def validation_threshold(model_path: Path, val_ds, rule: str, classes=None) -> dict:
    """Choose ``rule``'s threshold with the saved model on the validation pipeline.

    Multi-label runs (multi-hot labels) get one threshold per finding, ``per_class``
    {class: value}; a class with one outcome only in the validation fold gets none (deployment
    then uses 0.5 for it).
    """
    from medzoo.datasets.manifest import NEGATIVE_NAMES
    from medzoo.zoo import saving

    best = saving.load_model(model_path)
    labels, outputs = [], []
    for images, y, *_ in val_ds:  # a balanced run's batches also carry class weights
        outputs.append(np.asarray(best(images, training=False)))
        labels.append(np.asarray(y))
    y, p = np.concatenate(labels), np.concatenate(outputs)
    if y.ndim == 2:  # multi-label: each finding's own cut-off on its own probability
        names = list(classes or range(y.shape[1]))
        per_class = {}
        for k, name in enumerate(names):
            if str(name).lower() in NEGATIVE_NAMES or not 0 < int(y[:, k].sum()) < len(y):
                continue
            per_class[str(name)] = choose_threshold(rule, y[:, k], p[:, k])
        return {"rule": rule, "per_class": per_class, "split": "validation", "n": int(len(y))}
    s = p[:, 1]
    value = choose_threshold(rule, y, s)
    return {"rule": rule, "value": value, "split": "validation", "n": int(y.size),
            "n_pos": int(y.sum())}


def _weigh_by_class(dataset, weights: dict[int, float]):
    """``(image, label)`` batches → ``(image, label, weight of the label's class)``."""
    import tensorflow as tf

    table = tf.constant([weights[k] for k in range(len(weights))], tf.float32)
    return dataset.map(lambda x, y: (x, y, tf.gather(table, tf.cast(y, tf.int32))))


def class_weights(ds_dir, record_ids, num_classes: int) -> dict[int, float]:
    """Keras ``class_weight`` from the training part: n / (K · n_class) per class present."""
    labels_of = {row["record_id"]: int(row["label"]) for row in manifest.read_index(ds_dir)}
    counts = np.bincount([labels_of[r] for r in record_ids], minlength=num_classes)
    total, present = counts.sum(), max(1, int((counts > 0).sum()))
    return {k: float(total / (present * n)) if n else 0.0 for k, n in enumerate(counts)}


def _callbacks(run_dir: Path, patience: int, epochs: int) -> list:
    import keras

    from medzoo.training.backup import make_backup_callback, make_best_checkpoint

    return [
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        make_best_checkpoint(run_dir / "checkpoints" / "best.keras", run_dir / "history.csv"),
        # Small validation folds are noisy early on: never stop in the first half of the schedule.
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                      start_from_epoch=epochs // 2),
        keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False, profile_batch=0),
        # last: after the epoch is logged and saved
        make_backup_callback(run_dir / "backup", run_dir / "history.csv"),
    ]


def _prepare_run_dir(run_dir: Path, config: dict) -> None:
    """Create the run dir, or accept it for resuming when it holds the same unfinished run."""
    config_path = run_dir / "config.json"
    if config_path.exists():
        previous = fsio.read_json(config_path)
        same = all(previous.get(k) == config.get(k) for k in CONFIG_KEYS_THAT_MUST_MATCH)
        if (run_dir / "model.keras").exists():
            raise InputError(f"{run_dir}: holds a finished run already; choose a new --out")
        if not same:
            raise InputError(
                f"{run_dir}: holds an unfinished run with other settings; resume it with the "
                "same command or choose a new --out"
            )
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise InputError(f"{run_dir}: exists and is not a medzoo run dir; choose a new --out")
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    fsio.write_json(config_path, config)


def _finish(run_dir: Path, config: dict) -> None:
    """Promote the best checkpoint to ``model.keras`` and write history, curves and config."""
    from medzoo.training import curves

    history = curves.read_history(run_dir / "history.csv")
    best = run_dir / "checkpoints" / "best.keras"
    with fsio.atomic_path(run_dir / "model.keras", suffix=".keras") as tmp:
        tmp.write_bytes(best.read_bytes())
    config["epochs_run"] = len(history)
    config["history"] = history[-1] if history else {}
    config["best_val_loss"] = min((row["val_loss"] for row in history), default=None)
    config["environment"] = _environment()
    curves.plot(history, run_dir / "curves.png")
    fsio.write_json(run_dir / "config.json", config)


def transfer_weights(net, source_run: Path) -> list[str]:
    """Copy weights from ``source_run``'s model into ``net`` for layers of equal name and shapes.

    Returns the names of the layers that were initialised; raises ``InputError`` when none match.
    """
    from medzoo.zoo import saving

    source = saving.load_model(source_run / "model.keras")
    by_name = {layer.name: layer for layer in source.layers}
    copied = []
    for layer in net.layers:
        other = by_name.get(layer.name)
        if other is None or not layer.weights:
            continue
        mine, theirs = layer.get_weights(), other.get_weights()
        if len(mine) == len(theirs) and all(a.shape == b.shape for a, b in zip(mine, theirs)):
            layer.set_weights(theirs)
            copied.append(layer.name)
    if not copied:
        raise InputError(f"{source_run}: no layer of its model matches the new model by name and shape")
    return copied


def _environment() -> dict:
    import keras
    import tensorflow as tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "cpus": os.cpu_count()}


def read_config(run_dir) -> dict:
    """The ``config.json`` of a finished run; ``InputError`` when ``run_dir`` is not one."""
    path = Path(run_dir) / "config.json"
    if not path.is_file() or not (Path(run_dir) / "model.keras").is_file():
        raise InputError(f"{run_dir}: expected a finished run dir (config.json + model.keras)")
    return json.loads(path.read_text())
