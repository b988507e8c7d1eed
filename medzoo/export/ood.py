"""A cheap model-based out-of-distribution score: how far an image's features lie from the
training images' features.

At export, the penultimate-layer features of the training images (classifiers: the input of the
``probabilities`` layer; segmenters: the deepest feature map, averaged over space) are fitted
with a small probabilistic PCA — the mean, the top ``k`` principal directions with their
variances, and one variance for the rest — and written as ``ood.json``; ``features_raw.onnx``
takes the same raw DICOM inputs as ``model_raw.onnx`` and returns ``features``. The score of an
image is its Mahalanobis distance under that model (:func:`mahalanobis`). The flag threshold is
the 99th percentile of the distances of held-out in-domain images (the validation fold, which
the statistics never saw).

:func:`mahalanobis` and :func:`read_stats` are numpy only: ``medzoo predict`` scores with them
without TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAX_COMPONENTS = 32
THRESHOLD_PERCENTILE = 99.0
MAX_FIT_IMAGES = 4000
STATS_FILE = "ood.json"
FEATURES_FILE = "features_raw.onnx"


# --------------------------------------------------------------------------- numpy only


def fit_stats(features: np.ndarray, max_components: int = MAX_COMPONENTS) -> dict:
    """Probabilistic-PCA statistics of training features ``(n, d)``.

    ``k = min(max_components, d, (n - 1) // 2)`` directions keep their own variance; the other
    ``d - k`` share the mean of the remaining variance (floored at 1e-6 of the mean variance),
    so the distance stays defined with fewer images than features.

    Raises
    ------
    ValueError
        Fewer than 3 images or non-finite features.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 3:
        raise ValueError(f"Expected features of at least 3 images, (n, d). Received: {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("Expected finite features. Received: NaN or infinite values")
    n, d = x.shape
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    variances = s ** 2 / (n - 1)
    k = max(1, min(max_components, d, (n - 1) // 2))
    floor = 1e-6 * max(float(variances.sum()) / d, 1e-12)
    rest = float(variances[k:].sum()) / (d - k) if d > k else 0.0
    return {"mean": mean.tolist(), "components": vt[:k].tolist(),
            "variances": np.maximum(variances[:k], floor).tolist(),
            "residual_variance": max(rest, floor), "n_fit": int(n), "dim": int(d)}


def mahalanobis(stats: dict, features: np.ndarray) -> np.ndarray:
    """Distance of each row of ``features`` ``(n, d)`` from the training features (PPCA)."""
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    centred = x - np.asarray(stats["mean"], dtype=np.float64)
    components = np.asarray(stats["components"], dtype=np.float64)
    projected = centred @ components.T
    inside = np.sum(projected ** 2 / np.asarray(stats["variances"], dtype=np.float64), axis=1)
    residual = np.maximum(np.sum(centred ** 2, axis=1) - np.sum(projected ** 2, axis=1), 0.0)
    return np.sqrt(inside + residual / float(stats["residual_variance"]))


def read_stats(version_dir) -> dict | None:
    """``ood.json`` of an export (None when the export has none)."""
    import json

    path = Path(version_dir) / STATS_FILE
    if not path.is_file() or not (Path(version_dir) / FEATURES_FILE).is_file():
        return None
    try:
        stats = json.loads(path.read_text())
        float(stats["threshold"])
        return stats
    except (OSError, ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------- export (TensorFlow)


def feature_model(model, task: str):
    """A Keras model from the zoo model's input to its penultimate features ``(B, d)``, or None
    (several inputs, or no layer to take them from)."""
    import keras

    if len(model.inputs) != 1:
        return None
    if task == "classification":
        try:
            head = model.get_layer("probabilities")
        except ValueError:
            head = model.layers[-1]
        tensor = head.input
        if isinstance(tensor, (list, tuple)) or len(tensor.shape) != 2:
            return None
        return keras.Model(model.inputs, tensor, name="features")
    deepest, size = None, None
    for layer in model.layers[1:]:
        out = layer.output
        if isinstance(out, (list, tuple)) or len(out.shape) < 4:
            continue
        spatial = int(np.prod([int(v) for v in out.shape[1:-1]]))
        if size is None or spatial < size:
            deepest, size = out, spatial
    if deepest is None:
        return None
    axes = list(range(1, len(deepest.shape) - 1))
    pooled = keras.layers.GlobalAveragePooling2D(name="features_pool")(deepest) if len(axes) == 2 \
        else keras.layers.GlobalAveragePooling3D(name="features_pool")(deepest)
    return keras.Model(model.inputs, pooled, name="features")


def write_features_onnx(features, out_dir: Path, input_shape, preprocessing, opset: int) -> Path:
    """``features_raw.onnx``: the raw DICOM inputs of ``model_raw.onnx`` → ``features``."""
    import json

    import tensorflow as tf
    import tf2onnx

    from medzoo import fsio
    from medzoo.export import serving
    from medzoo.zoo.preprocessing import layers_from_specs

    image_size, channels = tuple(input_shape[:2]), int(input_shape[-1])
    replay = layers_from_specs(preprocessing or [])

    def serve_features(pixels, rescale_slope, rescale_intercept, window_center, window_width,
                       invert):
        images = serving.dicom_to_image(pixels, rescale_slope, rescale_intercept, window_center,
                                        window_width, invert, image_size)
        for layer in replay:
            images = layer(images)
        if channels != 1:
            images = tf.repeat(images, channels, axis=-1)
        return {"features": features(images, training=False)}

    fn = tf.function(serve_features, input_signature=serving.raw_input_signature())
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=opset)
    entry = proto.metadata_props.add()
    entry.key, entry.value = "medzoo.signature", json.dumps("features")
    path = Path(out_dir) / FEATURES_FILE
    fsio.write_bytes(path, proto.SerializeToString())
    return path


def _fold_images(data_dir: Path, config: dict, wanted_folds, limit: int) -> np.ndarray:
    from medzoo.datasets import records, splits

    fold_of = splits.fold_assignment(data_dir, config["folds"], config["split_seed"])
    ids = sorted(r for r, f in fold_of.items() if f in wanted_folds)
    if len(ids) > limit:  # evenly spread, so every part of the data is represented
        ids = [ids[i] for i in np.linspace(0, len(ids) - 1, limit).astype(int)]
    images = [rec["image"] for rec in records.read_records(data_dir, ids)]
    return np.stack(images).astype(np.float32) if images else np.zeros((0,), np.float32)


def export_ood(model, out_dir: Path, data_dir: Path, config: dict, *, opset: int) -> dict:
    """Fit the feature statistics on the training folds, choose the threshold on the validation
    fold, write ``ood.json`` and ``features_raw.onnx`` into ``out_dir``.

    Returns
    -------
    dict
        The card's ``ood`` section: ``method``, ``features``, ``dim``, ``components``, ``n_fit``,
        ``n_threshold``, ``threshold``, ``threshold_rule``, ``files`` — or ``{"available":
        False, "reason": …}`` when the model or the data do not allow it (nothing written).
    """
    from medzoo import fsio

    if not (Path(data_dir) / "dataset.json").is_file():
        return {"available": False, "reason": "training dataset not found at export"}
    task, input_shape = config["task"], tuple(config["input_shape"])
    features = feature_model(model, task)
    if features is None or len(input_shape) != 3:
        return {"available": False, "reason": "no single-input 2D penultimate layer"}
    test, val = config["test_fold"], config["val_fold"]
    train_folds = [f for f in range(config["folds"]) if f not in (test, val)]
    train = _fold_images(Path(data_dir), config, train_folds, MAX_FIT_IMAGES)
    held = _fold_images(Path(data_dir), config, [val], MAX_FIT_IMAGES)
    if len(train) < 3 or len(held) < 1:
        return {"available": False, "reason": "too few training or validation images"}
    stats = fit_stats(np.asarray(features.predict(train, batch_size=64, verbose=0)))
    held_scores = mahalanobis(stats, np.asarray(features.predict(held, batch_size=64, verbose=0)))
    threshold = float(np.percentile(held_scores, THRESHOLD_PERCENTILE))
    write_features_onnx(features, out_dir, input_shape, config["data"].get("preprocessing"),
                        opset)
    stats.update(threshold=threshold, held_out_scores={
        "n": int(len(held_scores)), "median": float(np.median(held_scores)),
        "max": float(held_scores.max())})
    fsio.write_json(Path(out_dir) / STATS_FILE, stats)
    return {"available": True, "method": "Mahalanobis distance of penultimate features "
            "(probabilistic PCA of the training folds)",
            "features": "probabilities layer input" if task == "classification"
            else "deepest feature map, spatial mean",
            "dim": stats["dim"], "components": len(stats["components"]),
            "n_fit": stats["n_fit"], "n_threshold": int(len(held_scores)),
            "threshold": round(threshold, 4),
            "threshold_rule": f"{THRESHOLD_PERCENTILE:g}th percentile of the validation fold's "
                              "distances",
            "files": [STATS_FILE, FEATURES_FILE]}
