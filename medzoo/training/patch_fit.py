"""3D multi-class segmentation training on random patches of native-spacing volumes.

``medzoo train unet|attention_unet|unetr_pp --data DS`` lands here (from
:func:`medzoo.training.fit.train`) when ``DS`` is a native-volume dataset with a plan
(docs/internals.md "Native volumes"): the model takes patches of the plan's ``patch_size`` and
ends in a softmax over the plan's ``label_classes`` (background + K), trained with Dice +
cross-entropy on patches drawn by :mod:`medzoo.datasets.patches` (foreground oversampling,
3D augmentation). The run dir is the same as for 2D runs; ``config.json`` also carries the plan
and the class names, which export writes into the card and ONNX metadata.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from medzoo import __version__
from medzoo.datasets import splits
from medzoo.datasets.volume_records import label_classes, read_plan
from medzoo.errors import InputError

PATCH_MODELS = ("unet", "attention_unet", "unetr_pp")
PATCHES_PER_VOLUME = 8  # training patches per training volume and epoch (at least 2 batches)
VAL_PATCHES_PER_VOLUME = 4


def train_patches(model: str, ds_dir, run_dir, *, info: dict, epochs: int | None = None,
                  batch_size: int = 16, test_fold: int = 0, folds: int | None = None,
                  seed: int = 0, augment: bool = False, learning_rate: float = 1e-3,
                  patience: int = 6, model_options: dict | None = None, init_from=None,
                  freeze: bool = False, patches_per_epoch: int | None = None,
                  verbose: int = 1) -> dict:
    """Train ``model`` on patches of the volume dataset ``ds_dir``; write ``run_dir``.

    Parameters are :func:`medzoo.training.fit.train`'s; in addition ``batch_size`` is capped
    by the plan's (which fits its memory budget) and ``patches_per_epoch`` defaults to
    8 per training volume. Augmentation (mirroring, rotation/scaling, intensity) is on with
    ``augment``.

    Returns
    -------
    dict: the run's ``config.json`` content.

    Raises
    ------
    InputError
        A model that cannot train on patches, a dataset without label maps, or a patch size
        the model cannot take.
    """
    import keras

    from medzoo.datasets.patches import make_patch_dataset
    from medzoo.training import fit
    from medzoo.zoo import losses, registry

    if model not in PATCH_MODELS:
        raise InputError(f"{ds_dir}: a native-volume dataset trains 3D segmenters on patches; "
                         f"expected one of {', '.join(PATCH_MODELS)}. Received: {model!r}")
    if not info.get("has_mask"):
        raise InputError(f"{ds_dir}: model {model!r} needs label maps; the dataset has none")
    ds_dir, run_dir = Path(ds_dir), Path(run_dir)
    plan = read_plan(ds_dir)
    classes = label_classes(plan if plan.get("label_classes") else info)
    patch_size = [int(p) for p in plan["patch_size"]]
    channels = int(info.get("channels", 1))
    input_shape = (*patch_size, channels)
    folds = int(folds or info["folds"])
    split_seed = int(info["seed"])
    parts = fit.split_record_ids(splits.fold_assignment(ds_dir, folds, split_seed), test_fold,
                                 folds)
    batch_size = max(1, min(int(batch_size), int(plan.get("batch_size") or batch_size)))
    patches_per_epoch = int(patches_per_epoch or PATCHES_PER_VOLUME * len(parts["train"]))
    patches_per_epoch = max(patches_per_epoch, 2 * batch_size)
    val_patches = max(batch_size, VAL_PATCHES_PER_VOLUME * len(parts["val"]))
    oversample = float(plan.get("foreground_oversample", 1 / 3))
    model_options = {**(model_options or {}), "label_classes": len(classes)}
    epochs = int(epochs or fit.default_epochs("segmentation"))
    config = {
        "medzoo_version": __version__, "model": model, "task": "segmentation",
        "model_options": model_options, "input_shape": list(input_shape),
        "classes": list(info.get("classes") or []), "label_classes": classes,
        "volume": True, "plan": plan,
        "data": fit.data_section(ds_dir, info, parts),
        "folds": folds, "split_seed": split_seed, "test_fold": test_fold,
        "val_fold": (test_fold + 1) % folds, "seed": seed, "epochs": epochs,
        "batch_size": batch_size, "learning_rate": learning_rate, "patience": patience,
        "augment": bool(augment), "init_from": str(init_from) if init_from else None,
        "freeze_encoder": bool(freeze), "gan": None, "multi_label": False, "balance": None,
        "loss": "dice_ce", "threshold": None,
        "patches": {"per_epoch": patches_per_epoch, "validation": val_patches,
                    "foreground_oversample": oversample},
        "distribution": {"strategy": "default"},
    }
    keras.utils.set_random_seed(seed)
    try:
        net = registry.build(model, input_shape, len(classes), **model_options)
    except ValueError as exc:
        raise InputError(f"{ds_dir}: model {model!r} cannot take the plan's patch size "
                         f"{patch_size} ({exc}); override the plan's patch size") from exc
    try:  # read the volumes before creating the run dir: bad label maps leave nothing behind
        train_ds = make_patch_dataset(ds_dir, parts["train"], patch_size=patch_size,
                                      num_classes=len(classes), batch_size=batch_size,
                                      patches_per_epoch=patches_per_epoch,
                                      foreground_oversample=oversample, augment=augment,
                                      seed=seed)
        val_ds = make_patch_dataset(ds_dir, parts["val"], patch_size=patch_size,
                                    num_classes=len(classes), batch_size=batch_size,
                                    patches_per_epoch=val_patches,
                                    foreground_oversample=oversample, seed=seed + 1,
                                    repeatable=True)
    except ValueError as exc:
        raise InputError(f"{ds_dir}: {exc} (label_classes {classes})") from exc
    fit._prepare_run_dir(run_dir, config)
    if init_from:
        config["init_layers"] = fit.transfer_weights(net, Path(init_from))
    if freeze:
        config["frozen_layers"] = fit.freeze_encoder(net, model)
    # batch Dice (nnU-Net's 3D default): per-patch Dice punishes any lesion probability in the
    # many patches without a lesion, and the network learns to predict none (docs/volumes-model.md)
    net.compile(optimizer=keras.optimizers.Adam(learning_rate),
                loss=losses.DiceCELoss(batch_dice=True), metrics=[losses.ForegroundDice()])
    started = time.monotonic()
    net.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=verbose,
            callbacks=fit._callbacks(run_dir, patience, epochs))
    config["train_seconds"] = round(time.monotonic() - started, 2)
    config["steps_per_epoch"] = math.ceil(patches_per_epoch / batch_size)
    fit._finish(run_dir, config)
    return config
