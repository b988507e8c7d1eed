"""medzoo: a TensorFlow/Keras model zoo for medical imaging.

The chain runs one way: ``datasets`` (DICOM → dataset dir) → ``zoo``/``training`` (Keras fit → run
dir) → ``export`` (SavedModel + ONNX → BASE/NAME/VERSION) → ``evaluation`` (onnxruntime → metrics,
statistics, charts, report). Packages meet at files on disk; importing ``medzoo`` imports nothing heavy.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
