"""The parity gate: Keras, the SavedModel and onnxruntime must agree on the same inputs."""

from __future__ import annotations

import numpy as np

from medzoo.errors import MedzooError

DEFAULT_TOLERANCE = 1e-4


class ParityError(MedzooError):
    """An exported model disagrees with the Keras model by more than the tolerance."""


def max_abs_difference(a: dict, b: dict) -> float:
    """Largest absolute difference over the outputs both dicts name."""
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ValueError(f"no common outputs: {sorted(a)} vs {sorted(b)}")
    return max(float(np.max(np.abs(np.asarray(a[k], np.float64) - np.asarray(b[k], np.float64))))
               for k in shared)


def run_onnx(path, feeds: dict) -> dict:
    """Run an ONNX file with onnxruntime on CPU; outputs by name."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def check_parity(*, keras_outputs: dict, signatures: dict, onnx_paths: dict, float_feeds: dict,
                 raw_feeds: dict, tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """Compare every runtime on the same inputs; return the report written to ``parity.json``.

    ``keras_outputs`` are the Keras model's outputs on ``float_feeds``; ``signatures`` the loaded
    SavedModel signatures; ``onnx_paths`` maps signature name to ONNX file. The raw path compares
    SavedModel ``serving_default`` with ``model_raw.onnx`` on ``raw_feeds``.

    Raises
    ------
    ParityError
        When any difference exceeds ``tolerance``; the message names the pair and the figure.
    """
    import tensorflow as tf

    def call(signature, feeds):
        out = signatures[signature](**{k: tf.constant(v) for k, v in feeds.items()})
        return {k: v.numpy() for k, v in out.items()}

    saved_float = call("serve_float", float_feeds)
    saved_raw = call("serving_default", raw_feeds)
    comparisons = {
        "keras_vs_savedmodel": max_abs_difference(keras_outputs, saved_float),
        "keras_vs_onnx": max_abs_difference(keras_outputs,
                                            run_onnx(onnx_paths["serve_float"], float_feeds)),
        "savedmodel_vs_onnx_raw": max_abs_difference(
            saved_raw, run_onnx(onnx_paths["serving_default"], raw_feeds)),
    }
    report = {"tolerance": tolerance, "max_abs_difference": comparisons,
              "n_float_inputs": int(len(next(iter(float_feeds.values())))),
              "n_raw_inputs": int(len(next(iter(raw_feeds.values())))),
              "passed": all(v <= tolerance for v in comparisons.values())}
    if not report["passed"]:
        worst = max(comparisons, key=comparisons.get)
        raise ParityError(
            f"export parity failed: {worst} differs by {comparisons[worst]:.3g}, "
            f"expected at most {tolerance:g}"
        )
    return report
