"""Serving functions with the DICOM preprocessing inside the graph.

``serving_default`` takes what a scanner produces — raw stored pixel values plus rescale slope and
intercept, window centre and width and a MONOCHROME1 flag — and applies the chain that ingest
applied before training (DESIGN.md): modality LUT, linear VOI window, inversion, bilinear resize.
``serve_float`` takes images already in the dataset's [0, 1] form. Both return named outputs.

A model trained on several input columns (one modality each, e.g. CT and MR stacked as channels:
:func:`medzoo.export.inputs.declared_inputs`) gets a raw group per modality instead:
``ct_pixels, ct_rescale_slope, …, mr_pixels, …``; each modality is windowed and resized on its
own, then the channels are stacked in training order.
"""

from __future__ import annotations

import tensorflow as tf

RAW_INPUTS = ("pixels", "rescale_slope", "rescale_intercept", "window_center", "window_width",
              "invert")


def raw_input_signature(inputs=None) -> list[tf.TensorSpec]:
    """Specs of ``serving_default``: a batch of same-sized raw images and one scalar per image
    (per declared input when ``inputs`` lists several)."""
    from medzoo.export.inputs import raw_input_names

    return [tf.TensorSpec((None, None, None), tf.int32, name=name) if name.endswith("pixels")
            else tf.TensorSpec((None,), tf.float32, name=name)
            for name in raw_input_names(inputs)]


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


def make_serving_functions(model, task: str, input_shape, preprocessing=None,
                           inputs=None) -> dict:
    """``{"serving_default": fn, "serve_float": fn}`` as traced ``tf.function``s over ``model``.

    ``preprocessing`` is the dataset's ``preprocessing`` list (denoise → enhance → standardise
    specs applied at ingest); ``serving_default`` replays it after the resize, so raw pixels get
    exactly the images the model was trained on. ``serve_float`` takes images as stored.
    ``inputs`` (:func:`medzoo.export.inputs.declared_inputs`): with two or more, ``serving_default``
    takes one raw group per input (``<name>_pixels`` …) and stacks them as channels.
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

    if inputs and len(inputs) > 1:
        groups = [tuple(range(i * len(RAW_INPUTS), (i + 1) * len(RAW_INPUTS)))
                  for i in range(len(inputs))]
        per_input = [len(d["channels"]) for d in inputs]

        def serving_multi(*args):
            # each modality has its own stored range, window and grid; stack after resizing
            parts = []
            for group, width in zip(groups, per_input):
                image = dicom_to_image(*(args[k] for k in group), image_size)
                parts.append(tf.repeat(image, width, axis=-1) if width != 1 else image)
            images = tf.concat(parts, axis=-1)
            for layer in replay:
                images = layer(images)
            return model_outputs(model, images, task)

        serving_default = serving_multi  # noqa: F811 (the multi-input form replaces it)
    return {
        "serving_default": tf.function(serving_default,
                                       input_signature=raw_input_signature(inputs)),
        "serve_float": tf.function(serve_float,
                                   input_signature=float_input_signature(input_shape)),
    }
