"""Write a SavedModel that TF Serving loads as is, with named signatures (Keras ExportArchive)."""

from __future__ import annotations

from pathlib import Path

from medzoo.export import serving


def write_saved_model(model, out_dir, *, task: str, input_shape, preprocessing=None,
                      inputs=None) -> list[str]:
    """Write ``model`` to ``out_dir`` (``saved_model.pb`` + ``variables/``).

    Signatures: ``serving_default`` (raw DICOM pixels + rescale/window parameters) and
    ``serve_float`` (float images in [0, 1]). Returns the signature names. ``inputs``: the
    declared inputs (:func:`medzoo.export.inputs.declared_inputs`); with several,
    ``serving_default`` takes one raw group per modality.
    """
    import keras
    import tensorflow as tf

    # ExportArchive's meta-graph writer warns about Keras collections it skips; harmless noise.
    tf.get_logger().setLevel("ERROR")
    functions = serving.make_serving_functions(model, task, input_shape, preprocessing, inputs)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, fn in functions.items():
        archive.add_endpoint(name, fn)
    archive.write_out(str(Path(out_dir)), verbose=False)
    return sorted(functions)


def load_signatures(saved_model_dir) -> dict:
    """The signatures of a SavedModel, loaded with ``tf.saved_model.load`` (trusted exports only)."""
    import tensorflow as tf

    return dict(tf.saved_model.load(str(saved_model_dir)).signatures)
