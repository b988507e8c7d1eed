"""Why did the model say that: Grad-CAM (Selvaraju et al. 2017) and occlusion sensitivity.

Grad-CAM here uses HiResCAM weighting (Draelos & Carin 2020): each feature-map cell is weighted
by the gradient of the class score at that cell, element-wise, not by the gradient averaged over
the map. Behind a global max pooling head the gradient exists only where a channel has its
maximum, so the averaged weights of classic Grad-CAM credit a channel's activations everywhere,
including where the score never looks; the element-wise map is each cell's first-order share of
the score. The map is taken at the first pooling's output (:func:`explained_layer`), whose cells
are smaller than a lesion. Occlusion sensitivity, a model-agnostic check, slides a grey patch over
the image and records how much the score drops. Both return a heat map the size of the image,
scaled to [0, 1]. ``explain_dataset`` writes overlays (image, heat map, mask contour) as PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medzoo import fsio
from medzoo.errors import InputError


def _shape(layer):
    return getattr(getattr(layer, "output", None), "shape", None)


def last_conv_layer(model) -> str:
    """The last 2D convolution's activated output: guided Grad-CAM's coarse map, and Grad-CAM's
    map for a model without a pooling layer.

    Walks from the last ``Conv2D`` forward through the layers that keep its shape (normalisation,
    residual addition, activation), so the map is taken after the non-linearity, at the
    convolution's resolution, on the features the head pools.

    Raises
    ------
    InputError
        When the model has no 2D convolution.
    """
    layers = model.layers
    convs = [i for i, layer in enumerate(layers)
             if type(layer).__name__ == "Conv2D" and _shape(layer) is not None
             and len(_shape(layer)) == 4]
    if not convs:
        raise InputError(f"model {model.name!r} has no 2D convolution layer for Grad-CAM")
    chosen = convs[-1]
    same_shape = _shape(layers[chosen])
    # through the residual Add too: in a ResNet the last convolution is a branch, and only the
    # sum with the shortcut (then its ReLU) carries everything the score is computed from
    while chosen + 1 < len(layers) and _shape(layers[chosen + 1]) == same_shape and (
            type(layers[chosen + 1]).__name__ in ("BatchNormalization", "ReLU", "Activation", "Add")):
        chosen += 1
    return layers[chosen].name


def explained_layer(model) -> str:
    """The layer Grad-CAM explains: the first 2D pooling layer's output, else
    :func:`last_conv_layer`.

    In the seed CNN (conv → pool per stage) the first pooling's cells are 2 px and see 4 px of
    the image, less than a lesion's width; the last convolution's cells are 4 px (32-px input)
    and see 18 px, and its units fire off-centre, so its maximum lands on the lesion's rim or
    beyond. Every path from image to score passes through the first pooling of a conv → pool
    stack, so the map there shares out the whole score. (In a late-fusion model the first
    pooling is in the first modality's encoder, and the map shows that modality's share.)

    Raises
    ------
    InputError
        When the model has neither a 2D pooling layer nor a 2D convolution.
    """
    for layer in model.layers:
        shape = _shape(layer)
        if type(layer).__name__ in ("MaxPooling2D", "AveragePooling2D") and shape is not None \
                and len(shape) == 4:
            return layer.name
    return last_conv_layer(model)


def _upsample(maps: np.ndarray, size) -> np.ndarray:
    from medzoo.datasets.dicom import resize_bilinear

    return np.stack([resize_bilinear(m, tuple(size)) for m in maps])


def _normalise(maps: np.ndarray) -> np.ndarray:
    flat = maps.reshape(len(maps), -1)
    low, high = flat.min(1)[:, None, None], flat.max(1)[:, None, None]
    return np.where(high > low, (maps - low) / np.maximum(high - low, 1e-12), 0.0)


def _gradients(model, images, class_index: int, layers: list[str]):
    """(features, d score / d features) per layer of ``layers``, and d score / d images, for the
    class score before the head's activation — Grad-CAM's y^c: a confident prediction
    (probability ≈ 1) still has gradients.

    For a two-class softmax the score is the log-odds ``z_c − z_other`` that the softmax turns into
    the probability; otherwise the class logit ``z_c`` (softmax or sigmoid heads alike).
    """
    import keras
    import tensorflow as tf

    head = model.get_layer("probabilities")
    kernel, bias = (tf.convert_to_tensor(w, tf.float32) for w in head.get_weights()[:2])
    probe = keras.Model(model.inputs,
                        [[model.get_layer(name).output for name in layers], head.input])
    x = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        features, hidden = probe(x, training=False)
        logits = tf.matmul(tf.cast(hidden, tf.float32), kernel) + bias
        score = logits[:, class_index]
        if logits.shape[-1] == 2 and head.activation.__name__ == "softmax":
            score = score - logits[:, 1 - class_index]
    pairs = [(f.numpy().astype(np.float64), tape.gradient(score, f).numpy().astype(np.float64))
             for f in features]
    return pairs, tape.gradient(score, x).numpy()


def grad_cam(model, images: np.ndarray, class_index: int = 1, layer: str | None = None,
             guided: bool = False) -> np.ndarray:
    """Grad-CAM heat maps (N, H, W) in [0, 1] for ``class_index`` of a classifier.

    The map is Grad-CAM with HiResCAM weighting (Draelos & Carin 2020):
    ``max(0, Σ_k ∂score/∂A_k ⊙ A_k)``, each cell of feature map ``A_k`` weighted by the gradient
    at that cell — its first-order share of the score — then resized (bilinear, half-pixel
    centres, which keeps a cell over the pixels it sees) to the image.

    Parameters
    ----------
    model : keras.Model
        A zoo classifier (its last layer a Dense named ``probabilities``).
    images : ndarray (N, H, W, C) float32
    class_index : int
        The class whose evidence is shown (1 = the positive class of a binary model).
    layer : str, optional
        Layer to explain. Default: :func:`explained_layer` for Grad-CAM, :func:`last_conv_layer`
        for guided Grad-CAM.
    guided : bool
        Guided Grad-CAM as the Grad-CAM paper defines it: classic Grad-CAM (feature maps weighted
        by their map-averaged gradients) at the last convolution, a coarse window over the
        finding, times the pixel-level evidence ``max(0, ∂score/∂x · x)`` summed over channels,
        which sharpens it to the pixels that raise the score. Gradient × input stands in for
        guided backpropagation, so every zoo classifier works without rewriting its activations.

    Returns
    -------
    ndarray (N, H, W) float64, each map scaled to [0, 1] (all zeros where nothing raises the score).
    """
    if guided:
        return grad_cam_pair(model, images, class_index, guided_layer=layer)[1]
    return grad_cam_pair(model, images, class_index, layer=layer)[0]


def grad_cam_pair(model, images: np.ndarray, class_index: int = 1, layer: str | None = None,
                  guided_layer: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(grad_cam(..., layer=layer), grad_cam(..., layer=guided_layer, guided=True))`` from one
    pass of gradients (defaults as in :func:`grad_cam`)."""
    layer = layer or explained_layer(model)
    guided_layer = guided_layer or last_conv_layer(model)
    size = np.shape(images)[1:3]
    ((features, grads), (coarse, coarse_grads)), input_grads = _gradients(
        model, images, class_index, [layer, guided_layer])
    hires = np.maximum(np.sum(grads * features, axis=-1), 0.0)
    classic = np.maximum(np.sum(coarse_grads.mean(axis=(1, 2), keepdims=True) * coarse, axis=-1),
                         0.0)  # α_k^c: the gradients averaged over the map
    pixel = np.maximum(np.sum(input_grads * np.asarray(images, np.float32), axis=-1), 0.0)
    return (_normalise(_upsample(hires, size)),
            _normalise(_normalise(_upsample(classic, size)) * pixel))


def occlusion(predict, images: np.ndarray, class_index: int = 1, patch: int = 8,
              stride: int | None = None, fill: float | None = None) -> np.ndarray:
    """Occlusion sensitivity (N, H, W) in [0, 1]: drop of the class score when a patch is greyed.

    ``predict`` maps a batch (N, H, W, C) to probabilities (N, n_classes) — a Keras model, a
    SavedModel signature wrapper or an onnxruntime session wrapper alike.
    """
    stride = stride or patch // 2
    n, height, width = images.shape[:3]
    base = np.asarray(predict(images))[:, class_index]
    heat = np.zeros((n, height, width))
    counts = np.zeros((height, width))
    fill_value = float(images.mean()) if fill is None else fill
    for top in range(0, max(height - patch, 0) + 1, stride):
        for left in range(0, max(width - patch, 0) + 1, stride):
            occluded = images.copy()
            occluded[:, top:top + patch, left:left + patch] = fill_value
            drop = base - np.asarray(predict(occluded))[:, class_index]
            heat[:, top:top + patch, left:left + patch] += drop[:, None, None]
            counts[top:top + patch, left:left + patch] += 1
    heat = np.maximum(heat / np.maximum(counts, 1), 0.0)
    return _normalise(heat)


def pointing_game(heat_maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image: does the heat map's maximum fall inside the lesion mask (Zhang et al. 2018)?"""
    hits = []
    for heat, mask in zip(heat_maps, masks):
        row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
        hits.append(bool(mask[row, col]))
    return np.array(hits)


def overlay_png(image: np.ndarray, heats: dict, path, *, mask: np.ndarray | None = None,
                title: str = "") -> Path:
    """The image, then each heat map of ``heats`` (name → (H, W) map) over it, as one PNG.

    The lesion mask, where known, is drawn as a white contour on every heat-map panel.
    """
    from matplotlib.figure import Figure

    from medzoo.figures import save_figure

    # a bare Figure, not pyplot's: pyplot keeps every figure open until closed, so a dataset's
    # overlays would pile up in memory ("More than 20 figures have been opened")
    fig = Figure(figsize=(3 * (1 + len(heats)), 3.2))
    axes = fig.subplots(1, 1 + len(heats), squeeze=False)[0]
    grey = image[..., 0] if image.ndim == 3 else image
    for ax in axes:
        ax.imshow(grey, cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
    axes[0].set_title("image", fontsize=9)
    for ax, (name, heat) in zip(axes[1:], heats.items()):
        ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        if mask is not None and mask.any():
            ax.contour(mask, levels=[0.5], colors="white", linewidths=1.0)
        ax.set_title(name + (" (white: lesion)" if mask is not None and mask.any() else ""),
                     fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, Path(path))


def confident_cases(labels: np.ndarray, probabilities: np.ndarray, limit: int) -> list[tuple]:
    """The ``limit`` most confident correct and the ``limit`` most confident incorrect predictions.

    Returns ``[(kind, index), ...]`` with kind ``"correct"`` or ``"incorrect"``, each kind ordered
    by the probability of the predicted class, highest first — what a reader checks first: where
    the model is sure and right, and where it is sure and wrong.
    """
    predicted = probabilities.argmax(1)
    confidence = probabilities.max(1)
    cases = []
    for kind, chosen in (("correct", predicted == labels), ("incorrect", predicted != labels)):
        idx = np.flatnonzero(chosen)
        cases += [(kind, int(i)) for i in idx[np.argsort(-confidence[idx], kind="stable")][:limit]]
    return cases


def pointing_games(model, images, masks, class_index: int, heat: np.ndarray,
                   guided: np.ndarray) -> dict:
    """Hit rates of Grad-CAM, guided Grad-CAM and occlusion on the given (positive) images."""
    occluded = occlusion(lambda x: np.asarray(model(x, training=False)), images, class_index,
                         patch=max(4, images.shape[1] // 8))
    games = {}
    for name, maps in (("grad_cam", heat), ("guided_grad_cam", guided), ("occlusion", occluded)):
        hits = pointing_game(maps, masks)
        games[name] = {"n": int(hits.size), "hit_rate": float(hits.mean())}
    return games


def explain_dataset(run_dir, ds_dir, out_dir, *, split: str = "test", limit: int = 4,
                    class_index: int = 1) -> dict:
    """Grad-CAM overlays for a split's most confident correct and incorrect cases; pointing games.

    Parameters
    ----------
    run_dir : a finished classifier run (``model.keras``, ``config.json``)
    ds_dir : its dataset dir
    out_dir : where ``case-<kind>-<n>.png`` and ``explain.json`` go (``medzoo report`` shows them
        when ``out_dir`` is an eval dir's ``explain/`` folder)
    split : ``"test"`` (the run's test fold), ``"fold:I"`` or ``"all"``
    limit : overlays per kind (correct, incorrect)
    class_index : the class whose evidence the maps show (default 1, the first finding)

    Returns
    -------
    dict written as ``explain.json``: ``n``, ``layer`` (Grad-CAM's), ``guided_layer`` (guided
    Grad-CAM's coarse map), ``cases`` (file, kind, label, predicted, probability) and, when the
    records have lesion masks, ``pointing_game`` per method — the share of correctly classified
    positive images whose heat-map maximum lies inside the mask.
    """
    from medzoo.datasets import manifest, records, splits
    from medzoo.training.fit import read_config
    from medzoo.zoo import saving

    config = read_config(run_dir)
    if config["task"] != "classification":
        raise InputError(f"{run_dir}: Grad-CAM explains classifiers; this run is {config['task']}")
    classes = list(config["classes"])
    if not 0 <= class_index < len(classes):
        raise InputError(f"class index must be in 0..{len(classes) - 1} ({', '.join(classes)}). "
                         f"Received: {class_index}")
    model = saving.load_model(Path(run_dir) / "model.keras")
    if split == "all":
        fold, wanted = None, sorted(row["record_id"] for row in manifest.read_index(ds_dir))
    else:
        fold_of = splits.fold_assignment(ds_dir, config["folds"], config["split_seed"])
        fold = config["test_fold"] if split == "test" else _fold_number(split)
        wanted = sorted(r for r, f in fold_of.items() if f == fold)
    recs = list(records.read_records(ds_dir, wanted))
    if not recs:
        raise InputError(f"{ds_dir}: expected records in split {split!r}. Received: none")
    images = np.stack([r["image"] for r in recs])
    probabilities = np.asarray(model(images, training=False))
    labels = np.array([r["label"] for r in recs])
    heat, guided = grad_cam_pair(model, images, class_index)
    summary = {"split": split, "fold": fold, "n": len(recs), "layer": explained_layer(model),
               "guided_layer": last_conv_layer(model),
               "class": classes[class_index], "score": "class score before the head's activation"}
    masks = [r["mask"] for r in recs]
    correct_positive = (probabilities.argmax(1) == class_index) & (labels == class_index)
    if all(m is not None for m in masks) and correct_positive.any():
        summary["pointing_game"] = pointing_games(
            model, images[correct_positive], np.stack(masks)[correct_positive], class_index,
            heat[correct_positive], guided[correct_positive])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cases, counters = [], {"correct": 0, "incorrect": 0}
    for kind, i in confident_cases(labels, probabilities, limit):
        counters[kind] += 1
        name = f"case-{kind}-{counters[kind]}.png"
        predicted = int(probabilities[i].argmax())
        overlay_png(images[i], {"Grad-CAM": heat[i], "guided Grad-CAM": guided[i]}, out_dir / name,
                    mask=masks[i], title=f"{kind}: label {classes[labels[i]]}, predicted "
                                         f"{classes[predicted]} (p={probabilities[i, predicted]:.2f})")
        cases.append({"file": name, "kind": kind, "record_id": recs[i]["record_id"],
                      "label": classes[labels[i]], "predicted": classes[predicted],
                      "probability": float(probabilities[i, predicted])})
    summary["cases"] = cases
    fsio.write_json(out_dir / "explain.json", summary)
    return summary


def _fold_number(split: str) -> int:
    kind, _, number = split.partition(":")
    if kind != "fold" or not number.isdigit():
        raise InputError(f"split must be test, all or fold:I. Received: {split!r}")
    return int(number)
