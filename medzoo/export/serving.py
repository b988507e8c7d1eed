"""Serving functions with the DICOM preprocessing inside the graph.

``serving_default`` takes what a scanner produces — raw stored pixel values plus rescale slope and
intercept, window centre and width and a MONOCHROME1 flag — and applies the chain that ingest
applied before training (DESIGN.md): modality LUT, linear VOI window, inversion, bilinear resize.
``serve_float`` takes images already in the dataset's [0, 1] form. Both return named outputs.
"""

from __future__ import annotations

import tensorflow as tf

RAW_INPUTS = ("pixels", "rescale_slope", "rescale_intercept", "window_center", "window_width",
              "invert")


def raw_input_signature() -> list[tf.TensorSpec]:
    """Specs of ``serving_default``: a batch of same-sized raw images and one scalar per image."""
    per_image = [tf.TensorSpec((None,), tf.float32, name=name) for name in RAW_INPUTS[1:]]
    return [tf.TensorSpec((None, None, None), tf.int32, name="pixels"), *per_image]


def float_input_signature(input_shape) -> list[tf.TensorSpec]:
    return [tf.TensorSpec((None, *input_shape), tf.float32, name="image")]


def dicom_to_image(pixels, rescale_slope, rescale_intercept, window_center, window_width, invert,
                   image_size):
    """Raw stored pixels (B, rows, cols) → float images (B, H, W, 1) in [0, 1].

    Linear VOI per DICOM PS3.3 C.11.2.1.2: y = clip((x − (c − 0.5)) / (w − 1) + 0.5, 0, 1);
    MONOCHROME1 images are inverted after windowing (y → 1 − y).
    """
    def per_image(v):
        return tf.reshape(v, (-1, 1, 1))

    values = tf.cast(pixels, tf.float32) * per_image(rescale_slope) + per_image(rescale_intercept)
    width = tf.maximum(per_image(window_width), 1.0 + 1e-3)
    windowed = (values - (per_image(window_center) - 0.5)) / (width - 1.0) + 0.5
    windowed = tf.clip_by_value(windowed, 0.0, 1.0)
    windowed = tf.where(per_image(invert) > 0.5, 1.0 - windowed, windowed)
    return tf.image.resize(windowed[..., tf.newaxis], image_size, method="bilinear")


def model_outputs(model, images, task: str) -> dict:
    """Named outputs: ``probabilities`` for classifiers; ``mask`` and ``score`` for segmenters."""
    predictions = model(images, training=False)
    if task == "segmentation":
        score = tf.reduce_max(predictions, axis=list(range(1, len(predictions.shape))))
        return {"mask": predictions, "score": score}
    return {"probabilities": predictions}


def make_serving_functions(model, task: str, input_shape, preprocessing=None) -> dict:
    """``{"serving_default": fn, "serve_float": fn}`` as traced ``tf.function``s over ``model``.

    ``preprocessing`` is the dataset's ``preprocessing`` list (denoise → enhance → standardise
    specs applied at ingest); ``serving_default`` replays it after the resize, so raw pixels get
    exactly the images the model was trained on. ``serve_float`` takes images as stored.
    """
    from medzoo.zoo.preprocessing import layers_from_specs

    image_size = tuple(input_shape[:2])
    channels = int(input_shape[-1])
    replay = layers_from_specs(preprocessing or [])

    def serve_float(image):
        return model_outputs(model, image, task)

    def serving_default(pixels, rescale_slope, rescale_intercept, window_center, window_width,
                        invert):
        images = dicom_to_image(pixels, rescale_slope, rescale_intercept, window_center,
                                window_width, invert, image_size)
        for layer in replay:
            images = layer(images)
        if channels != 1:
            images = tf.repeat(images, channels, axis=-1)
        return model_outputs(model, images, task)

    return {
        "serving_default": tf.function(serving_default, input_signature=raw_input_signature()),
        "serve_float": tf.function(serve_float,
                                   input_signature=float_input_signature(input_shape)),
    }
