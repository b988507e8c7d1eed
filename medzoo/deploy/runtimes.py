"""The runtimes ``predict`` runs an export's raw serving signature in: onnxruntime on
``model_raw.onnx`` (CPU) or TensorFlow on the SavedModel's ``serving_default``. Each is a callable
``feeds dict → outputs dict``; TensorFlow is imported only for ``--runtime savedmodel``.
"""

from __future__ import annotations

from pathlib import Path

from medzoo.errors import InputError

__all__ = ["RUNTIMES", "runner"]

RUNTIMES = ("onnx", "savedmodel")


class _OnnxRaw:
    """``model_raw.onnx`` in onnxruntime (CPU)."""

    def __init__(self, version_dir: Path):
        import onnxruntime as ort

        path = version_dir / "model_raw.onnx"
        try:
            self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise InputError(f"{path}: onnxruntime cannot load this model "
                             f"({type(exc).__name__})") from None
        self.names = [o.name for o in self.session.get_outputs()]

    def __call__(self, feeds: dict) -> dict:
        return dict(zip(self.names, self.session.run(self.names, feeds)))


class _SavedModelRaw:
    """The SavedModel's ``serving_default`` signature (TensorFlow is imported only here)."""

    def __init__(self, version_dir: Path):
        import tensorflow as tf

        if not (version_dir / "saved_model.pb").is_file():
            raise InputError(f"{version_dir}: expected a SavedModel (saved_model.pb) for "
                             "--runtime savedmodel. Received: none")
        self.tf = tf
        self.signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]

    def __call__(self, feeds: dict) -> dict:
        out = self.signature(**{k: self.tf.constant(v) for k, v in feeds.items()})
        return {k: v.numpy() for k, v in out.items()}


def runner(runtime: str, version_dir: Path):
    """The callable that runs ``version_dir``'s raw serving signature in ``runtime`` (one of
    :data:`RUNTIMES`, checked by the caller).

    Raises
    ------
    InputError
        onnxruntime cannot load ``model_raw.onnx``, or no ``saved_model.pb`` for savedmodel.
    """
    if runtime == "onnx":
        return _OnnxRaw(version_dir)
    return _SavedModelRaw(version_dir)
