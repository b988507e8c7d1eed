"""Why did the model say that: Grad-CAM (Selvaraju et al. 2017) and occlusion sensitivity.

Grad-CAM weights the feature maps of the last convolution by the gradient of the class score and
keeps the positive part; occlusion sensitivity, a model-agnostic check, slides a grey patch over
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
    """The layer Grad-CAM explains: the last 2D convolution's activated output.

    Walks from the last ``Conv2D`` forward through the layers that keep its shape (normalisation,
    activation), so the map is taken after the non-linearity, at the convolution's resolution.
    """
    layers = model.layers
    convs = [i for i, layer in enumerate(layers)
             if type(layer).__name__ == "Conv2D" and _shape(layer) is not None
             and len(_shape(layer)) == 4]
    if not convs:
        raise InputError(f"model {model.name!r} has no 2D convolution layer for Grad-CAM")
    chosen = convs[-1]
    same_shape = _shape(layers[chosen])
    while chosen + 1 < len(layers) and _shape(layers[chosen + 1]) == same_shape and (
            type(layers[chosen + 1]).__name__ in ("BatchNormalization", "ReLU", "Activation")):
        chosen += 1
    return layers[chosen].name


def _upsample(maps: np.ndarray, size) -> np.ndarray:
    from medzoo.datasets.dicom import resize_bilinear

    return np.stack([resize_bilinear(m, tuple(size)) for m in maps])


def _normalise(maps: np.ndarray) -> np.ndarray:
    flat = maps.reshape(len(maps), -1)
    low, high = flat.min(1)[:, None, None], flat.max(1)[:, None, None]
    return np.where(high > low, (maps - low) / np.maximum(high - low, 1e-12), 0.0)


def grad_cam(model, images: np.ndarray, class_index: int = 1, layer: str | None = None):
    """Grad-CAM heat maps (N, H, W) in [0, 1] for ``class_index`` of a classifier.

    Parameters
    ----------
    model : keras.Model
        A zoo classifier (output ``probabilities``).
    images : ndarray (N, H, W, C) float32
    class_index : int
        The class whose evidence is shown (1 = the positive class of a binary model).
    layer : str, optional
        Convolution layer to explain (default: the last one).
    """
    import keras
    import tensorflow as tf

    layer = layer or last_conv_layer(model)
    probe = keras.Model(model.inputs, [model.get_layer(layer).output, model.outputs[0]])
    images = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        features, probabilities = probe(images, training=False)
        score = probabilities[:, class_index]
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cams = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1)).numpy()
    return _normalise(_upsample(cams, images.shape[1:3]))


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


def overlay_png(image: np.ndarray, heat: np.ndarray, path, *, mask: np.ndarray | None = None,
                title: str = "") -> Path:
    """Image | heat map over image (+ mask contour) as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medzoo.evaluation.charts import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
    grey = image[..., 0] if image.ndim == 3 else image
    for ax in axes:
        ax.imshow(grey, cmap="gray", vmin=0, vmax=1)
        ax.set_axis_off()
    axes[1].imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    if mask is not None and mask.any():
        axes[1].contour(mask, levels=[0.5], colors="white", linewidths=1.0)
    axes[0].set_title("image", fontsize=9)
    axes[1].set_title("Grad-CAM" + (" (white: lesion mask)" if mask is not None else ""),
                      fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, Path(path))


def explain_dataset(run_dir, ds_dir, out_dir, *, split: str = "test", limit: int = 16,
                    class_index: int = 1) -> dict:
    """Grad-CAM overlays for up to ``limit`` images of a split; pointing-game score when masks exist.

    Writes ``out_dir/gradcam-<record>.png`` and ``out_dir/explain.json``; returns the summary.
    """
    from medzoo.datasets import records, splits
    from medzoo.training.fit import read_config
    from medzoo.zoo import saving

    config = read_config(run_dir)
    if config["task"] != "classification":
        raise InputError(f"{run_dir}: Grad-CAM explains classifiers; this run is "
                         f"{config['task']}")
    model = saving.load_model(Path(run_dir) / "model.keras")
    fold_of = splits.fold_assignment(ds_dir, config["folds"], config["split_seed"])
    fold = config["test_fold"] if split == "test" else int(split.split(":")[1])
    wanted = sorted(r for r, f in fold_of.items() if f == fold)
    recs = list(records.read_records(ds_dir, wanted))
    if not recs:
        raise InputError(f"{ds_dir}: no records in fold {fold}")
    images = np.stack([r["image"] for r in recs])
    probabilities = np.asarray(model(images, training=False))
    heat = grad_cam(model, images, class_index)
    predicted = probabilities.argmax(1)
    labels = np.array([r["label"] for r in recs])
    correct_positive = (predicted == class_index) & (labels == class_index)
    masks = [r["mask"] for r in recs]
    summary = {"split": split, "fold": fold, "n": len(recs), "layer": last_conv_layer(model)}
    if all(m is not None for m in masks) and correct_positive.any():
        chosen_masks = np.stack(masks)[correct_positive]
        hits = pointing_game(heat[correct_positive], chosen_masks)
        summary["pointing_game"] = {"n": int(hits.size), "hit_rate": float(hits.mean())}
        occluded = occlusion(lambda x: np.asarray(model(x, training=False)),
                             images[correct_positive], class_index,
                             patch=max(4, images.shape[1] // 8))
        hits = pointing_game(occluded, chosen_masks)
        summary["pointing_game_occlusion"] = {"n": int(hits.size), "hit_rate": float(hits.mean())}
    order = np.argsort(-probabilities[:, class_index])[:limit]
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    written = []
    for i in order:
        name = f"gradcam-{recs[i]['record_id']}.png"
        overlay_png(images[i], heat[i], Path(out_dir) / name, mask=masks[i],
                    title=f"p({config['classes'][class_index]})={probabilities[i, class_index]:.2f}"
                          f", label {config['classes'][labels[i]]}")
        written.append(name)
    summary["overlays"] = written
    fsio.write_json(Path(out_dir) / "explain.json", summary)
    return summary
