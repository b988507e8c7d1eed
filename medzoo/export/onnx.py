"""ONNX files beside the SavedModel: ``model.onnx`` (float images) and ``model_raw.onnx``
(raw DICOM pixels, the same preprocessing and names as ``serving_default``)."""

from __future__ import annotations

import json
from pathlib import Path

from medzoo import fsio
from medzoo.export import serving

DEFAULT_OPSET = 17


def write_onnx(model, out_dir, *, task: str, input_shape, metadata: dict,
               opset: int = DEFAULT_OPSET, preprocessing=None, inputs=None) -> dict[str, Path]:
    """Convert ``model`` with tf2onnx; write ``model.onnx`` and ``model_raw.onnx`` into ``out_dir``.

    ``metadata`` is stored as ONNX ``metadata_props`` with a ``medzoo.`` prefix (values as JSON),
    so that an ONNX file alone carries its task, classes, input size and held-out fold.
    ``inputs``: the declared inputs; with several, ``model_raw.onnx`` takes one raw group per
    modality (``ct_pixels``, ``ct_rescale_slope``, …, ``mr_pixels``, …).
    """
    import tf2onnx

    functions = serving.make_serving_functions(model, task, input_shape, preprocessing, inputs)
    outputs = {}
    for filename, name in (("model.onnx", "serve_float"), ("model_raw.onnx", "serving_default")):
        fn = functions[name]
        proto, _ = tf2onnx.convert.from_function(
            fn, input_signature=fn.input_signature, opset=opset)
        del proto.metadata_props[:]
        for key, value in sorted({**metadata, "signature": name}.items()):
            entry = proto.metadata_props.add()
            entry.key, entry.value = f"medzoo.{key}", json.dumps(value)
        path = Path(out_dir) / filename
        fsio.write_bytes(path, proto.SerializeToString())
        outputs[name] = path
    return outputs
