"""medzoo.evaluation: batch evaluation of exported models with onnxruntime (no TensorFlow).

Modules: ``runtime`` (onnxruntime sessions), ``metrics`` (pure metric functions), ``stats``
(statistical tests), ``charts`` (matplotlib, Agg canvas), ``evaluate`` (``medzoo evaluate``),
``report`` (``report.html``) and ``crossval`` (``medzoo cv``, the one module that reaches into
training); ``medzoo.evaluation.evaluate.evaluate`` is the command's entry point (not re-exported
here: the module of the same name would shadow it). The names below are re-exported lazily, so ``import medzoo.evaluation`` loads
neither onnxruntime, matplotlib nor TensorFlow until one is used.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "OnnxModel": "medzoo.evaluation.runtime",
    "resolve_model": "medzoo.evaluation.runtime",
    "binary_report": "medzoo.evaluation.metrics",
    "write_report": "medzoo.evaluation.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'medzoo.evaluation' has no attribute {name!r}")
